"""Context (threads, seed, log) and the option plumbing shared with Trainer."""

import ctypes
import logging
import numbers

from . import enums
from ._capi import C, LOG_FN, call, decode
from ._native import Native, Owner
from .enums import LogLevel, Option, to_enum
from .errors import InvalidArgumentError

__all__ = ["Context", "option_bounds"]


# ---- options ----------------------------------------------------------------

def option_member(cls, name):
    """An Option/TaskOption from a member, an int or a name such as
    'learning_rate'."""
    return to_enum(cls, name, what="option")


def option_c_value(opt, value):
    """(is_float, C value) for `value` given to option `opt`: floats for
    F64 options; for I64 options ints, bools, and enum names for the
    enum-valued ones (optimizer='adamw', loss='huber')."""
    if opt & enums.OPTTYPE_F64:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidArgumentError(f"option {_name(opt)} takes a number, not {value!r}")
        return True, float(value)
    kind = enums.OPTION_ENUMS.get(opt)
    if kind is not None and not isinstance(value, numbers.Integral):
        return False, int(to_enum(kind, value, what=_name(opt)))
    if isinstance(value, numbers.Integral):
        return False, int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return False, int(value)
    raise InvalidArgumentError(f"option {_name(opt)} takes an integer, not {value!r}")


def option_python_value(opt, value):
    """The C value of an I64 option as Python sees it (an enum member for
    enum-valued options)."""
    kind = enums.OPTION_ENUMS.get(opt)
    if kind is not None:
        return to_enum(kind, value)
    return value


def _name(opt):
    return opt.name.lower() if isinstance(opt, enums.enum.IntEnum) else str(opt)


def option_bounds(option):
    """Valid (min, max) of an option (ints for integer options, floats for
    floating-point ones).  ``option`` is an Option/TaskOption, an int or a
    name ('learning_rate'); names are looked up in Option, then TaskOption."""
    try:
        opt = option_member(Option, option)
    except InvalidArgumentError:
        opt = option_member(enums.TaskOption, option)
    if opt & enums.OPTTYPE_F64:
        lo, hi = ctypes.c_double(), ctypes.c_double()
        call("mtl_option_bounds_f64", int(opt), ctypes.byref(lo), ctypes.byref(hi))
    else:
        lo, hi = ctypes.c_int64(), ctypes.c_int64()
        call("mtl_option_bounds_i64", int(opt), ctypes.byref(lo), ctypes.byref(hi))
    return lo.value, hi.value


# ---- context ----------------------------------------------------------------

_LOGGING_LEVELS = {LogLevel.DEBUG: logging.DEBUG, LogLevel.INFO: logging.INFO,
                   LogLevel.WARN: logging.WARNING, LogLevel.ERROR: logging.ERROR}


class Context(Owner):
    """Settings that handles copy when they are created: BLIS threads per
    call, the seed, the log callback.

        ctx = libmtl.Context(num_threads=4, seed=7, log=logging.getLogger("mtl"))
        model = libmtl.Model(n_inputs, context=ctx)

    Passing no context anywhere means the defaults (1 thread, seed 42, no
    log).  A custom allocator is not available from Python (it would route
    every allocation through the interpreter); use the C API for that.
    """

    def __init__(self, log=None, log_level=LogLevel.WARN, **options):
        out = ctypes.c_void_p()
        call("mtl_context_create", ctypes.byref(out), None)
        self._native = Native(out.value, C.mtl_context_destroy, "context")
        self._log_fn = None  # the CFUNCTYPE object libmtl holds a pointer to
        if log is not None:
            self.set_log(log, log_level)
        self.set(**options)

    def set(self, **options):
        """Set options by name: ``ctx.set(num_threads=2, seed=1)``."""
        for name, value in options.items():
            opt = option_member(Option, name)
            _, v = option_c_value(opt, value)
            with self._native as p:
                call("mtl_context_set_i64", p, int(opt), v)
        return self

    def get(self, name):
        """Current value of a context option ('num_threads', 'seed', ...)."""
        opt = option_member(Option, name)
        v = ctypes.c_int64()
        with self._native as p:
            call("mtl_context_get_i64", p, int(opt), ctypes.byref(v))
        return v.value

    def set_log(self, log, level=LogLevel.WARN):
        """Send libmtl's log messages at `level` or above to ``log``: a
        callable ``log(level: LogLevel, message: str)`` or a
        ``logging.Logger``; None turns logging off.

        Handles created from this context afterwards keep calling this
        function (they copied it), so they keep it alive too."""
        level = to_enum(LogLevel, level, what="log level")
        if log is None:
            fn = None
            c_fn = LOG_FN()  # NULL
        else:
            target = log
            if isinstance(log, logging.Logger):
                def target(lvl, msg, _logger=log):
                    _logger.log(_LOGGING_LEVELS.get(lvl, logging.ERROR), "%s", msg)

            def trampoline(_user, lvl, message):
                try:
                    lvl = LogLevel(lvl)
                except ValueError:
                    pass
                target(lvl, decode(message))

            fn = c_fn = LOG_FN(trampoline)
        with self._native as p:
            call("mtl_context_set_log", p, c_fn, None, int(level))
        self._log_fn = fn
        return self

    def _keepalive(self):
        """What a handle created from this context must keep referenced."""
        return self._log_fn


def context_pointer(context):
    """(ctx Native or None, keepalive) for a create call; NULL = defaults."""
    if context is None:
        return None, None
    if not isinstance(context, Context):
        raise InvalidArgumentError(
            f"context must be a libmtl.Context, not {type(context).__name__}")
    return context._native, context._keepalive()
