"""Trainer: options, host-batch steps and gradients (checked by finite
differences), fit with a Python callback (stop, exceptions), progress
queries, loss weighting, diagnostics, schedules, checkpoints."""

import os
import tempfile
import unittest

import numpy as np

import libmtl

from support import FIT_FUNCS, TRAINER_FUNCS, needs, tiny_model, toy_data


def trainer_for(model, **options):
    base = dict(max_batch=16, optimizer="adam", learning_rate=0.01, batch_size=16, epochs=3)
    base.update(options)
    return libmtl.Trainer(model, **base)


def data(n=64, seed=0, missing=0.0):
    x, y = toy_data(n=n, seed=seed, missing=missing)
    return libmtl.Dataset(x, y), x, y


@needs(*TRAINER_FUNCS)
class Options(unittest.TestCase):
    def test_set_get(self):
        tr = libmtl.Trainer(tiny_model(), max_batch=32, optimizer="sgd", momentum=0.9,
                            nesterov=True, learning_rate=0.05, epochs=7)
        self.assertIs(tr.get("optimizer"), libmtl.Optimizer.SGD)
        self.assertEqual(tr.get("momentum"), 0.9)
        self.assertEqual(tr.get("nesterov"), 1)
        self.assertEqual(tr.get(libmtl.Option.EPOCHS), 7)
        self.assertEqual(tr.get("learning_rate"), 0.05)
        tr.set(weighting="dwa", dwa_temperature=2.0, schedule=libmtl.Schedule.COSINE)
        self.assertIs(tr.get("weighting"), libmtl.Weighting.DWA)
        self.assertIs(tr.get("schedule"), libmtl.Schedule.COSINE)
        self.assertEqual(tr.get("dwa_temperature"), 2.0)
        tr.set_task_option("a", lr_multiplier=0.5)
        self.assertEqual(tr.get_task_option(0, "lr_multiplier"), 0.5)
        self.assertEqual(tr.get_task_option("b", "lr_multiplier"), 1.0)
        with self.assertRaises(libmtl.NotFoundError):
            tr.set_task_option("zzz", lr_multiplier=2.0)
        with self.assertRaises(libmtl.InvalidArgumentError):
            tr.set(batch_size=33)  # > max_batch
        with self.assertRaises(libmtl.InvalidArgumentError):
            tr.set(learning_rate=0.0)
        with self.assertRaises(libmtl.InvalidArgumentError):
            tr.set(optimizer="lbfgs")
        with self.assertRaises(libmtl.InvalidArgumentError):
            tr.set(num_threads=2)  # a context option

    def test_needs_finalized_model(self):
        m = libmtl.Model(3)
        m.add_task("a")
        with self.assertRaises(libmtl.StateError):
            libmtl.Trainer(m)
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Trainer("model")


