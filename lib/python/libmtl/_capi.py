"""Loading libmtl.so and declaring every C function's signature.

Nothing here is public.  The rest of the package calls the C functions as
``C.mtl_model_predict(...)`` and turns statuses into exceptions with
:func:`check`.  tests/python/test_header.py parses include/mtl.h and checks
that PROTOTYPES declares every MTL_API function with matching types.
"""

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int,
                    c_int64, c_size_t, c_uint, c_uint8, c_void_p)

from . import enums, errors

# The library version this module was written for: a library with the same
# major and at least this minor is accepted.
WRITTEN_FOR = (enums.VERSION_MAJOR, enums.VERSION_MINOR)
SONAME = f"libmtl.so.{enums.VERSION_MAJOR}"

# ---- C types ---------------------------------------------------------------

status_t = c_int   # mtl_status and every other C enum: int-sized
handle_t = c_void_p  # mtl_context *, mtl_model *, ... (opaque)
handle_out_t = POINTER(c_void_p)  # mtl_model **out
p_float = POINTER(c_float)
p_double = POINTER(c_double)
p_int64 = POINTER(c_int64)
p_int = POINTER(c_int)
p_uint8 = POINTER(c_uint8)
p_str = POINTER(c_char_p)  # const char ** (out) and const char *const * (in)
p_size = POINTER(c_size_t)


class Allocator(Structure):
    """struct mtl_allocator (declared for completeness; Python passes NULL)."""
    _fields_ = [("struct_size", c_size_t),
                ("alloc", CFUNCTYPE(c_void_p, c_void_p, c_size_t, c_size_t)),
                ("free", CFUNCTYPE(None, c_void_p, c_void_p)),
                ("user", c_void_p)]


LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)            # mtl_log_fn
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int64, c_int64)  # mtl_progress_fn

# ---- every function of mtl.h, in header order: name -> (restype, argtypes) --

