"""Python <-> C: a model trained in Python loads in a C program and gives
identical predictions, and the reverse; the same training run through the
binding and through C gives the same bits.  The C side is
tests/python/mtl_pyhelper.c (built by meson; $MTL_TEST_HELPER)."""

import os
import subprocess
import tempfile
import unittest

import numpy as np

import libmtl

from support import FIT_FUNCS, HELPER, needs, toy_data

N, D = 48, 5


def reference_training(x, y):
    """The same model and run as cmd_train() in mtl_pyhelper.c."""
    ctx = libmtl.Context(seed=1234)
    m = libmtl.Model(D, context=ctx)
    m.add_trunk_layer(16, "tanh")
    a = m.add_task("a", "regression", outputs=1)
    m.add_head_layer(a, 8, "relu")
    b = m.add_task("b")
    m.set_task_option(b, loss_weight=0.5)
    m.finalize()
    m.metadata["made_by"] = "mtl_pyhelper"
    train = libmtl.Dataset(x, y, context=ctx)
    m.fit_scalers(train)
    with libmtl.Trainer(m, max_batch=16, optimizer="adam", learning_rate=0.01, batch_size=16,
                        epochs=5) as tr:
        tr.fit(train)
    return m


@unittest.skipUnless(HELPER and os.path.exists(HELPER), "MTL_TEST_HELPER not built")
@needs(*FIT_FUNCS, "mtl_model_save", "mtl_model_load", "mtl_workspace_create")
class Interop(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.x, self.y = toy_data(n=N, d=D, seed=4, missing=0.1)
        self.x_path = self.path("x.f32")
        self.x.tofile(self.x_path)  # raw float32, row-major

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def helper(self, *args):
        r = subprocess.run([HELPER, *map(str, args)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f"mtl_pyhelper {args[0]} failed:\n{r.stderr}")

    def python_predict(self, m):
        with libmtl.Workspace(m, max_batch=N) as ws:  # the helper's batch: same chunking
            return m.predict(self.x, workspace=ws)

    def test_c_trained_model_predicts_identically_in_python(self):
        y_path = self.path("y.f32")
        self.y.tofile(y_path)
        self.helper("train", self.x_path, y_path, N, D, self.path("c.mtl"),
                    self.path("c_pred.f32"))
        c_pred = np.fromfile(self.path("c_pred.f32"), dtype=np.float32).reshape(N, 2)
        with libmtl.Model.load(self.path("c.mtl")) as m:
            self.assertEqual(m.metadata["made_by"], "mtl_pyhelper")
            self.assertEqual(self.python_predict(m).tobytes(), c_pred.tobytes())

    def test_python_trained_model_predicts_identically_in_c(self):
        m = reference_training(self.x, self.y)
        m.save(self.path("py.mtl"))
        self.helper("predict", self.path("py.mtl"), self.x_path, N, N, self.path("out.f32"))
        c_out = np.fromfile(self.path("out.f32"), dtype=np.float32)
        self.assertEqual(c_out.tobytes(), self.python_predict(m).tobytes())

    def test_same_training_through_python_and_c_gives_same_bits(self):
        y_path = self.path("y.f32")
        self.y.tofile(y_path)
        self.helper("train", self.x_path, y_path, N, D, self.path("c.mtl"),
                    self.path("c_pred.f32"))
        py = reference_training(self.x, self.y)
        with libmtl.Model.load(self.path("c.mtl")) as c:
            np.testing.assert_array_equal(py.get_params(), c.get_params())
            self.assertEqual(self.python_predict(py).tobytes(),
                             np.fromfile(self.path("c_pred.f32"), np.float32).tobytes())
        with open(self.path("c.mtl"), "rb") as f:
            self.assertEqual(py.to_bytes(), f.read(), "model files differ")


if __name__ == "__main__":
    unittest.main()
