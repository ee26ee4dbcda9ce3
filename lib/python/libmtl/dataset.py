"""Dataset: host arrays bound zero-copy (or copied), CSV files, row views."""

from ctypes import byref, c_void_p

import numpy as np

from . import enums
from ._arrays import F32, float_matrix, float_vector, int64_vector, mask_matrix
from ._capi import C, call, encode_path, p_float, string_array
from ._native import Native, Owner, using
from .context import context_pointer
from .errors import InvalidArgumentError, ShapeError

__all__ = ["Dataset"]


class Dataset(Owner):
    """Examples for training and evaluation: inputs ``x`` (rows x features)
    and optional targets ``y`` (rows x target_width, NaN = no label).

        train = libmtl.Dataset(x, y)            # binds x and y: no copy
        train = libmtl.Dataset(x, y, copy=True) # libmtl keeps its own copy

    Without ``copy`` the arrays are bound: C reads them where they are, and
    this object keeps them referenced for as long as it (or any view of it)
    lives.  Do not modify them while the data set is in use.  Arrays that
    are not float32 rows (see docs/python.md) are converted once, and the
    converted copy is what is bound.
    """

    def __init__(self, x, y=None, mask=None, sample_weight=None, copy=False, context=None):
        if np.ndim(x) != 2:
            raise ShapeError(f"x must be a 2-D array (rows x features), not {np.ndim(x)}-D")
        xa, xp, n, ldx = float_matrix(x, "x")
        ya = yp = ma = mp = wa = wp = None
        n_targets = ldy = ldmask = 0
        if y is not None:
            ya, yp, _, ldy = float_matrix(y, "y", rows=n, one_d="column")
            n_targets = ya.shape[1]
        if mask is not None:
            if ya is None:
                raise InvalidArgumentError("a mask needs targets y")
            ma, mp, ldmask = mask_matrix(mask, "mask", ya.shape)
        if sample_weight is not None:
            wa, wp = float_vector(sample_weight, "sample_weight", n)
        ctx, keep = context_pointer(context)
        flags = enums.DATASET_COPY if copy else 0
        out = c_void_p()
        with using(ctx) as cp:
            call("mtl_dataset_create", byref(out), cp, n, xa.shape[1], n_targets, xp, ldx,
                 yp, ldy, mp, ldmask, wp, flags)
        # Bound arrays live as long as this handle and its views.
        self._adopt(out.value, None if copy else (xa, ya, ma, wa), keep)

    def _adopt(self, ptr, arrays, keep):
        self._native = Native(ptr, C.mtl_dataset_destroy, "dataset")
        self._arrays = arrays
        self._keep = keep

    @classmethod
    def _from_pointer(cls, ptr, arrays, keep):
        self = cls.__new__(cls)
        self._adopt(ptr, arrays, keep)
        return self

    # ---- CSV ----------------------------------------------------------------
    @classmethod
    def load_csv(cls, path, inputs, targets=None, drop_incomplete=False, context=None):
        """Load a CSV file (a .gz file is decompressed transparently),
        choosing input and target columns by name.  Empty or NaN target
        cells are missing labels; a missing input is an error unless
        ``drop_incomplete``.  Errors (FormatError, NotFoundError, ...) name
        the line and column."""
        in_names, n_in = string_array(inputs, "inputs")
        t_names, n_t = string_array(targets, "targets")
        ctx, keep = context_pointer(context)
        out = c_void_p()
        flags = enums.CSV_DROP_INCOMPLETE if drop_incomplete else 0
        with using(ctx) as cp:
            call("mtl_dataset_load_csv", byref(out), cp, encode_path(path), in_names, n_in,
                 t_names, n_t, flags)
        return cls._from_pointer(out.value, None, keep)

    @classmethod
    def from_csv_bytes(cls, data, inputs, targets=None, drop_incomplete=False, context=None):
        """Like :meth:`load_csv`, from CSV text in memory (bytes, or str
        which is encoded as UTF-8)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, bytes):
            data = bytes(memoryview(data))
        in_names, n_in = string_array(inputs, "inputs")
        t_names, n_t = string_array(targets, "targets")
        ctx, keep = context_pointer(context)
        out = c_void_p()
        flags = enums.CSV_DROP_INCOMPLETE if drop_incomplete else 0
        with using(ctx) as cp:
            call("mtl_dataset_load_csv_buffer", byref(out), cp, data, len(data), in_names, n_in,
                 t_names, n_t, flags)
        return cls._from_pointer(out.value, None, keep)

    load_csv_buffer = from_csv_bytes  # the C function's name

    # ---- views --------------------------------------------------------------
    def view(self, rows):
        """A data set of the given rows (indices, repeats allowed) sharing
        this one's storage.  It stays valid after this one is closed."""
        idx, ip = int64_vector(rows, "rows")
        out = c_void_p()
        with self._native as p:
            call("mtl_dataset_view", byref(out), p, idx.shape[0], ip)
        return Dataset._from_pointer(out.value, self._arrays, self._keep)

    def __getitem__(self, key):
        """``ds[10:20]``, ``ds[index_array]``, ``ds[bool_mask]``: a view."""
        if isinstance(key, (int, np.integer)):
            key = [key]
        return self.view(np.arange(self.n_rows, dtype=np.int64)[key])

    # ---- read-back ----------------------------------------------------------
    def _count(self, fname):
        with self._native as p:
            return getattr(C, fname)(p)

    n_rows = property(lambda self: self._count("mtl_dataset_row_count"))
    n_inputs = property(lambda self: self._count("mtl_dataset_input_count"))
    n_targets = property(lambda self: self._count("mtl_dataset_target_count"))

    def __len__(self):
        return self.n_rows

    def _rows(self, fname, width, first, n):
        if n is None:
            n = self.n_rows - first
        out = np.empty((n, width), dtype=F32)
        with self._native as p:
            call(fname, p, int(first), int(n), out.ctypes.data_as(p_float), max(width, 1))
        return out

    def inputs(self, first=0, n=None):
        """A copy of rows [first, first + n) of the inputs (all by default)."""
        return self._rows("mtl_dataset_get_inputs", self.n_inputs, first, n)

    def targets(self, first=0, n=None):
        """A copy of rows [first, first + n) of the targets (NaN = missing)."""
        return self._rows("mtl_dataset_get_targets", self.n_targets, first, n)

    def __repr__(self):
        if self.closed:
            return "<libmtl.Dataset (closed)>"
        return (f"<libmtl.Dataset {self.n_rows} rows, {self.n_inputs} inputs, "
                f"{self.n_targets} targets>")

