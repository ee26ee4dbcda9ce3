"""libmtl: multi-task neural networks for chemical kinetics, from Python.

A pure-Python binding (ctypes + numpy, nothing to compile) of the C library
libmtl.so.0.  The library is found through $MTL_LIBRARY (a path), else the
directory it was installed to, else the dynamic linker's search path.

    import numpy as np, libmtl

    m = libmtl.Model(n_features)
    m.add_trunk_layer(256, "relu", dropout=0.1)
    for name in ("G_act", "G_r"):
        t = m.add_task(name)                      # regression, one output
        m.add_head_layer(t, 64, "relu")
    m.finalize()

    train = libmtl.Dataset(x_train, y_train)      # float32 rows: no copy; NaN = no label
    val = libmtl.Dataset(x_val, y_val)
    m.fit_scalers(train)
    with libmtl.Trainer(m, max_batch=128, learning_rate=1e-3, epochs=200,
                        early_stop_patience=25) as tr:
        tr.fit(train, val,
               callback=lambda tr, epoch, step: print(epoch, tr.epoch_losses("validation")))
    y = m.predict(x_test)                         # rows x 2, in target units
    m.save("barrier.mtl")

Every failing call raises a subclass of :class:`MtlError` carrying the
status code and the library's message.  See docs/python.md.
"""

import ctypes

import numpy as np

from . import enums
from ._capi import C, call, decode, library_path, library_version_number
from .context import Context, option_bounds
from .dataset import Dataset
from .enums import (CSV_DROP_INCOMPLETE, DATASET_COPY, LAYER_NORM, Activation, Diagnostic,
                    Init, Loss, LogLevel, Metric, Option, Optimizer, Schedule, Scope, Split,
                    Status, TaskOption, TaskType, Weighting)
from .errors import (FileIOError, FormatError, InternalError, InvalidArgumentError, MtlError,
                     NonFiniteError, NotFoundError, OutOfMemoryError, ShapeError, StateError,
                     UnsupportedError, VersionError)
from .model import Metadata, Model, ParamBlock, Workspace
from .trainer import Trainer

__version__ = f"{enums.VERSION_MAJOR}.{enums.VERSION_MINOR}.{enums.VERSION_PATCH}"

__all__ = [
    "Context", "Model", "Workspace", "Dataset", "Trainer", "Metadata", "ParamBlock",
    "Status", "Option", "TaskOption", "LogLevel", "Activation", "Init", "TaskType", "Loss", "Metric",
    "Optimizer", "Schedule", "Weighting", "Split", "Diagnostic", "Scope",
    "LAYER_NORM", "DATASET_COPY", "CSV_DROP_INCOMPLETE",
    "MtlError", "InvalidArgumentError", "OutOfMemoryError", "ShapeError", "StateError",
    "FileIOError", "FormatError", "VersionError", "NonFiniteError", "UnsupportedError",
    "InternalError", "NotFoundError",
    "library_version", "library_version_number", "library_path", "missing_functions",
    "blis_info", "select_best_arch", "delta_m", "option_bounds", "status_string",
]

#: C functions of mtl.h the loaded library does not export (empty for a
#: complete library; calling one raises UnsupportedError).
missing_functions = tuple(C.missing)


def library_version():
    """Version string of the loaded C library ("0.1.0")."""
    return decode(C.mtl_version_string())


def status_string(status):
    """The library's short description of a status code."""
    return decode(C.mtl_status_string(int(status)))


def blis_info():
    """The BLIS library libmtl runs on: version, kernel set ('arch'),
    whether that is the generic fallback on a CPU with AVX2/AVX-512, and
    its threading model."""
    return {"version": decode(C.mtl_blis_version()), "arch": decode(C.mtl_blis_arch()),
            "is_fallback": bool(C.mtl_blis_is_fallback()),
            "threading": decode(C.mtl_blis_threading())}


def small_kernels():
    """Instruction set of libmtl's own kernels for small products:
    'avx512', 'avx2' or 'none' (BLIS computes everything).  The
    environment variable MTL_SMALL_KERNEL=avx2 or =off overrides it."""
    return decode(C.mtl_small_kernels())


def select_best_arch():
    """Opt in to the fastest BLIS kernels for this CPU (process-wide; call
    at start-up, before anything uses BLIS).  Returns the kernel set in
    effect.  StateError if BLIS was already initialised with another set.
    See mtl_blis_select_best_arch in mtl.h."""
    chosen = ctypes.c_char_p()
    call("mtl_blis_select_best_arch", ctypes.byref(chosen))
    return decode(chosen.value)


def delta_m(multi, single, higher_is_better=False):
    """Multi-task gain in percent: 100/T * sum_t s_t (single_t - multi_t) / single_t,
    s_t = +1 when lower is better, -1 when higher is better (a bool for
    all tasks or one per task)."""
    multi = np.ascontiguousarray(multi, dtype=np.float64).reshape(-1)
    single = np.ascontiguousarray(single, dtype=np.float64).reshape(-1)
    if multi.shape != single.shape:
        raise ShapeError(f"multi has {multi.shape[0]} values, single {single.shape[0]}")
    hib = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), multi.shape)
    hib = np.ascontiguousarray(hib, dtype=np.intc)
    out = ctypes.c_double()
    pd = ctypes.POINTER(ctypes.c_double)
    call("mtl_delta_m", multi.shape[0], multi.ctypes.data_as(pd), single.ctypes.data_as(pd),
         hib.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), ctypes.byref(out))
    return out.value
