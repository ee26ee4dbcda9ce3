"""Model: definition, read-back, task options, parameters, metadata and
texts, files (path, bytes, pickle), inference with numpy arrays in every
layout, evaluation, domain checks."""

import os
import pickle
import tempfile
import threading
import unittest

import numpy as np

import libmtl

from support import MODEL_FUNCS, needs, tiny_model, toy_data

PREDICT = MODEL_FUNCS + ("mtl_workspace_create", "mtl_model_predict")


def act(name, z):
    return {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
            "identity": lambda v: v}[name](z)


def dense(h, w, b):
    """h @ W + b whichever way round the block stores W (the fused first
    head layer is stored fan_out x fan_in; test shapes are never square)."""
    if w.shape[0] == h.shape[1] and w.shape[1] != h.shape[1]:
        return h @ w + b.reshape(-1)
    assert w.shape[1] == h.shape[1], (w.shape, h.shape)
    return h @ w.T + b.reshape(-1)


def reference_forward(model, x):
    """tiny_model()'s forward pass in float64 numpy from the parameter
    blocks (no scalers fitted: identity)."""
    params = model.get_params()
    blk = {b.name: b.view(params).astype(np.float64) for b in model.param_blocks()}
    z = act("tanh", dense(x.astype(np.float64), blk["trunk.0.weight"], blk["trunk.0.bias"]))
    ha = act("relu", dense(z, blk["task.a.hidden.0.weight"], blk["task.a.hidden.0.bias"]))
    a = dense(ha, blk["task.a.out.weight"], blk["task.a.out.bias"])
    b = dense(z, blk["task.b.out.weight"], blk["task.b.out.bias"])
    return np.hstack([a, b]), z


@needs(*MODEL_FUNCS)
class Definition(unittest.TestCase):
    def test_read_back(self):
        m = libmtl.Model(6)
        self.assertFalse(m.is_finalized)
        self.assertEqual(m.n_inputs, 6)
        m.add_trunk_layer(12, "relu", dropout=0.1).add_trunk_layer(10, libmtl.Activation.GELU,
                                                                   layer_norm=True)
        self.assertEqual(m.add_task("E", "regression", outputs=2), 0)
        self.assertEqual(m.add_task("ok", "binary"), 1)
        self.assertEqual(m.add_task("cls", libmtl.TaskType.MULTICLASS, outputs=3), 2)
        m.add_head_layer("cls", 4, "tanh")
        m.finalize()
        self.assertTrue(m.is_finalized)
        self.assertEqual(m.tasks, ["E", "ok", "cls"])
        self.assertEqual(m.n_tasks, 3)
        self.assertEqual(m.embedding_width, 10)
        self.assertEqual(m.target_width, 2 + 1 + 1)
        self.assertEqual(m.output_width, 2 + 1 + 3)
        self.assertEqual([m.task_type(t) for t in range(3)],
                         [libmtl.TaskType.REGRESSION, libmtl.TaskType.BINARY,
                          libmtl.TaskType.MULTICLASS])
        self.assertEqual([m.task_outputs(t) for t in m.tasks], [2, 1, 3])
        self.assertEqual([m.task_columns(t) for t in range(3)], [(0, 0), (2, 2), (3, 3)])
        self.assertEqual(m.find_task("cls"), 2)
        self.assertEqual(m.layer_count, 2 + 1 + 3)  # trunk, one head hidden, 3 outputs
        # Parameter count by hand: dense layers, plus gain and shift of the norm layer.
        n = (6 * 12 + 12) + (12 * 10 + 10 + 2 * 10) + (10 * 2 + 2) + (10 * 1 + 1) \
            + (10 * 4 + 4) + (4 * 3 + 3)
        self.assertEqual(m.param_count, n)
        names = [b.name for b in m.param_blocks()]
        self.assertIn("trunk.1.norm.gain", names)
        self.assertIn("task.cls.hidden.0.bias", names)
        self.assertEqual(sum(b.rows * b.cols for b in m.param_blocks()), n)
        self.assertIn("tasks ['E', 'ok', 'cls']", repr(m))

    def test_definition_errors(self):
        m = libmtl.Model(3)
        m.add_task("a")
        with self.assertRaises(libmtl.MtlError) as cm:
            m.add_task("a")  # duplicate
        self.assertIn("a", cm.exception.message)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.add_task("x\0y")  # NUL: caught in Python
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.add_task("c", type="ordinal")
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.add_trunk_layer(4, "swish")
        with self.assertRaises(libmtl.MtlError):
            m.add_trunk_layer(0)
        with self.assertRaises(libmtl.NotFoundError) as cm:
            m.find_task("missing")
        self.assertIsInstance(cm.exception, LookupError)
        with self.assertRaises(libmtl.NotFoundError):
            m.add_head_layer("missing", 3)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.task_name(5)
        m.finalize()
        with self.assertRaises(libmtl.StateError):
            m.add_trunk_layer(4)
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Model(0)

    def test_task_options(self):
        m = libmtl.Model(3)
        m.add_task("r")
        m.add_task("b", "binary")
        m.set_task_option("r", loss_weight=2.5, loss="huber", huber_delta=0.5, standardize=False,
                          log_target=True)
        self.assertEqual(m.get_task_option("r", "loss_weight"), 2.5)
        self.assertIs(m.get_task_option(0, "loss"), libmtl.Loss.HUBER)
        self.assertEqual(m.get_task_option("r", libmtl.TaskOption.HUBER_DELTA), 0.5)
        self.assertEqual(m.get_task_option("r", "standardize"), 0)
        self.assertEqual(m.get_task_option("r", "log_target"), 1)
        self.assertIs(m.get_task_option("b", "loss"), libmtl.Loss.BCE)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.set_task_option("b", loss="mse")  # binary tasks: BCE only
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.set_task_option("r", loss_weight=-1.0)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.set_task_option("r", bogus=1)
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.set_task_option("r", loss_weight="heavy")