PROTOTYPES = {
    # versions, errors, options
    "mtl_version_number": (c_int, []),
    "mtl_version_string": (c_char_p, []),
    "mtl_status_string": (c_char_p, [status_t]),
    "mtl_last_error_message": (c_char_p, []),
    "mtl_option_bounds_i64": (status_t, [c_int, p_int64, p_int64]),
    "mtl_option_bounds_f64": (status_t, [c_int, p_double, p_double]),
    # context
    "mtl_context_create": (status_t, [handle_out_t, POINTER(Allocator)]),
    "mtl_context_destroy": (None, [handle_t]),
    "mtl_context_set_log": (status_t, [handle_t, LOG_FN, c_void_p, c_int]),
    "mtl_context_set_i64": (status_t, [handle_t, c_int, c_int64]),
    "mtl_context_get_i64": (status_t, [handle_t, c_int, p_int64]),
    # BLIS
    "mtl_blis_version": (c_char_p, []),
    "mtl_blis_arch": (c_char_p, []),
    "mtl_blis_is_fallback": (c_int, []),
    "mtl_blis_threading": (c_char_p, []),
    "mtl_blis_select_best_arch": (status_t, [p_str]),
    "mtl_small_kernels": (c_char_p, []),
    # model definition
    "mtl_model_create": (status_t, [handle_out_t, handle_t, c_int64]),
    "mtl_model_destroy": (None, [handle_t]),
    "mtl_model_add_trunk_layer": (status_t, [handle_t, c_int64, c_int, c_float, c_uint]),
    "mtl_model_add_task": (status_t, [handle_t, c_char_p, c_int, c_int64, p_int64]),
    "mtl_model_add_head_layer": (status_t, [handle_t, c_int64, c_int64, c_int, c_float, c_uint]),
    "mtl_model_set_task_f64": (status_t, [handle_t, c_int64, c_int, c_double]),
    "mtl_model_set_task_i64": (status_t, [handle_t, c_int64, c_int, c_int64]),
    "mtl_model_get_task_f64": (status_t, [handle_t, c_int64, c_int, p_double]),
    "mtl_model_get_task_i64": (status_t, [handle_t, c_int64, c_int, p_int64]),
    "mtl_model_set_init": (status_t, [handle_t, c_int]),
    "mtl_model_finalize": (status_t, [handle_t]),
    "mtl_model_input_count": (c_int64, [handle_t]),
    "mtl_model_task_count": (c_int64, [handle_t]),
    "mtl_model_layer_count": (c_int64, [handle_t]),
    "mtl_model_param_count": (c_int64, [handle_t]),
    "mtl_model_embedding_width": (c_int64, [handle_t]),
    "mtl_model_target_width": (c_int64, [handle_t]),
    "mtl_model_output_width": (c_int64, [handle_t]),
    "mtl_model_is_finalized": (c_int, [handle_t]),
    "mtl_model_task_name": (status_t, [handle_t, c_int64, p_str]),
    "mtl_model_task_type": (status_t, [handle_t, c_int64, p_int]),
    "mtl_model_task_outputs": (status_t, [handle_t, c_int64, p_int64]),
    "mtl_model_task_columns": (status_t, [handle_t, c_int64, p_int64, p_int64]),
    "mtl_model_find_task": (status_t, [handle_t, c_char_p, p_int64]),
    "mtl_model_get_params": (status_t, [handle_t, p_float, c_int64]),
    "mtl_model_set_params": (status_t, [handle_t, p_float, c_int64]),
    "mtl_model_param_block_count": (c_int64, [handle_t]),
    "mtl_model_param_block": (status_t, [handle_t, c_int64, p_str, p_int64, p_int64, p_int64,
                                         p_int64]),
    # data sets
    "mtl_dataset_create": (status_t, [handle_out_t, handle_t, c_int64, c_int64, c_int64, p_float,
                                      c_int64, p_float, c_int64, p_uint8, c_int64, p_float,
                                      c_uint]),
    "mtl_dataset_view": (status_t, [handle_out_t, handle_t, c_int64, p_int64]),
    "mtl_dataset_destroy": (None, [handle_t]),
    "mtl_dataset_row_count": (c_int64, [handle_t]),
    "mtl_dataset_input_count": (c_int64, [handle_t]),
    "mtl_dataset_target_count": (c_int64, [handle_t]),
    "mtl_dataset_get_inputs": (status_t, [handle_t, c_int64, c_int64, p_float, c_int64]),
    "mtl_dataset_get_targets": (status_t, [handle_t, c_int64, c_int64, p_float, c_int64]),
    "mtl_dataset_load_csv": (status_t, [handle_out_t, handle_t, c_char_p, p_str, c_int64, p_str,
                                        c_int64, c_uint]),
    "mtl_dataset_load_csv_buffer": (status_t, [handle_out_t, handle_t, c_void_p, c_size_t, p_str,
                                               c_int64, p_str, c_int64, c_uint]),
    # scalers and domain
    "mtl_model_fit_scalers": (status_t, [handle_t, handle_t]),
    "mtl_model_check_domain": (status_t, [handle_t, c_int64, p_float, c_int64, p_int64]),
    # inference
    "mtl_workspace_create": (status_t, [handle_out_t, handle_t, c_int64]),
    "mtl_workspace_destroy": (None, [handle_t]),
    "mtl_model_predict": (status_t, [handle_t, handle_t, c_int64, p_float, c_int64, p_float,
                                     c_int64]),
    "mtl_model_predict_labels": (status_t, [handle_t, handle_t, c_int64, p_float, c_int64,
                                            p_float, c_int64]),
    "mtl_model_embed": (status_t, [handle_t, handle_t, c_int64, p_float, c_int64, p_float,
                                   c_int64]),
    # metrics
    "mtl_model_evaluate": (status_t, [handle_t, handle_t, handle_t, c_int, p_double]),
    "mtl_delta_m": (status_t, [c_int64, p_double, p_double, p_int, p_double]),
    # training
    "mtl_trainer_create": (status_t, [handle_out_t, handle_t, c_int64]),
    "mtl_trainer_destroy": (None, [handle_t]),
    "mtl_trainer_set_i64": (status_t, [handle_t, c_int, c_int64]),
    "mtl_trainer_set_f64": (status_t, [handle_t, c_int, c_double]),
    "mtl_trainer_get_i64": (status_t, [handle_t, c_int, p_int64]),
    "mtl_trainer_get_f64": (status_t, [handle_t, c_int, p_double]),
    "mtl_trainer_set_task_f64": (status_t, [handle_t, c_int64, c_int, c_double]),
    "mtl_trainer_get_task_f64": (status_t, [handle_t, c_int64, c_int, p_double]),
    "mtl_trainer_compute_gradients": (status_t, [handle_t, c_int64, p_float, c_int64, p_float,
                                                 c_int64, p_uint8, c_int64, p_float, p_double]),
    "mtl_trainer_get_gradients": (status_t, [handle_t, p_float, c_int64]),
    "mtl_trainer_step": (status_t, [handle_t, c_int64, p_float, c_int64, p_float, c_int64,
                                    p_uint8, c_int64, p_float, p_double]),
    "mtl_trainer_fit": (status_t, [handle_t, handle_t, handle_t, PROGRESS_FN, c_void_p]),
    "mtl_trainer_epoch": (c_int64, [handle_t]),
    "mtl_trainer_step_count": (c_int64, [handle_t]),
    "mtl_trainer_learning_rate": (c_double, [handle_t]),
    "mtl_trainer_elapsed_seconds": (c_double, [handle_t]),
    "mtl_trainer_epoch_losses": (status_t, [handle_t, c_int, p_double]),
    "mtl_trainer_epoch_metric": (status_t, [handle_t, c_int, c_int, p_double]),
    "mtl_trainer_best_epoch": (status_t, [handle_t, c_int64, p_int64, p_double]),
    # diagnostics
    "mtl_trainer_diagnostic": (status_t, [handle_t, c_int, c_int, p_double, c_int64]),
    # files: metadata, models, checkpoints
    "mtl_model_set_metadata": (status_t, [handle_t, c_char_p, c_char_p]),
    "mtl_model_get_metadata": (status_t, [handle_t, c_char_p, p_str]),
    "mtl_model_metadata_count": (c_int64, [handle_t]),
    "mtl_model_metadata_at": (status_t, [handle_t, c_int64, p_str, p_str]),
    "mtl_model_set_task_text": (status_t, [handle_t, c_int64, c_char_p, c_char_p]),
    "mtl_model_get_task_text": (status_t, [handle_t, c_int64, p_str, p_str]),
    "mtl_model_set_feature_name": (status_t, [handle_t, c_int64, c_char_p]),
    "mtl_model_get_feature_name": (status_t, [handle_t, c_int64, p_str]),
    "mtl_model_save": (status_t, [handle_t, c_char_p]),
    "mtl_model_save_buffer": (status_t, [handle_t, c_void_p, c_size_t, p_size]),
    "mtl_model_load": (status_t, [handle_out_t, handle_t, c_char_p]),
    "mtl_model_load_buffer": (status_t, [handle_out_t, handle_t, c_void_p, c_size_t]),
    "mtl_trainer_save_checkpoint": (status_t, [handle_t, c_char_p]),
    "mtl_trainer_save_checkpoint_buffer": (status_t, [handle_t, c_void_p, c_size_t, p_size]),
    "mtl_trainer_load_checkpoint": (status_t, [handle_out_t, handle_out_t, handle_t, c_char_p]),
    "mtl_trainer_load_checkpoint_buffer": (status_t, [handle_out_t, handle_out_t, handle_t,
                                                      c_void_p, c_size_t]),
}