@needs(*TRAINER_FUNCS, "mtl_trainer_compute_gradients", "mtl_trainer_get_gradients")
class Steps(unittest.TestCase):
    def test_step_reduces_loss_and_counts(self):
        m = tiny_model()
        x, y = toy_data(n=16)
        tr = trainer_for(m)
        first = tr.step(x, y)
        self.assertEqual(first.shape, (2,))
        for _ in range(60):
            last = tr.step(x, y)
        self.assertEqual(tr.step_count, 61)
        self.assertTrue(np.all(last < 0.5 * first), (first, last))

    def test_masks_and_missing_labels(self):
        m = tiny_model()
        x, y = toy_data(n=16)
        tr = trainer_for(m)
        mask = np.ones_like(y, dtype=bool)
        mask[:, 1] = False
        losses = tr.compute_gradients(x, y, mask=mask)
        self.assertEqual(losses[1], 0.0)  # no label: documented 0
        self.assertGreater(losses[0], 0.0)
        y_nan = y.copy()
        y_nan[:, 1] = np.nan
        np.testing.assert_array_equal(tr.compute_gradients(x, y_nan), losses)
        w = np.ones(16)
        np.testing.assert_allclose(tr.compute_gradients(x, y, sample_weight=w),
                                   tr.compute_gradients(x, y), rtol=1e-6)

    def test_batch_shape_errors(self):
        tr = trainer_for(tiny_model())
        x, y = toy_data(n=16)
        with self.assertRaises(libmtl.ShapeError):
            tr.step(x[:, :4], y)
        with self.assertRaises(libmtl.ShapeError):
            tr.step(x, y[:, :1])
        with self.assertRaises(libmtl.ShapeError):
            tr.step(x, y[:15])
        with self.assertRaises(libmtl.MtlError):
            tr.step(np.vstack([x, x]), np.vstack([y, y]))  # 32 rows > max_batch 16

    def test_gradient_matches_finite_differences(self):
        # One task, so "the weighted loss" is that task's loss unambiguously;
        # no scalers fitted (identity) and no dropout: deterministic.
        m = libmtl.Model(4)
        m.add_trunk_layer(6, "tanh")
        m.add_task("y")
        m.finalize()
        rng = np.random.default_rng(3)
        x = rng.normal(size=(8, 4)).astype(np.float32)
        y = rng.normal(size=(8, 1)).astype(np.float32)
        tr = libmtl.Trainer(m, max_batch=8)
        tr.compute_gradients(x, y)
        g = tr.gradients()
        self.assertEqual(g.shape, (m.param_count,))
        p0 = m.get_params().astype(np.float64)
        h = 1e-2
        for i in rng.choice(m.param_count, size=12, replace=False):
            p = p0.copy()
            p[i] += h
            m.set_params(p)
            up = tr.compute_gradients(x, y)[0]
            p[i] -= 2 * h
            m.set_params(p)
            down = tr.compute_gradients(x, y)[0]
            fd = (up - down) / (2 * h)
            self.assertAlmostEqual(g[i], fd, delta=2e-3 + 2e-2 * abs(fd), msg=f"param {i}")
        m.set_params(p0)
        blocks = {b.name: b for b in m.param_blocks()}
        self.assertEqual(blocks["trunk.0.weight"].view(g).shape, (4, 6))