@needs(*MODEL_FUNCS)
class Parameters(unittest.TestCase):
    def test_round_trip_and_block_views(self):
        m = tiny_model()
        p = m.get_params()
        self.assertEqual(p.dtype, np.float32)
        self.assertEqual(p.shape, (m.param_count,))
        q = np.arange(m.param_count, dtype=np.float64) / 1000  # float64: converted once
        m.set_params(q)
        np.testing.assert_array_equal(m.get_params(), q.astype(np.float32))
        for b in m.param_blocks():
            v = b.view(q)
            self.assertEqual(v.shape, (b.rows, b.cols))
            self.assertEqual(v[-1, -1], q[b.offset + (b.rows - 1) * b.ld + b.cols - 1])
            self.assertEqual(v[0, 0], q[b.offset])
        with self.assertRaises(libmtl.ShapeError):
            m.set_params(q[:-1])
        with self.assertRaises(libmtl.ShapeError):
            m.param_blocks()[0].view(q[:3])


@needs(*MODEL_FUNCS, "mtl_model_set_init")
class Initialisation(unittest.TestCase):
    def model(self, seed, init=None):
        m = libmtl.Model(50, libmtl.Context(seed=seed), init=init)
        m.add_trunk_layer(40, "relu")
        m.add_task("a")
        return m.finalize()

    def test_uniform_fan_in(self):
        m = self.model(3, "uniform_fan_in")
        p = m.get_params()
        blk = {b.name: b.view(p) for b in m.param_blocks()}
        for name, fan_in in (("trunk.0.weight", 50), ("trunk.0.bias", 50), ("task.a.out.weight", 40)):
            v = blk[name]
            self.assertLessEqual(np.abs(v).max(), 1 / np.sqrt(fan_in) * (1 + 1e-7), name)
            self.assertGreater(np.abs(v).max(), 0.5 / np.sqrt(fan_in), name)  # drawn, not 0
        # the same as choosing it with set_init, and by the enum member
        m2 = libmtl.Model(50, libmtl.Context(seed=3)).set_init(libmtl.Init.UNIFORM_FAN_IN)
        m2.add_trunk_layer(40, "relu")
        m2.add_task("a")
        np.testing.assert_array_equal(m2.finalize().get_params(), p)

    def test_default_and_errors(self):
        default = self.model(4).get_params()
        np.testing.assert_array_equal(self.model(4, "he_glorot").get_params(), default)
        self.assertFalse(np.array_equal(self.model(4, 1).get_params(), default))
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Model(3).set_init("xavier")  # unknown name: caught in Python
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Model(3).set_init(5)  # unknown id: the library refuses it
        m = self.model(4)
        with self.assertRaises(libmtl.StateError):
            m.set_init("uniform_fan_in")


