"""Loading and versions, exceptions, contexts and options, BLIS, delta_m,
and the handle-ownership rules (close, with, __del__, dependents)."""

import gc
import logging
import os
import subprocess
import sys
import threading
import unittest

import numpy as np

import libmtl
from libmtl import _capi, _native, enums, errors

from support import needs, tiny_model


class Loading(unittest.TestCase):
    def test_library_and_version(self):
        self.assertEqual(libmtl.library_version(), libmtl.__version__)
        self.assertEqual(libmtl.library_version_number, enums.VERSION_NUMBER)
        if os.environ.get("MTL_LIBRARY"):
            self.assertEqual(os.path.realpath(libmtl.library_path),
                             os.path.realpath(os.environ["MTL_LIBRARY"]))

    def _import_in_child(self, env_extra):
        env = dict(os.environ, **env_extra)
        return subprocess.run([sys.executable, "-c", "import libmtl"], env=env,
                              capture_output=True, text=True)

    def test_bad_library_path_is_an_import_error(self):
        r = self._import_in_child({"MTL_LIBRARY": "/nonexistent/libmtl.so.0"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ImportError", r.stderr)
        self.assertIn("MTL_LIBRARY", r.stderr)

    def test_version_check_rejects_other_major_and_older_minor(self):
        # Pretend the module was written for other versions of the library.
        code = ("import libmtl._capi as c\n"
                "major, minor = c.WRITTEN_FOR\n"
                "for want in [(major + 1, 0), (major, minor + 1)]:\n"
                "    c.WRITTEN_FOR = want\n"
                "    try:\n"
                "        c._check_version()\n"
                "    except ImportError as e:\n"
                "        print('rejected', want, e)\n"
                "c.WRITTEN_FOR = (c.enums.VERSION_MAJOR, 0)\n"
                "print('accepted', c._check_version())\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("rejected"), 2, r.stdout)
        self.assertIn("accepted", r.stdout)

    def test_missing_function_stub_raises_unsupported(self):
        stub = _capi._Functions._stub("mtl_imaginary")
        with self.assertRaises(libmtl.UnsupportedError) as cm:
            stub(1, 2)
        self.assertIn("mtl_imaginary", str(cm.exception))


class Exceptions(unittest.TestCase):
    def test_one_class_per_status_with_builtin_bases(self):
        expect = {
            libmtl.Status.INVALID_ARGUMENT: (libmtl.InvalidArgumentError, ValueError),
            libmtl.Status.OUT_OF_MEMORY: (libmtl.OutOfMemoryError, MemoryError),
            libmtl.Status.SHAPE: (libmtl.ShapeError, ValueError),
            libmtl.Status.STATE: (libmtl.StateError, libmtl.MtlError),
            libmtl.Status.IO: (libmtl.FileIOError, OSError),
            libmtl.Status.FORMAT: (libmtl.FormatError, ValueError),
            libmtl.Status.VERSION: (libmtl.VersionError, libmtl.MtlError),
            libmtl.Status.NON_FINITE: (libmtl.NonFiniteError, ArithmeticError),
            libmtl.Status.UNSUPPORTED: (libmtl.UnsupportedError, NotImplementedError),
            libmtl.Status.INTERNAL: (libmtl.InternalError, libmtl.MtlError),
            libmtl.Status.NOT_FOUND: (libmtl.NotFoundError, LookupError),
        }
        self.assertEqual(set(expect), set(libmtl.Status) - {libmtl.Status.OK})
        for status, (cls, base) in expect.items():
            e = errors.error_for_status(int(status), "detail here", "mtl_x")
            self.assertIs(type(e), cls)
            self.assertIsInstance(e, base)
            self.assertIsInstance(e, libmtl.MtlError)
            self.assertEqual(e.status, status)
            self.assertEqual(e.message, "detail here")
            self.assertEqual(e.function, "mtl_x")
            self.assertEqual(str(e), f"mtl_x: {libmtl.status_string(status)}: detail here")

    def test_unknown_status(self):
        e = errors.error_for_status(77, "from the future", "mtl_y")
        self.assertIs(type(e), libmtl.MtlError)
        self.assertEqual(e.status, 77)
        self.assertIn("from the future", str(e))

    def test_library_error_carries_message(self):
        with self.assertRaises(libmtl.InvalidArgumentError) as cm:
            libmtl.Context(num_threads=0)
        e = cm.exception
        self.assertEqual(e.status, libmtl.Status.INVALID_ARGUMENT)
        self.assertEqual(e.function, "mtl_context_set_i64")
        self.assertIn("NUM_THREADS", e.message)
        self.assertEqual(e.message, _capi.last_error_message())


class Contexts(unittest.TestCase):
    def test_options_round_trip(self):
        with libmtl.Context(num_threads=3, seed=99, parallel_min_flops=1000) as ctx:
            self.assertEqual(ctx.get("num_threads"), 3)
            self.assertEqual(ctx.get(libmtl.Option.SEED), 99)
            self.assertEqual(ctx.get("PARALLEL_MIN_FLOPS"), 1000)
            ctx.set(seed=5)
            self.assertEqual(ctx.get("seed"), 5)
        self.assertTrue(ctx.closed)
        with self.assertRaises(libmtl.StateError):
            ctx.get("seed")
        ctx.close()  # idempotent

    def test_bad_options(self):
        ctx = libmtl.Context()
        with self.assertRaises(libmtl.InvalidArgumentError) as cm:
            ctx.set(no_such_option=1)
        self.assertIn("no_such_option", str(cm.exception))
        with self.assertRaises(libmtl.InvalidArgumentError):
            ctx.set(seed=1.5)  # not an integer
        with self.assertRaises(libmtl.InvalidArgumentError):
            ctx.set(seed=-1)  # out of bounds: the library says so
        # A trainer option on a context: the library rejects it.
        with self.assertRaises(libmtl.InvalidArgumentError):
            ctx.set(epochs=3)
        ctx.set(seed=7.0)  # integral float is fine
        self.assertEqual(ctx.get("seed"), 7)

    @needs(*("mtl_model_create", "mtl_model_add_task", "mtl_model_finalize"))
    def test_log_callback_kept_alive_for_handles_made_from_context(self):
        messages = []
        ctx = libmtl.Context(log=lambda level, msg: messages.append((level, msg)),
                             log_level="debug")
        m = libmtl.Model(3, context=ctx)
        del ctx
        gc.collect()
        # The model copied the callback pointer: the CFUNCTYPE object must
        # still be alive (a freed trampoline would crash here, if libmtl logs).
        m.add_trunk_layer(4)
        m.add_task("a")
        m.finalize()
        self.assertIsNotNone(m._keep)
        for level, msg in messages:
            self.assertIsInstance(level, int)
            self.assertIsInstance(msg, str)

    @needs("mtl_dataset_load_csv_buffer")
    def test_log_messages_reach_python(self):
        seen = []
        ctx = libmtl.Context(log=lambda level, msg: seen.append((level, msg)), log_level="info")
        libmtl.Dataset.from_csv_bytes("a,b\n1,2\n", ["a"], ["b"], context=ctx)
        self.assertTrue(seen, "the CSV loader logs at INFO")
        self.assertTrue(all(isinstance(lv, libmtl.LogLevel) and isinstance(m, str)
                            for lv, m in seen), seen)
        logger = logging.getLogger("libmtl-test-capture")
        with self.assertLogs(logger, level="INFO") as logs:
            ctx.set_log(logger, "info")
            libmtl.Dataset.from_csv_bytes("a,b\n1,2\n", ["a"], ["b"], context=ctx)
        self.assertTrue(logs.output)
        ctx.set_log(None)
        n = len(seen)
        libmtl.Dataset.from_csv_bytes("a,b\n1,2\n", ["a"], ["b"], context=ctx)
        self.assertEqual(len(seen), n)

    def test_log_to_logging_logger_and_off(self):
        ctx = libmtl.Context()
        ctx.set_log(logging.getLogger("libmtl-test"), "info")
        self.assertIsNotNone(ctx._keepalive())
        ctx.set_log(None)
        self.assertIsNone(ctx._keepalive())
        with self.assertRaises(libmtl.InvalidArgumentError):
            ctx.set_log(print, "loud")

    def test_context_type_checked(self):
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Model(3, context="not a context")


class OptionsAndEnums(unittest.TestCase):
    def test_bounds(self):
        lo, hi = libmtl.option_bounds("num_threads")
        self.assertEqual((lo, hi), (1, 256))
        self.assertIsInstance(lo, int)
        lo, hi = libmtl.option_bounds("learning_rate")
        self.assertIsInstance(lo, float)
        self.assertLess(lo, 1e-3)
        self.assertGreaterEqual(hi, 1e-3)
        self.assertEqual(libmtl.option_bounds("optimizer"),
                         (min(libmtl.Optimizer), max(libmtl.Optimizer)))
        self.assertEqual(libmtl.option_bounds("weighting"),
                         (min(libmtl.Weighting), max(libmtl.Weighting)))
        libmtl.option_bounds("lr_multiplier")  # a TaskOption name works too
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.option_bounds("nope")

    def test_to_enum(self):
        self.assertIs(enums.to_enum(libmtl.Activation, "leaky-relu"), libmtl.Activation.LEAKY_RELU)
        self.assertIs(enums.to_enum(libmtl.Activation, 3), libmtl.Activation.TANH)
        self.assertEqual(enums.to_enum(libmtl.Activation, 99), 99)  # the library decides
        with self.assertRaises(libmtl.InvalidArgumentError) as cm:
            enums.to_enum(libmtl.Activation, "swish")
        self.assertIn("relu", str(cm.exception))  # lists the valid names
        with self.assertRaises(libmtl.InvalidArgumentError):
            enums.to_enum(libmtl.Activation, 1.0)

    def test_option_value_types(self):
        self.assertTrue(libmtl.Option.LEARNING_RATE.is_float)
        self.assertFalse(libmtl.Option.EPOCHS.is_float)
        self.assertEqual(libmtl.context.option_c_value(libmtl.Option.OPTIMIZER, "sgd"),
                         (False, 1))
        self.assertEqual(libmtl.context.option_c_value(libmtl.Option.NESTEROV, True), (False, 1))
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.context.option_c_value(libmtl.Option.LEARNING_RATE, "fast")


class Blis(unittest.TestCase):
    def test_info(self):
        info = libmtl.blis_info()
        self.assertEqual(set(info), {"version", "arch", "is_fallback", "threading"})
        self.assertRegex(info["version"], r"^\d+\.\d+")
        self.assertIn(info["threading"], ("openmp", "pthreads", "none"))
        self.assertIsInstance(info["is_fallback"], bool)

    def test_small_kernels(self):
        self.assertIn(libmtl.small_kernels(), ("avx512", "avx2", "none"))
        # The environment variable, in a fresh process (read once).
        code = "import libmtl\nprint(libmtl.small_kernels())\n"
        env = dict(os.environ, MTL_SMALL_KERNEL="off")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "none")

    def test_select_best_arch_in_a_fresh_process(self):
        # Process-wide and one-shot: run it where nothing has used BLIS.
        code = ("import libmtl\n"
                "chosen = libmtl.select_best_arch()\n"
                "print(chosen, libmtl.blis_info()['arch'])\n")
        env = {k: v for k, v in os.environ.items() if k != "BLIS_ARCH_TYPE"}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        chosen, arch = r.stdout.split()
        self.assertEqual(chosen, arch)


@needs("mtl_delta_m")
class DeltaM(unittest.TestCase):
    def test_against_formula(self):
        multi, single = [3.56, 3.57, 0.9], [3.61, 3.50, 0.8]
        hib = [False, False, True]
        s = np.array([1, 1, -1])
        want = 100 / 3 * np.sum(s * (np.array(single) - multi) / np.array(single))
        self.assertAlmostEqual(libmtl.delta_m(multi, single, hib), want, places=10)
        want_all_lower = 100 / 3 * np.sum((np.array(single) - multi) / np.array(single))
        self.assertAlmostEqual(libmtl.delta_m(multi, single), want_all_lower, places=10)

    def test_errors(self):
        with self.assertRaises(libmtl.ShapeError):
            libmtl.delta_m([1, 2], [1, 2, 3])
        with self.assertRaises(libmtl.MtlError):
            libmtl.delta_m([1.0], [0.0])  # division by a zero single-task value


class Ownership(unittest.TestCase):
    """The Native rules, with a Python destroy function that records calls."""

    def make(self, freed, name, deps=()):
        return _native.Native(len(freed) + 1000, lambda p: freed.append(name), name, deps)

    def test_close_is_idempotent_and_blocks_use(self):
        freed = []
        a = self.make(freed, "a")
        with a as p:
            self.assertEqual(p, 1000)
        a.close()
        a.close()
        self.assertEqual(freed, ["a"])
        with self.assertRaises(libmtl.StateError):
            a.acquire()

    def test_dependent_keeps_dependency_alive_any_close_order(self):
        for order in ("model_first", "trainer_first"):
            freed = []
            model = self.make(freed, "model")
            with model:
                trainer = self.make(freed, "trainer", deps=[model])
            if order == "model_first":
                model.close()
                self.assertEqual(freed, [])  # trainer still uses it
                trainer.close()
            else:
                trainer.close()
                model.close()
            self.assertEqual(freed, ["trainer", "model"], order)

    def test_close_during_a_call_defers_destroy(self):
        freed = []
        a = self.make(freed, "a")
        with a:
            a.close()
            self.assertEqual(freed, [])
        self.assertEqual(freed, ["a"])

    def test_concurrent_close_frees_once(self):
        freed = []
        a = self.make(freed, "a")
        users = [a.acquire() for _ in range(50)]
        threads = [threading.Thread(target=a.release) for _ in users]
        threads += [threading.Thread(target=a.close) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(freed, ["a"])

    @needs("mtl_model_create", "mtl_trainer_create", "mtl_model_finalize")
    def test_gc_order_cannot_free_a_model_before_its_trainer(self):
        # A reference cycle makes the collector run __del__ in an arbitrary
        # order; whatever the order, the trainer must be destroyed first.
        for _ in range(3):
            m = tiny_model()
            tr = libmtl.Trainer(m, max_batch=4)
            ws = libmtl.Workspace(m, 2)
            m.cycle, tr.cycle, ws.cycle = tr, ws, m
            del m, tr, ws
            gc.collect()

    @needs("mtl_model_create", "mtl_trainer_create", "mtl_model_finalize", "mtl_trainer_step")
    def test_model_closed_before_trainer_keeps_training(self):
        m = tiny_model()
        tr = libmtl.Trainer(m, max_batch=8)
        m.close()
        with self.assertRaises(libmtl.StateError):
            m.predict(np.zeros((1, 5), np.float32))
        x = np.ones((4, 5), np.float32)
        losses = tr.step(x, np.ones((4, 2), np.float32))  # the C model is still alive
        self.assertEqual(losses.shape, (2,))
        tr.close()


if __name__ == "__main__":
    unittest.main()