@needs(*FIT_FUNCS)
class Fit(unittest.TestCase):
    def test_callback_sees_every_epoch(self):
        m = tiny_model()
        train, _, _ = data()
        calls = []
        tr = trainer_for(m, epochs=4)
        r = tr.fit(train, callback=lambda t, epoch, step: calls.append((epoch, step, t.epoch)))
        self.assertIs(r, tr)
        self.assertEqual([c[1] for c in calls], [-1] * 4)
        self.assertEqual([c[2] for c in calls], [1, 2, 3, 4])  # epochs completed
        self.assertEqual(tr.epoch, 4)
        self.assertEqual(tr.step_count, 4 * 4)  # 64 rows / batch 16
        self.assertGreaterEqual(tr.elapsed_seconds, 0.0)
        self.assertGreater(tr.learning_rate, 0.0)

    def test_step_callbacks(self):
        tr = trainer_for(tiny_model(), epochs=2, callback_every_steps=2)
        train, _, _ = data()
        steps = []
        tr.fit(train, callback=lambda t, e, s: steps.append(s))
        self.assertEqual(steps.count(-1), 2)
        self.assertGreaterEqual(len([s for s in steps if s >= 0]), 4)

    def test_callback_stops_training(self):
        tr = trainer_for(tiny_model(), epochs=10)
        train, _, _ = data()
        tr.fit(train, callback=lambda t, e, s: t.epoch >= 2)
        self.assertEqual(tr.epoch, 2)

    def test_callback_exception_stops_and_is_reraised(self):
        m = tiny_model()
        tr = trainer_for(m, epochs=10)
        train, _, _ = data()

        def boom(t, epoch, step):
            raise RuntimeError(f"stop at {t.epoch}")

        with self.assertRaises(RuntimeError) as cm:
            tr.fit(train, callback=boom)
        self.assertEqual(str(cm.exception), "stop at 1")
        self.assertEqual(tr.epoch, 1)
        self.assertTrue(np.all(np.isfinite(m.get_params())))

        def interrupt(t, epoch, step):
            raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            tr.fit(train, callback=interrupt)
        self.assertEqual(tr.epoch, 2)  # stopped in the end-of-epoch callback of epoch 2
        tr.fit(train)  # still usable; `epochs` is the total
        self.assertEqual(tr.epoch, 10)
        self.assertIsNone(tr._progress)

    def test_closing_handles_inside_the_callback_is_safe(self):
        m = tiny_model()
        tr = trainer_for(m, epochs=3)
        train, _, _ = data()

        def close_all(t, epoch, step):
            train.close()
            m.close()
            t.close()

        tr.fit(train, callback=close_all)  # destroys happen after fit returns
        self.assertTrue(tr.closed and m.closed and train.closed)
        with self.assertRaises(libmtl.StateError):
            tr.epoch

    def test_same_seed_same_bits(self):
        results = []
        for _ in range(2):
            m = tiny_model(context=libmtl.Context(seed=11))
            train, _, _ = data()
            trainer_for(m).fit(train)
            results.append(m.get_params())
        np.testing.assert_array_equal(results[0], results[1])
        m = tiny_model(context=libmtl.Context(seed=12))
        train, _, _ = data()
        trainer_for(m).fit(train)
        self.assertFalse(np.array_equal(m.get_params(), results[0]))

    @needs("mtl_trainer_epoch_metric", "mtl_model_evaluate", "mtl_trainer_best_epoch")
    def test_progress_queries(self):
        m = tiny_model()
        train, _, _ = data(seed=0, missing=0.1)
        val, _, _ = data(n=32, seed=1)
        m.fit_scalers(train)
        tr = trainer_for(m, epochs=5)
        hist = []
        tr.fit(train, val, callback=lambda t, e, s: hist.append(
            (t.epoch_losses("train"), t.epoch_losses(libmtl.Split.VALIDATION))))
        self.assertEqual(len(hist), 5)
        val_losses = np.array([h[1] for h in hist])
        self.assertTrue(np.all(np.isfinite(val_losses)))
        np.testing.assert_array_equal(tr.epoch_losses("validation"), val_losses[-1])
        np.testing.assert_allclose(tr.epoch_metric("mae"), m.evaluate(val, "mae"), rtol=1e-5)
        for t in range(2):
            epoch, loss = tr.best_epoch(task=t)
            self.assertEqual(epoch, int(np.argmin(val_losses[:, t])) + 1)
            self.assertAlmostEqual(loss, val_losses[epoch - 1, t], places=6)
        epoch, loss = tr.best_epoch()
        self.assertTrue(1 <= epoch <= 5)
        self.assertEqual(tr.best_epoch("b")[0], tr.best_epoch(1)[0])

    def test_non_finite_training_raises_and_keeps_good_weights(self):
        m = tiny_model()
        x, y = toy_data(n=64)
        train = libmtl.Dataset(x, y * 1e18)  # finite but absurd: the loss overflows
        m.set_task_option("a", standardize=False)
        m.set_task_option("b", standardize=False)
        tr = trainer_for(m, optimizer="sgd", learning_rate=10.0)
        with self.assertRaises(libmtl.NonFiniteError) as cm:
            tr.fit(train)
        self.assertIn("epoch", cm.exception.message)
        self.assertTrue(np.all(np.isfinite(m.get_params())))


@needs(*FIT_FUNCS)
class ObjectsAndTypes(unittest.TestCase):
    def test_reprs_and_type_checks(self):
        m = tiny_model()
        train, x, y = data()
        tr = trainer_for(m)
        ws = libmtl.Workspace(m, 4)
        self.assertIn("64 rows, 5 inputs, 2 targets", repr(train))
        self.assertIn("epoch 0", repr(tr))
        self.assertIn("max_batch=4", repr(ws))
        m.metadata["k"] = "v"
        self.assertEqual(repr(m.metadata), "Metadata({'k': 'v'})")
        with self.assertRaises(libmtl.InvalidArgumentError):
            tr.fit(x)  # an array, not a Dataset
        with self.assertRaises(libmtl.InvalidArgumentError):
            tr.fit(train, val=y)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.fit_scalers(x)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.evaluate(x)
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Workspace(train)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.task_name(1.5)
        with self.assertRaises(libmtl.StateError):
            unfinished = libmtl.Model(2)
            unfinished.add_task("t")
            unfinished.to_bytes()
        for obj in (train, tr, ws, m):
            obj.close()
            self.assertIn("closed", repr(obj))