# ---- finding and loading the library ---------------------------------------

def _candidates():
    """Where to look, in order: $MTL_LIBRARY (a path, e.g. the build tree's
    libmtl.so.0), the libdir recorded at install time, the dynamic linker's
    cache (ctypes.util.find_library), and finally the bare SONAME."""
    env = os.environ.get("MTL_LIBRARY")
    if env:
        yield env
        return  # an explicit choice: do not silently fall back to another copy
    try:
        from . import _install_paths  # written by meson at install time
        yield os.path.join(_install_paths.LIBDIR, SONAME)
    except ImportError:
        pass
    found = ctypes.util.find_library("mtl")
    if found:
        yield found
    yield SONAME


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError("libmtl: cannot load the C library (set MTL_LIBRARY to the path of "
                      f"{SONAME}); tried:\n  " + "\n  ".join(tried))


lib, library_path = _load()


def _check_version():
    f = lib.mtl_version_number
    f.restype, f.argtypes = c_int, []
    number = f()
    major, minor = number // 10000, number // 100 % 100
    if major != WRITTEN_FOR[0] or minor < WRITTEN_FOR[1]:
        raise ImportError(
            f"libmtl: {library_path} is version {major}.{minor}.{number % 100}; this Python "
            f"module needs {WRITTEN_FOR[0]}.x with x >= {WRITTEN_FOR[1]}")
    return number


