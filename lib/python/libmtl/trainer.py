"""Trainer: optimiser steps, fit with a progress callback, diagnostics,
checkpoints."""

from ctypes import byref, c_double, c_int64, c_void_p

import numpy as np

from . import enums
from ._arrays import float_matrix, float_vector, mask_matrix
from ._capi import PROGRESS_FN, C, call, check, encode_path, p_double, p_float
from ._native import Native, Owner, using
from .context import context_pointer, option_c_value, option_member, option_python_value
from .dataset import Dataset
from .enums import Diagnostic, Metric, Option, Scope, Split, TaskOption, to_enum
from .errors import InvalidArgumentError, NotFoundError
from .model import Model, save_to_bytes

__all__ = ["Trainer"]


class Trainer(Owner):
    """Trains a finalized model in place.

        tr = libmtl.Trainer(model, max_batch=128, optimizer="adamw",
                            learning_rate=1e-3, epochs=200, early_stop_patience=25)
        tr.fit(train, val, callback=lambda tr, epoch, step: print(epoch, tr.epoch_losses()))

    Options are the lower-case names of :class:`Option` (``tr.set(...)``,
    ``tr.get(...)``); enum-valued ones accept names ("adamw", "cosine",
    "pcgrad").  The trainer keeps its model alive: closing the model first
    is safe (the C model is freed when the trainer is closed).
    """

    def __init__(self, model, max_batch=128, **options):
        if not isinstance(model, Model):
            raise InvalidArgumentError(f"model must be a libmtl.Model, not {type(model).__name__}")
        out = c_void_p()
        with model._native as mp:
            call("mtl_trainer_create", byref(out), mp, int(max_batch))
            self._adopt(out.value, model)
        self.max_batch = int(max_batch)
        self.set(**options)

    def _adopt(self, ptr, model):
        self._native = Native(ptr, C.mtl_trainer_destroy, "trainer", deps=[model._native])
        self.model = model
        self._progress = None
        # Fixed once finalized; cached so the trainer works after model.close().
        self._n_tasks = model.n_tasks
        self._task_names = model.tasks
        self._n_inputs = model.n_inputs
        self._target_width = model.target_width
        self._param_count = model.param_count

    @classmethod
    def _from_pointers(cls, trainer_ptr, model_ptr, keep):
        model = Model._from_pointer(model_ptr, keep)
        self = cls.__new__(cls)
        with model._native:
            self._adopt(trainer_ptr, model)
        self.max_batch = None
        return self

    # ---- checkpoints --------------------------------------------------------
    @classmethod
    def load_checkpoint(cls, path, context=None):
        """Recreate a trainer and its model (``trainer.model``) from a
        checkpoint; training then resumes bitwise identically."""
        ctx, keep = context_pointer(context)
        t, m = c_void_p(), c_void_p()
        with using(ctx) as cp:
            call("mtl_trainer_load_checkpoint", byref(t), byref(m), cp, encode_path(path))
        return cls._from_pointers(t.value, m.value, keep)

    @classmethod
    def from_checkpoint_bytes(cls, data, context=None):
        data = data if isinstance(data, bytes) else bytes(memoryview(data))
        ctx, keep = context_pointer(context)
        t, m = c_void_p(), c_void_p()
        with using(ctx) as cp:
            call("mtl_trainer_load_checkpoint_buffer", byref(t), byref(m), cp, data, len(data))
        return cls._from_pointers(t.value, m.value, keep)

    def save_checkpoint(self, path):
        with self._native as p:
            call("mtl_trainer_save_checkpoint", p, encode_path(path))

    def checkpoint_bytes(self):
        return save_to_bytes("mtl_trainer_save_checkpoint_buffer", self._native)

    # ---- options ------------------------------------------------------------
    def set(self, **options):
        """Set options by name: ``tr.set(learning_rate=3e-4, weighting="dwa")``."""
        for name, value in options.items():
            opt = option_member(Option, name)
            is_float, v = option_c_value(opt, value)
            with self._native as p:
                call("mtl_trainer_set_f64" if is_float else "mtl_trainer_set_i64", p, int(opt), v)
        return self

    def get(self, name):
        opt = option_member(Option, name)
        if opt & enums.OPTTYPE_F64:
            v = c_double()
            with self._native as p:
                call("mtl_trainer_get_f64", p, int(opt), byref(v))
            return v.value
        v = c_int64()
        with self._native as p:
            call("mtl_trainer_get_i64", p, int(opt), byref(v))
        return option_python_value(opt, v.value)

    def _task(self, task):
        if isinstance(task, str):
            try:
                return self._task_names.index(task)
            except ValueError:
                raise NotFoundError(f"no task named '{task}'") from None
        return int(task)

    def set_task_option(self, task, **options):
        """Per-task trainer options: ``lr_multiplier`` (head learning rate)."""
        t = self._task(task)
        for name, value in options.items():
            opt = option_member(TaskOption, name)
            _, v = option_c_value(opt, value)
            with self._native as p:
                call("mtl_trainer_set_task_f64", p, t, int(opt), float(v))
        return self

    def get_task_option(self, task, name):
        opt = option_member(TaskOption, name)
        v = c_double()
        with self._native as p:
            call("mtl_trainer_get_task_f64", p, self._task(task), int(opt), byref(v))
        return v.value

    # ---- steps on host batches ----------------------------------------------
    def _batch_call(self, fname, x, y, mask, sample_weight):
        xa, xp, n, ldx = float_matrix(x, "x", cols=self._n_inputs)
        ya, yp, _, ldy = float_matrix(y, "y", rows=n, cols=self._target_width, one_d="column")
        ma = mp = wa = wp = None
        ldmask = 0
        if mask is not None:
            ma, mp, ldmask = mask_matrix(mask, "mask", ya.shape)
        if sample_weight is not None:
            wa, wp = float_vector(sample_weight, "sample_weight", n)
        losses = np.zeros(self._n_tasks)
        with self._native as p:
            call(fname, p, n, xp, ldx, yp, ldy, mp, ldmask, wp, losses.ctypes.data_as(p_double))
        return losses

    def step(self, x, y, mask=None, sample_weight=None):
        """One optimiser step on a batch (targets in original units, NaN or
        mask == 0 = no label).  Returns the per-task losses."""
        return self._batch_call("mtl_trainer_step", x, y, mask, sample_weight)

    def compute_gradients(self, x, y, mask=None, sample_weight=None):
        """The weighted loss's gradient on a batch, without an update (read
        it with :meth:`gradients`).  Returns the per-task losses."""
        return self._batch_call("mtl_trainer_compute_gradients", x, y, mask, sample_weight)

    def gradients(self):
        """The last computed flat gradient (same layout as Model.get_params)."""
        out = np.empty(self._param_count, dtype=np.float32)
        with self._native as p:
            call("mtl_trainer_get_gradients", p, out.ctypes.data_as(p_float), out.shape[0])
        return out

    # ---- fit ----------------------------------------------------------------
    def fit(self, train, val=None, callback=None):
        """Train for the ``epochs`` option over a Dataset, with validation
        (and early stopping, if enabled) on ``val``.

        ``callback(trainer, epoch, step)`` runs after every epoch
        (step == -1) and, with ``callback_every_steps``, every that many
        steps; a true return value stops training cleanly.  If the callback
        raises (KeyboardInterrupt included), training stops and the
        exception is re-raised here once fit has returned; the model keeps
        the weights of the last completed step."""
        for name, d in (("train", train), ("val", val)):
            if d is not None and not isinstance(d, Dataset):
                raise InvalidArgumentError(f"{name} must be a libmtl.Dataset")
        raised = []
        if callback is None:
            progress = PROGRESS_FN()  # NULL
        else:
            def trampoline(_user, _trainer, epoch, step):
                try:
                    return 1 if callback(self, epoch, step) else 0
                except BaseException as e:  # stop, re-raise after fit
                    raised.append(e)
                    return 1
            progress = PROGRESS_FN(trampoline)
        self._progress = progress  # libmtl calls it until fit returns
        try:
            with self._native as tp, train._native as dp, \
                    using(val._native if val is not None else None) as vp:
                status = C.mtl_trainer_fit(tp, dp, vp, progress, None)
                if not raised:
                    check(status, "mtl_trainer_fit")
        finally:
            self._progress = None
        if raised:
            raise raised[0]
        return self

    # ---- progress queries ---------------------------------------------------
    def _value(self, fname):
        with self._native as p:
            return getattr(C, fname)(p)

    epoch = property(lambda self: self._value("mtl_trainer_epoch"),
                     doc="Epochs completed.")
    step_count = property(lambda self: self._value("mtl_trainer_step_count"),
                          doc="Optimiser steps taken.")
    learning_rate = property(lambda self: self._value("mtl_trainer_learning_rate"),
                             doc="Current base learning rate.")
    elapsed_seconds = property(lambda self: self._value("mtl_trainer_elapsed_seconds"),
                               doc="Wall time spent in fit.")

    def epoch_losses(self, split=Split.TRAIN):
        """Last epoch's per-task mean losses on 'train' or 'validation'."""
        out = np.full(self._n_tasks, np.nan)
        with self._native as p:
            call("mtl_trainer_epoch_losses", p, int(to_enum(Split, split, what="split")),
                 out.ctypes.data_as(p_double))
        return out

    def epoch_metric(self, metric, split=Split.VALIDATION):
        """Last epoch's per-task metric on a split (as Model.evaluate)."""
        out = np.full(self._n_tasks, np.nan)
        with self._native as p:
            call("mtl_trainer_epoch_metric", p, int(to_enum(Split, split, what="split")),
                 int(to_enum(Metric, metric, what="metric")), out.ctypes.data_as(p_double))
        return out

    def best_epoch(self, task=None):
        """(best epoch, its validation loss): by the weighted total (the
        early-stopping criterion) or, given a task, by that task's loss."""
        t = -1 if task is None else self._task(task)
        epoch, loss = c_int64(), c_double()
        with self._native as p:
            call("mtl_trainer_best_epoch", p, t, byref(epoch), byref(loss))
        return epoch.value, loss.value

    # ---- diagnostics --------------------------------------------------------
    def diagnostic(self, kind, scope=Scope.EPOCH):
        """A task-conflict diagnostic of the last step or the mean over the
        last epoch (needs the ``diagnostics`` option, or ``affinity`` for
        AFFINITY): TASK_WEIGHTS and GRAD_NORMS are T-vectors, GRAD_COSINE
        and AFFINITY T x T matrices, CONFLICTS a number."""
        kind = to_enum(Diagnostic, kind, what="diagnostic")
        scope = to_enum(Scope, scope, what="scope")
        t = self._n_tasks
        square = kind in (Diagnostic.GRAD_COSINE, Diagnostic.AFFINITY)
        size = 1 if kind == Diagnostic.CONFLICTS else (t * t if square else t)
        out = np.full(max(size, t * t, 1), np.nan)
        with self._native as p:
            call("mtl_trainer_diagnostic", p, int(kind), int(scope),
                 out.ctypes.data_as(p_double), out.shape[0])
        if kind == Diagnostic.CONFLICTS:
            return float(out[0])
        return out[:t * t].reshape(t, t) if square else out[:t].copy()

    def __repr__(self):
        if self.closed:
            return "<libmtl.Trainer (closed)>"
        return f"<libmtl.Trainer epoch {self.epoch}, {self.step_count} steps>"