@needs(*FIT_FUNCS, "mtl_trainer_diagnostic")
class WeightingAndDiagnostics(unittest.TestCase):
    def test_diagnostics(self):
        m = tiny_model()
        train, _, _ = data()
        tr = trainer_for(m, epochs=2)
        tr.fit(train)
        with self.assertRaises(libmtl.StateError):
            tr.diagnostic("grad_cosine")  # not enabled
        tr.set(diagnostics=True, epochs=4)  # `epochs` is the total: two more
        tr.fit(train)
        for scope in ("step", "epoch"):
            cos = tr.diagnostic(libmtl.Diagnostic.GRAD_COSINE, scope)
            self.assertEqual(cos.shape, (2, 2))
            np.testing.assert_allclose(cos, cos.T, atol=1e-12)
            np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-6)
            self.assertTrue(np.all(np.abs(cos) <= 1 + 1e-9))
            w = tr.diagnostic("task_weights", scope)
            self.assertEqual(w.shape, (2,))
            self.assertTrue(np.all(tr.diagnostic("grad_norms", scope) >= 0))
        cos = tr.diagnostic("grad_cosine", "step")
        self.assertEqual(tr.diagnostic("conflicts", "step"), float(cos[0, 1] < 0))

    def test_every_weighting_method_trains(self):
        for method in libmtl.Weighting:
            with self.subTest(method=method.name):
                m = tiny_model()
                train, _, _ = data()
                tr = trainer_for(m, epochs=2, weighting=method, diagnostics=True)
                tr.fit(train)
                self.assertIs(tr.get("weighting"), method)
                w = tr.diagnostic("task_weights", "epoch")
                self.assertTrue(np.all(np.isfinite(w)), w)
                self.assertTrue(np.all(np.isfinite(m.get_params())))

    def test_weighting_parameters(self):
        tr = trainer_for(tiny_model())
        tr.set(gradnorm_alpha=1.5, cagrad_c=0.4, weighting_lr=0.02, affinity=True)
        self.assertEqual(tr.get("gradnorm_alpha"), 1.5)
        self.assertEqual(tr.get("cagrad_c"), 0.4)
        self.assertEqual(tr.get("weighting_lr"), 0.02)
        self.assertEqual(tr.get("affinity"), 1)


@needs(*FIT_FUNCS)
class Schedules(unittest.TestCase):
    def test_step_schedule_closed_form(self):
        tr = trainer_for(tiny_model(), learning_rate=0.01, schedule="step",
                         schedule_step_epochs=1, schedule_gamma=0.5, epochs=2)
        train, _, _ = data()
        tr.fit(train)
        self.assertAlmostEqual(tr.learning_rate, 0.01 * 0.5 ** 2, places=12)


@needs(*FIT_FUNCS, "mtl_trainer_save_checkpoint", "mtl_trainer_load_checkpoint",
       "mtl_trainer_save_checkpoint_buffer", "mtl_trainer_load_checkpoint_buffer")
class Checkpoints(unittest.TestCase):
    def test_resume_is_bitwise_identical(self):
        m = tiny_model(context=libmtl.Context(seed=5))
        train, _, _ = data()
        tr = trainer_for(m, epochs=2, weighting="dwa")
        tr.fit(train)
        blob = tr.checkpoint_bytes()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ck.mtlc")
            tr.save_checkpoint(path)
            from_path = libmtl.Trainer.load_checkpoint(path)
        before = m.get_params()
        tr.set(epochs=4).fit(train)  # `epochs` is the total: two more
        want = m.get_params()
        self.assertFalse(np.array_equal(before, want))
        for resumed in (from_path, libmtl.Trainer.from_checkpoint_bytes(blob)):
            self.assertEqual(resumed.epoch, 2)
            self.assertIs(resumed.get("weighting"), libmtl.Weighting.DWA)
            self.assertEqual(resumed.model.tasks, ["a", "b"])
            np.testing.assert_array_equal(resumed.model.get_params(), before)
            resumed.set(epochs=4).fit(train)
            np.testing.assert_array_equal(resumed.model.get_params(), want)
            resumed.model.close()  # model first: the trainer keeps it alive
            self.assertEqual(resumed.epoch, 4)
            resumed.close()
        with self.assertRaises(libmtl.FormatError):
            libmtl.Trainer.from_checkpoint_bytes(blob[: len(blob) // 2])


if __name__ == "__main__":
    unittest.main()
