"""Dataset: zero-copy binding and its keep-alive rule, conversions, masks,
weights, views, read-back, CSV files and buffers (gzip included)."""

import csv
import gc
import gzip
import io
import os
import tempfile
import unittest

import numpy as np

import libmtl

from support import DATA_CSV, needs, toy_data

CREATE = ("mtl_dataset_create", "mtl_dataset_get_inputs", "mtl_dataset_get_targets")


@needs(*CREATE)
class Binding(unittest.TestCase):
    def test_float32_rows_are_bound_not_copied(self):
        x, y = toy_data(n=10)
        ds = libmtl.Dataset(x, y)
        self.assertEqual((len(ds), ds.n_inputs, ds.n_targets), (10, 5, 2))
        x[3, 1] = 123.0
        y[4, 0] = -7.0
        self.assertEqual(ds.inputs()[3, 1], 123.0)
        self.assertEqual(ds.targets()[4, 0], -7.0)
        self.assertIs(ds._arrays[0], x)

    def test_column_slice_is_bound_with_its_stride(self):
        big = np.arange(60, dtype=np.float32).reshape(10, 6)
        ds = libmtl.Dataset(big[:, 1:4])
        np.testing.assert_array_equal(ds.inputs(), big[:, 1:4])
        big[9, 3] = -1.0
        self.assertEqual(ds.inputs()[9, 2], -1.0)  # no copy was made

    def test_other_layouts_are_converted_once(self):
        x, y = toy_data(n=10)
        x64 = x.astype(np.float64)
        ds = libmtl.Dataset(x64, y.T.copy().T)  # float64 x; Fortran-order y
        np.testing.assert_array_equal(ds.inputs(), x)
        np.testing.assert_array_equal(ds.targets(), y)
        x64[0, 0] = 99.0
        self.assertNotEqual(ds.inputs()[0, 0], 99.0)  # bound to the converted copy

    def test_copy_flag(self):
        x, y = toy_data(n=10)
        ds = libmtl.Dataset(x, y, copy=True)
        self.assertIsNone(ds._arrays)
        x[0, 0] = 55.0
        self.assertNotEqual(ds.inputs()[0, 0], 55.0)

    def test_bound_arrays_live_as_long_as_the_dataset_and_its_views(self):
        n = 2000
        ds = libmtl.Dataset(np.arange(n * 3, dtype=np.float64).reshape(n, 3) * 0.5,
                            np.arange(n, dtype=np.float32))  # temporaries, converted/bound
        view = ds[::-1]
        ds.close()
        del ds
        gc.collect()
        _ = [np.random.default_rng(i).random((n, 3)) for i in range(20)]  # reuse freed memory
        self.assertEqual(view.n_rows, n)
        np.testing.assert_array_equal(view.inputs()[0], [(n - 1) * 1.5, (n - 1) * 1.5 + 0.5,
                                                         (n - 1) * 1.5 + 1.0])
        np.testing.assert_array_equal(view.targets()[:, 0], np.arange(n)[::-1])

    def test_targets_masks_weights(self):
        x, y = toy_data(n=12, missing=0.3)
        ds = libmtl.Dataset(x, y)
        np.testing.assert_array_equal(np.isnan(ds.targets()), np.isnan(y))
        one = libmtl.Dataset(x, y[:, 0])  # 1-D y: one target column
        self.assertEqual(one.n_targets, 1)
        obs = ~np.isnan(y)
        yz = np.nan_to_num(y)
        for mask in (obs, obs.astype(np.uint8), obs.astype(np.int32)):
            libmtl.Dataset(x, yz, mask=mask)
        libmtl.Dataset(x, y, sample_weight=np.linspace(0, 1, 12))
        with self.assertRaises(libmtl.ShapeError):
            libmtl.Dataset(x, y, mask=obs[:, :1])
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Dataset(x, mask=obs)
        with self.assertRaises(libmtl.ShapeError):
            libmtl.Dataset(x, y, sample_weight=np.ones(11))
        with self.assertRaises(libmtl.ShapeError):
            libmtl.Dataset(x, y[:11])
        with self.assertRaises(libmtl.ShapeError):
            libmtl.Dataset(x[0])  # 1-D x is ambiguous: refused
        with self.assertRaises(libmtl.MtlError):
            libmtl.Dataset(x, y, sample_weight=-np.ones(12))

    def test_non_finite_values_are_reported_with_position(self):
        x, y = toy_data(n=12)
        x[7, 3] = np.inf
        with self.assertRaises(libmtl.NonFiniteError) as cm:
            libmtl.Dataset(x, y)
        self.assertIn("7", cm.exception.message)
        self.assertIn("3", cm.exception.message)
        x, y = toy_data(n=12)
        y[2, 1] = -np.inf
        with self.assertRaises(libmtl.NonFiniteError):
            libmtl.Dataset(x, y)