@needs(*MODEL_FUNCS, "mtl_model_set_metadata", "mtl_model_metadata_at")
class Metadata(unittest.TestCase):
    def test_metadata_mapping(self):
        m = tiny_model()
        md = m.metadata
        self.assertEqual(len(md), 0)
        md["units"] = "kcal/mol"
        m.set_metadata("reaktion", "Cycloaddition – [3+2] ✓")
        self.assertEqual(md["units"], "kcal/mol")
        self.assertEqual(m.get_metadata("reaktion"), "Cycloaddition – [3+2] ✓")
        self.assertEqual(dict(md),
                         {"units": "kcal/mol", "reaktion": "Cycloaddition – [3+2] ✓"})
        self.assertEqual(list(md), ["units", "reaktion"])
        md["units"] = "kJ/mol"  # replace
        self.assertEqual(len(md), 2)
        self.assertEqual(md.get("nope", "dflt"), "dflt")
        with self.assertRaises(KeyError):
            md["nope"]
        with self.assertRaises(libmtl.NotFoundError):
            m.get_metadata("nope")
        del md["units"]
        self.assertEqual(list(md), ["reaktion"])
        with self.assertRaises(KeyError):
            del md["units"]
        m.set_metadata("reaktion", None)  # NULL removes
        self.assertEqual(len(md), 0)
        md.update(b="2", a="1")
        self.assertEqual(list(md), ["b", "a"])  # insertion order
        with self.assertRaises(libmtl.InvalidArgumentError):
            md["k"] = "a\0b"
        with self.assertRaises(libmtl.MtlError):
            md["big"] = "x" * (64 * 1024 + 1)  # over the documented 64 KiB

    def test_task_text_and_feature_names(self):
        m = tiny_model()
        m.set_task_text("a", unit="kcal/mol", description="barrier")
        self.assertEqual(m.get_task_text("a"), ("kcal/mol", "barrier"))
        self.assertEqual(m.get_task_text("b"), (None, None))
        m.set_task_text("a", unit="eV")  # None clears the description
        self.assertEqual(m.get_task_text("a"), ("eV", None))
        self.assertEqual(m.feature_names, [None] * 5)
        m.feature_names = [f"f{i}" for i in range(5)]
        self.assertEqual(m.get_feature_name(3), "f3")
        m.set_feature_name(3, None)
        self.assertEqual(m.feature_names, ["f0", "f1", "f2", None, "f4"])
        with self.assertRaises(libmtl.ShapeError):
            m.feature_names = ["x"]
        with self.assertRaises(libmtl.InvalidArgumentError):
            m.set_feature_name(9, "x")


@needs(*MODEL_FUNCS, "mtl_model_save", "mtl_model_load", "mtl_model_save_buffer",
       "mtl_model_load_buffer")
