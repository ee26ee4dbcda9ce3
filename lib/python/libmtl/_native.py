"""Ownership of C handles: when may mtl_*_destroy run?

Every wrapper object (Model, Trainer, ...) owns one :class:`Native`.  A
native handle is destroyed when it has been closed *and* nothing uses it
any more:

* a call in progress uses it (``with native as ptr:``), so closing a model
  from another thread while it predicts, or closing a data set from inside
  a fit callback, only marks it closed; the last user destroys it;
* a dependent handle uses it for its whole life (a trainer or workspace
  uses its model), so Python's garbage-collection order can never destroy
  a model before its trainer: the C rule "destroy the trainer before the
  model" holds whatever order __del__ runs in.

After close() the wrapper refuses new calls (StateError) even if the C
object still lives on for its dependents.
"""

import threading

from .errors import StateError


class Native:
    __slots__ = ("ptr", "kind", "_destroy", "_lock", "_users", "_closed", "_deps")

    def __init__(self, ptr, destroy, kind, deps=()):
        """Own ``ptr`` (an int address); ``destroy`` is the C destroy function;
        ``deps`` are Native handles this one needs alive until it is freed."""
        self.ptr = ptr
        self.kind = kind
        self._destroy = destroy
        self._lock = threading.Lock()
        self._users = 0
        self._closed = False
        self._deps = list(deps)
        for d in self._deps:
            d._add_user()  # callers hold `d` in use, so it is still alive

    @property
    def closed(self):
        return self._closed

    def acquire(self):
        """Start a use; returns the pointer.  StateError if closed."""
        with self._lock:
            if self._closed:
                raise StateError(f"this {self.kind} is closed")
            self._users += 1
            return self.ptr

    def _add_user(self):
        with self._lock:
            self._users += 1

    def release(self):
        with self._lock:
            self._users -= 1
            ptr, deps = self._take_if_unused()
        self._free(ptr, deps)

    def close(self):
        """Mark closed; destroy now if unused, else when the last user ends.
        Idempotent, and safe from __del__ (touches only this object)."""
        with self._lock:
            self._closed = True
            ptr, deps = self._take_if_unused()
        self._free(ptr, deps)

    def _take_if_unused(self):
        # Under the lock: exactly one caller gets the pointer to destroy.
        if not self._closed or self._users or self.ptr is None:
            return None, ()
        ptr, self.ptr = self.ptr, None
        deps, self._deps = self._deps, []
        return ptr, deps

    def _free(self, ptr, deps):
        if ptr is not None:
            self._destroy(ptr)
        for d in deps:
            d.release()

    # `with native as ptr:` brackets one C call.
    def __enter__(self):
        return self.acquire()

    def __exit__(self, *_exc):
        self.release()
        return False


class Owner:
    """Base of the wrapper classes: close(), context manager, __del__."""

    _native = None  # set by subclasses; class default keeps __del__ safe

    def close(self):
        """Release the C object.  Idempotent.  Objects that depend on this
        one (a trainer on its model) keep the C object alive until they are
        closed too; this Python object is unusable from now on."""
        native = self._native
        if native is not None:
            native.close()

    @property
    def closed(self):
        return self._native is None or self._native.closed

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: never raise from __del__
            pass


class _NoHandle:
    """`with using(None) as ptr:` gives NULL (optional handles: contexts)."""

    def __enter__(self):
        return None

    def __exit__(self, *_exc):
        return False


_NO_HANDLE = _NoHandle()


def using(native):
    """`with using(native_or_None) as ptr:` -- like `with native as ptr:`,
    but None gives a NULL pointer."""
    return _NO_HANDLE if native is None else native