@needs(*CREATE, "mtl_dataset_view")
class Views(unittest.TestCase):
    def test_views_and_indexing(self):
        x, y = toy_data(n=20)
        ds = libmtl.Dataset(x, y)
        rows = [3, 3, 0, 19]
        v = ds.view(rows)
        np.testing.assert_array_equal(v.inputs(), x[rows])
        np.testing.assert_array_equal(v.targets(), y[rows])
        np.testing.assert_array_equal(ds[5:9].inputs(), x[5:9])
        sel = x[:, 0] > 0
        np.testing.assert_array_equal(ds[sel].targets(), y[sel])
        np.testing.assert_array_equal(ds[4].inputs(), x[4:5])
        np.testing.assert_array_equal(v[1:3].inputs(), x[[3, 0]])  # view of a view
        np.testing.assert_array_equal(ds.inputs(first=2, n=3), x[2:5])
        with self.assertRaises(libmtl.MtlError):
            ds.view([20])
        with self.assertRaises(libmtl.MtlError):
            ds.inputs(first=18, n=5)
        with self.assertRaises(libmtl.ShapeError):
            ds.view([[1, 2]])
        with self.assertRaises(libmtl.ShapeError):
            ds.view([0.5])


CSV_TEXT = ('id,"temp, K",x2,"ln ""k""",E\r\n'
            '1,300,0.5,-1.25,10\r\n'
            '2,310.5,"1e-3",,11\r\n'
            '3,320,2,NaN,\r\n'
            '4,330,,3.5,12\r\n')


@needs("mtl_dataset_load_csv", "mtl_dataset_load_csv_buffer", *CREATE)
class Csv(unittest.TestCase):
    def test_buffer_quoting_crlf_missing_labels(self):
        ds = libmtl.Dataset.from_csv_bytes(CSV_TEXT.encode(), ["temp, K", "x2"],
                                           ['ln "k"', "E"], drop_incomplete=True)
        self.assertEqual(len(ds), 3)  # row 4 has an empty input
        np.testing.assert_array_equal(ds.inputs(),
                                      np.float32([[300, 0.5], [310.5, 1e-3], [320, 2]]))
        t = ds.targets()
        np.testing.assert_array_equal(t[0], [-1.25, 10])
        self.assertTrue(np.isnan(t[1, 0]) and t[1, 1] == 11)
        self.assertTrue(np.isnan(t[2]).all())
        same = libmtl.Dataset.from_csv_bytes(CSV_TEXT, ["temp, K", "x2"], ['ln "k"', "E"],
                                             drop_incomplete=True)  # str input
        np.testing.assert_array_equal(same.inputs(), ds.inputs())
        only_inputs = libmtl.Dataset.from_csv_bytes(CSV_TEXT, ["id"])
        self.assertEqual((len(only_inputs), only_inputs.n_targets), (4, 0))

    def test_errors_name_line_and_column(self):
        with self.assertRaises(libmtl.MtlError) as cm:
            libmtl.Dataset.from_csv_bytes(CSV_TEXT, ["temp, K", "x2"], ["E"])
        self.assertIn("5", cm.exception.message)   # line 5: empty x2
        self.assertIn("x2", cm.exception.message)
        with self.assertRaises(libmtl.NotFoundError) as cm:
            libmtl.Dataset.from_csv_bytes(CSV_TEXT, ["nope"])
        self.assertIn("nope", cm.exception.message)
        with self.assertRaises(libmtl.MtlError):
            libmtl.Dataset.from_csv_bytes(b"", ["a"])
        with self.assertRaises(libmtl.InvalidArgumentError):
            libmtl.Dataset.from_csv_bytes(CSV_TEXT, "temp, K")  # one string, not a list
        with self.assertRaises(libmtl.FileIOError):
            libmtl.Dataset.load_csv("/nonexistent/x.csv", ["a"])

    def test_files_plain_and_gzip(self):
        with tempfile.TemporaryDirectory() as d:
            plain, gz = os.path.join(d, "t.csv"), os.path.join(d, "t.csv.gz")
            with open(plain, "w", newline="") as f:
                f.write(CSV_TEXT)
            with gzip.open(gz, "wt", newline="") as f:
                f.write(CSV_TEXT)
            a = libmtl.Dataset.load_csv(plain, ["id", "temp, K"], ["E"])
            b = libmtl.Dataset.load_csv(gz, ["id", "temp, K"], ["E"])
            np.testing.assert_array_equal(a.inputs(), b.inputs())
            np.testing.assert_array_equal(a.targets(), b.targets())
            np.testing.assert_array_equal(a.inputs()[:, 0], [1, 2, 3, 4])

    @unittest.skipUnless(os.path.exists(DATA_CSV), "examples/data/cycloadd_features.csv.gz absent")
    def test_vendored_cycloaddition_data_against_python_csv(self):
        with gzip.open(DATA_CSV, "rt", newline="") as f:
            rows = list(csv.reader(io.StringIO(f.read())))
        header, rows = rows[0], rows[1:]
        cols = ["split", "fp_0", "d_delta_tpsa"]
        ds = libmtl.Dataset.load_csv(DATA_CSV, cols, ["G_act", "G_r"])
        self.assertEqual(len(ds), 5269)  # as the data README states
        idx = [header.index(c) for c in cols + ["G_act", "G_r"]]
        ref = np.array([[float(r[i]) for i in idx] for r in rows], dtype=np.float32)
        np.testing.assert_array_equal(ds.inputs(), ref[:, :3])
        np.testing.assert_array_equal(ds.targets(), ref[:, 3:])
        self.assertAlmostEqual(float(ds.targets()[:, 0].min()), 0.5, delta=0.05)
        self.assertAlmostEqual(float(ds.targets()[:, 0].max()), 75.8, delta=0.05)


if __name__ == "__main__":
    unittest.main()