class Files(unittest.TestCase):
    def make(self):
        m = tiny_model()
        m.metadata["note"] = "saved from Python"
        m.set_task_text("a", "eV", "first")
        m.set_feature_name(0, "T")
        return m

    def assert_same(self, m, r):
        np.testing.assert_array_equal(m.get_params(), r.get_params())
        self.assertEqual(r.tasks, m.tasks)
        self.assertEqual(dict(r.metadata), dict(m.metadata))
        self.assertEqual(r.get_task_text("a"), ("eV", "first"))
        self.assertEqual(r.get_feature_name(0), "T")
        self.assertEqual(r.param_blocks(), m.param_blocks())

    def test_path_bytes_pickle(self):
        m = self.make()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.mtl")
            m.save(path)
            with libmtl.Model.load(path) as r:
                self.assert_same(m, r)
            import pathlib
            with libmtl.Model.load(pathlib.Path(path)) as r:  # os.PathLike
                self.assert_same(m, r)
            with open(path, "rb") as f:
                on_disk = f.read()
        data = m.to_bytes()
        self.assertEqual(data, on_disk)
        self.assert_same(m, libmtl.Model.from_bytes(data))
        self.assert_same(m, libmtl.Model.from_bytes(bytearray(data)))
        self.assert_same(m, pickle.loads(pickle.dumps(m)))

    def test_load_errors(self):
        with self.assertRaises(libmtl.FileIOError) as cm:
            libmtl.Model.load("/nonexistent/dir/m.mtl")
        self.assertIsInstance(cm.exception, OSError)
        self.assertIn("nonexistent", cm.exception.message)
        data = bytearray(self.make().to_bytes())
        data[len(data) // 2] ^= 0x40  # a flipped bit: the checksum catches it
        with self.assertRaises(libmtl.FormatError):
            libmtl.Model.from_bytes(bytes(data))
        with self.assertRaises(libmtl.FormatError):
            libmtl.Model.from_bytes(b"not a model")
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Model.from_bytes("a str is not bytes")
        with self.assertRaises(libmtl.FileIOError):
            self.make().save("/nonexistent/dir/m.mtl")


@needs(*PREDICT)
class Inference(unittest.TestCase):
    def setUp(self):
        self.m = tiny_model()
        self.x, _ = toy_data(n=40)

    def test_predict_matches_numpy_forward(self):
        out = self.m.predict(self.x)
        self.assertEqual(out.shape, (40, 2))
        self.assertEqual(out.dtype, np.float32)
        self.assertTrue(out.flags.c_contiguous)
        ref, z = reference_forward(self.m, self.x)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(self.m.embed(self.x), z, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(self.m.predict_labels(self.x), out)  # regression

    def test_layouts_give_identical_bits(self):
        want = self.m.predict(self.x)
        big = np.zeros((40, 9), dtype=np.float32)
        big[:, 2:7] = self.x
        strided = big[:, 2:7]  # ld = 9, no copy
        np.testing.assert_array_equal(self.m.predict(strided), want)
        np.testing.assert_array_equal(self.m.predict(self.x.astype(np.float64)), want)
        np.testing.assert_array_equal(self.m.predict(np.asfortranarray(self.x)), want)
        np.testing.assert_array_equal(self.m.predict(self.x.tolist()), want)
        # Layout, not batch composition, is under test: a row's last bits may
        # depend on the batch it is in (BLIS and the small kernels pick
        # paths by shape), so compare against a contiguous copy of the same rows.
        np.testing.assert_array_equal(self.m.predict(big[::2, 2:7]),
                                      self.m.predict(np.ascontiguousarray(self.x[::2])))
        row = self.m.predict(self.x[3])  # 1-D: one row in, one row out
        self.assertEqual(row.shape, (2,))
        np.testing.assert_array_equal(row, self.m.predict(self.x[3:4])[0])

    def test_out_arrays(self):
        want = self.m.predict(self.x)
        out = np.full((40, 2), np.nan, dtype=np.float32)
        r = self.m.predict(self.x, out=out)
        self.assertIs(r, out)
        np.testing.assert_array_equal(out, want)
        wide = np.full((40, 5), -1.0, dtype=np.float32)
        self.m.predict(self.x, out=wide[:, 1:3])  # strided: written in place
        np.testing.assert_array_equal(wide[:, 1:3], want)
        self.assertTrue(np.all(wide[:, [0, 3, 4]] == -1.0))
        out64 = np.zeros((40, 2))  # float64: computed, then copied in
        self.assertIs(self.m.predict(self.x, out=out64), out64)
        np.testing.assert_array_equal(out64, want.astype(np.float64))
        with self.assertRaises(libmtl.ShapeError):
            self.m.predict(self.x, out=np.zeros((40, 3), np.float32))

    def test_shape_and_state_errors(self):
        with self.assertRaises(libmtl.ShapeError) as cm:
            self.m.predict(np.zeros((3, 4), np.float32))
        self.assertIn("4 columns", str(cm.exception))
        with self.assertRaises(libmtl.ShapeError):
            self.m.predict(np.zeros((2, 3, 5), np.float32))
        bad = self.x.copy()
        bad[7, 2] = np.nan
        with self.assertRaises(libmtl.NonFiniteError):
            self.m.predict(bad)
        unfinished = libmtl.Model(5)
        unfinished.add_task("a")
        with self.assertRaises(libmtl.StateError):
            unfinished.predict(self.x)

    def test_workspaces(self):
        want = self.m.predict(self.x)
        with libmtl.Workspace(self.m, max_batch=3) as ws:  # chunks of 3 rows
            np.testing.assert_allclose(self.m.predict(self.x, workspace=ws), want, rtol=1e-6)
        with self.assertRaises(libmtl.StateError):
            self.m.predict(self.x, workspace=ws)  # closed
        other = tiny_model()
        with self.assertRaises(libmtl.InvalidArgumentError):
            self.m.predict(self.x, workspace=libmtl.Workspace(other))
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Workspace(self.m, max_batch=0)

    def test_threads_each_with_a_workspace(self):
        want = self.m.predict(self.x)
        results, errors = {}, []

        def work(i):
            try:
                ws = libmtl.Workspace(self.m, 40)
                for _ in range(20):
                    results[i] = self.m.predict(self.x, workspace=ws)
                ws.close()
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=lambda: [self.m.predict(self.x) for _ in range(20)])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for r in results.values():
            np.testing.assert_array_equal(r, want)

    def test_closed_model(self):
        self.m.close()
        with self.assertRaises(libmtl.StateError):
            self.m.predict(self.x)
        self.assertIn("closed", repr(self.m))

    def test_classification_outputs(self):
        m = libmtl.Model(5)
        m.add_trunk_layer(7, "tanh")
        m.add_task("bin", "binary", outputs=2)
        m.add_task("cls", "multiclass", outputs=4)
        m.finalize()
        p = m.predict(self.x)
        lab = m.predict_labels(self.x)
        self.assertEqual(p.shape, (40, 6))
        self.assertEqual(lab.shape, (40, 3))
        self.assertTrue(np.all((p[:, :2] > 0) & (p[:, :2] < 1)))
        np.testing.assert_allclose(p[:, 2:].sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(lab[:, :2], (p[:, :2] > 0.5).astype(np.float32))
        np.testing.assert_array_equal(lab[:, 2], np.argmax(p[:, 2:], axis=1))


@needs(*PREDICT, "mtl_dataset_create", "mtl_model_evaluate", "mtl_model_fit_scalers",
       "mtl_model_check_domain")
class EvaluateAndDomain(unittest.TestCase):
    def test_evaluate_against_numpy(self):
        m = tiny_model()
        x, y = toy_data(n=50, missing=0.2)
        data = libmtl.Dataset(x, y)
        p = m.predict(x).astype(np.float64)
        obs = ~np.isnan(y)
        err = np.where(obs, p - y, np.nan)
        mae = np.nanmean(np.abs(err), axis=0)
        rmse = np.sqrt(np.nanmean(err ** 2, axis=0))
        np.testing.assert_allclose(m.evaluate(data, "mae"), mae, rtol=1e-5)
        np.testing.assert_allclose(m.evaluate(data, libmtl.Metric.RMSE), rmse, rtol=1e-5)
        acc = m.evaluate(data, "accuracy")  # not for regression tasks
        self.assertTrue(np.all(np.isnan(acc)))
        with libmtl.Workspace(m, 7) as ws:
            np.testing.assert_allclose(m.evaluate(data, "mae", workspace=ws), mae, rtol=1e-5)

    def test_check_domain(self):
        m = tiny_model()
        x, y = toy_data(n=50)
        with self.assertRaises(libmtl.StateError):
            m.check_domain(x)  # no domain before fit_scalers
        m.fit_scalers(libmtl.Dataset(x, y))
        np.testing.assert_array_equal(m.check_domain(x), np.zeros(50, np.int64))
        probe = np.vstack([x[0], x[0], x[0]])
        probe[1, 2] = x[:, 2].max() + 1
        probe[2, [0, 4]] = x[:, [0, 4]].min(axis=0) - 1
        np.testing.assert_array_equal(m.check_domain(probe), [0, 1, 2])


if __name__ == "__main__":
    unittest.main()
