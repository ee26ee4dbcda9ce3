"""numpy arrays as (pointer, leading dimension) pairs for the C API.

libmtl takes row-major float32 matrices with an explicit leading dimension
(row stride in elements).  A float32 array whose elements are contiguous
within each row and whose rows are evenly spaced -- a C-contiguous array,
but also a column slice ``big[:, 3:10]`` or a row slice ``big[::2]`` -- is
passed as it is, with ``ld = strides[0] / 4``: no copy.  Anything else
(float64, Fortran order, a transposed view, a list) is converted once into
a new C-contiguous float32 array, which is what the C call then reads.
"""

import numpy as np

from ._capi import p_float, p_int64, p_uint8
from .errors import ShapeError

F32 = np.dtype(np.float32)


def _strided_ok(a, itemsize):
    """True when C can address `a` as rows of contiguous elements."""
    if not a.flags.aligned:
        return False
    rows, cols = a.shape
    if cols > 1 and a.strides[1] != itemsize:
        return False
    if rows > 1 and (a.strides[0] <= 0 or a.strides[0] % itemsize
                     or a.strides[0] // itemsize < cols):
        return False
    return True


def _ld(a, itemsize):
    rows, cols = a.shape
    return a.strides[0] // itemsize if rows > 1 else max(cols, 1)


def as_2d(a, name, one_d):
    """ndarray view of `a` with two dimensions.  A 1-D array is one row
    (one_d='row') or one column (one_d='column')."""
    a = np.asarray(a)
    if a.ndim == 1:
        a = a.reshape(1, -1) if one_d == "row" else a.reshape(-1, 1)
    elif a.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D array (rows x columns), not {a.ndim}-D")
    return a


def float_matrix(a, name, cols=None, rows=None, one_d="row"):
    """Input matrix -> (array, float *, rows, ld).  Keep `array` referenced
    while C reads the pointer (it may be a converted copy)."""
    a = as_2d(a, name, one_d)
    if cols is not None and a.shape[1] != cols:
        raise ShapeError(f"{name} has {a.shape[1]} columns, expected {cols}")
    if rows is not None and a.shape[0] != rows:
        raise ShapeError(f"{name} has {a.shape[0]} rows, expected {rows}")
    if a.dtype != F32 or not _strided_ok(a, 4):
        a = np.ascontiguousarray(a, dtype=F32)  # the one documented conversion
    return a, a.ctypes.data_as(p_float), a.shape[0], _ld(a, 4)


def mask_matrix(m, name, shape):
    """Observed-label mask (non-zero = observed) -> (array, uint8 *, ld).
    bool and uint8 arrays are passed without a copy."""
    m = as_2d(m, name, "column")
    if m.shape != shape:
        raise ShapeError(f"{name} has shape {m.shape}, expected {shape} (the targets' shape)")
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
    elif m.dtype != np.uint8:
        m = (m != 0).astype(np.uint8)
    if not _strided_ok(m, 1):
        m = np.ascontiguousarray(m)
    return m, m.ctypes.data_as(p_uint8), _ld(m, 1)


def float_vector(v, name, n):
    """A length-n float32 vector (contiguous) -> (array, float *)."""
    v = np.asarray(v)
    if v.ndim != 1 or v.shape[0] != n:
        raise ShapeError(f"{name} must be a vector of length {n}, not shape {v.shape}")
    v = np.ascontiguousarray(v, dtype=F32)
    return v, v.ctypes.data_as(p_float)


def int64_vector(v, name):
    v = np.asarray(v)
    if v.ndim != 1:
        raise ShapeError(f"{name} must be a 1-D sequence of indices, not shape {v.shape}")
    if v.size and v.dtype.kind not in "iu":
        raise ShapeError(f"{name} must hold integer indices, not {v.dtype}")
    v = np.ascontiguousarray(v, dtype=np.int64)
    return v, v.ctypes.data_as(p_int64)


class OutMatrix:
    """Where C writes a rows x cols float32 result.

    Without `out`, a new C-contiguous array.  With `out`, C writes straight
    into it when it is a writeable float32 array C can address (see module
    doc); otherwise into a temporary that :meth:`finish` copies into `out`.
    """

    def __init__(self, out, rows, cols, name="out"):
        self.user = out
        self.direct = True
        if out is None:
            self.array = np.empty((rows, cols), dtype=F32)
        else:
            if not isinstance(out, np.ndarray):
                raise ShapeError(f"{name} must be a numpy array")
            view = out.reshape(rows, cols) if out.ndim == 1 and rows == 1 else out
            if view.shape != (rows, cols):
                raise ShapeError(f"{name} has shape {out.shape}, expected {(rows, cols)}")
            self.direct = (view.dtype == F32 and view.flags.writeable
                           and _strided_ok(view, 4))
            self.array = view if self.direct else np.empty((rows, cols), dtype=F32)
        self.ptr = self.array.ctypes.data_as(p_float)
        self.ld = _ld(self.array, 4)

    def finish(self):
        if self.user is None:
            return self.array
        if not self.direct:
            np.copyto(self.user, self.array.reshape(self.user.shape), casting="same_kind")
        return self.user