library_version_number = _check_version()


class _Functions:
    """The declared C functions as attributes (C.mtl_model_create, ...).
    A function the loaded library lacks (a partial development build) is
    replaced by a stub raising UnsupportedError, and listed in ``missing``."""

    def __init__(self):
        self.missing = []
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                f = getattr(lib, name)
            except AttributeError:
                self.missing.append(name)
                f = self._stub(name)
            else:
                f.restype, f.argtypes = restype, argtypes
            setattr(self, name, f)

    @staticmethod
    def _stub(name):
        def missing(*_args):
            raise errors.UnsupportedError(f"the loaded libmtl ({library_path}) has no {name}",
                                          name)
        missing.__name__ = name
        return missing


C = _Functions()


def _status_text(status):
    return C.mtl_status_string(int(status)).decode("utf-8", "replace")


errors.status_text = _status_text


def last_error_message():
    return C.mtl_last_error_message().decode("utf-8", "replace")


def check(status, function):
    """Raise the exception for a non-zero status (read the thread-local
    message right away: it is valid only until this thread's next call)."""
    if status:
        raise errors.error_for_status(status, last_error_message(), function)


def call(name, *args):
    """C.<name>(*args), raising on a non-zero status."""
    status = getattr(C, name)(*args)
    if status:
        raise errors.error_for_status(status, last_error_message(), name)


def decode(raw):
    """A C string (bytes or None) as str."""
    return None if raw is None else raw.decode("utf-8", "replace")


def encode(text, what="string"):
    """A Python str as a NUL-terminated UTF-8 C string (None stays NULL)."""
    if text is None:
        return None
    if isinstance(text, bytes):
        raw = text
    elif isinstance(text, str):
        raw = text.encode("utf-8")
    else:
        raise errors.InvalidArgumentError(f"{what} must be a str, not {type(text).__name__}")
    if b"\0" in raw:
        raise errors.InvalidArgumentError(f"{what} contains a NUL character: {text!r}")
    return raw


def encode_path(path):
    """A path (str, bytes or os.PathLike) as bytes in the file-system encoding."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise errors.InvalidArgumentError(f"path contains a NUL character: {path!r}")
    return raw


def string_array(names, what):
    """A Python sequence of names as (const char *const *, count)."""
    if names is None:
        return None, 0
    if isinstance(names, (str, bytes)):
        raise errors.InvalidArgumentError(f"{what} must be a sequence of names, not one string")
    raw = [encode(n, what) for n in names]
    return (c_char_p * len(raw))(*raw) if raw else None, len(raw)
