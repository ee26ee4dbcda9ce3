"""Model (definition, inference, parameters, metadata, files) and Workspace."""

import collections.abc
import ctypes
import threading
from ctypes import byref, c_char_p, c_double, c_int, c_int64, c_size_t, c_void_p

import numpy as np

from . import enums
from ._arrays import OutMatrix, float_matrix
from ._capi import C, call, decode, encode, encode_path
from ._native import Native, Owner, using
from .context import context_pointer, option_c_value, option_member, option_python_value
from .dataset import Dataset
from .enums import Activation, Init, Metric, TaskOption, TaskType, to_enum
from .errors import InvalidArgumentError, NotFoundError, ShapeError

__all__ = ["Model", "Workspace", "ParamBlock"]

DEFAULT_WORKSPACE_BATCH = 256


class ParamBlock(collections.namedtuple("ParamBlock", "name offset rows cols ld")):
    """One matrix in the model's flat parameter buffer (mtl_model_param_block)."""

    __slots__ = ()

    def view(self, flat):
        """This block as a rows x cols view into a flat parameter array (as
        returned by Model.get_params or Trainer.gradients): no copy."""
        flat = np.asarray(flat)
        if self.rows == 0 or self.cols == 0:
            return flat[:0].reshape(self.rows, self.cols)
        need = self.offset + (self.rows - 1) * self.ld + self.cols
        if flat.ndim != 1 or flat.shape[0] < need:
            raise ShapeError(f"block {self.name} needs a flat array of at least {need} values")
        return np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=(self.rows, self.cols),
            strides=(self.ld * flat.strides[0], flat.strides[0]))


def _buffer_bytes(data, what):
    if isinstance(data, str):
        raise InvalidArgumentError(f"{what} must be bytes-like, not str")
    return data if isinstance(data, bytes) else bytes(memoryview(data))


def _require_dataset(data, what):
    if not isinstance(data, Dataset):
        raise InvalidArgumentError(f"{what} must be a libmtl.Dataset, not {type(data).__name__}")


def _activation(act):
    return int(to_enum(Activation, act, what="activation"))


def _flags(layer_norm, flags):
    return (enums.LAYER_NORM if layer_norm else 0) | int(flags)


def save_to_bytes(fname, native):
    """Run a *_save_buffer function twice: size query, then the bytes."""
    size = c_size_t()
    with native as p:
        status = getattr(C, fname)(p, None, 0, byref(size))
        if status not in (enums.Status.OK, enums.Status.SHAPE):
            call(fname, p, None, 0, byref(size))  # raises with the message
        buf = ctypes.create_string_buffer(max(size.value, 1))
        call(fname, p, buf, size.value, byref(size))
    return buf.raw[:size.value]


class Model(Owner):
    """A multi-task network: a shared trunk of dense layers and one head per
    task.  Define it, finalize it, train it with a :class:`Trainer`, then
    predict, evaluate, save.

        m = libmtl.Model(n_features)
        m.add_trunk_layer(256, "relu", dropout=0.1)
        g_act = m.add_task("G_act")                  # regression, 1 output
        m.add_head_layer(g_act, 64, "relu")
        m.finalize()

    Tasks are named by index or by name wherever a ``task`` is taken.
    Inference methods take float32 rows (other layouts are converted once,
    see docs/python.md) and use an internal workspace unless one is given;
    for predicting from several threads at once, give each thread its own
    :class:`Workspace`.
    """

    def __init__(self, n_inputs, context=None, init=None):
        """``init``: how :meth:`finalize` draws the parameters, as in
        :meth:`set_init` (None: the library's default, 'he_glorot')."""
        ctx, keep = context_pointer(context)
        out = c_void_p()
        with using(ctx) as cp:
            call("mtl_model_create", byref(out), cp, int(n_inputs))
        self._adopt(out.value, keep)
        if init is not None:
            self.set_init(init)

    def _adopt(self, ptr, keep):
        self._native = Native(ptr, C.mtl_model_destroy, "model")
        self._keep = keep  # the context's log callback, if any
        self._ws = None
        self._ws_lock = threading.Lock()

    @classmethod
    def _from_pointer(cls, ptr, keep):
        self = cls.__new__(cls)
        self._adopt(ptr, keep)
        return self

    def close(self):
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        super().close()

    # ---- loading ------------------------------------------------------------
    @classmethod
    def load(cls, path, context=None):
        """Load a model saved with :meth:`save` (or mtl_model_save)."""
        ctx, keep = context_pointer(context)
        out = c_void_p()
        with using(ctx) as cp:
            call("mtl_model_load", byref(out), cp, encode_path(path))
        return cls._from_pointer(out.value, keep)

    @classmethod
    def from_bytes(cls, data, context=None):
        """Load a model from the bytes :meth:`to_bytes` returned."""
        data = _buffer_bytes(data, "data")
        ctx, keep = context_pointer(context)
        out = c_void_p()
        with using(ctx) as cp:
            call("mtl_model_load_buffer", byref(out), cp, data, len(data))
        return cls._from_pointer(out.value, keep)

    def save(self, path):
        """Save atomically (a crash leaves any old file whole)."""
        with self._native as p:
            call("mtl_model_save", p, encode_path(path))

    def to_bytes(self):
        """The model file's bytes (mtl_model_save_buffer)."""
        return save_to_bytes("mtl_model_save_buffer", self._native)

    def __reduce__(self):  # pickle / copy.deepcopy through the file format
        return (Model.from_bytes, (self.to_bytes(),))

    # ---- definition ---------------------------------------------------------
    def add_trunk_layer(self, units, activation="relu", dropout=0.0, layer_norm=False, flags=0):
        """Append a dense layer to the shared trunk."""
        with self._native as p:
            call("mtl_model_add_trunk_layer", p, int(units), _activation(activation),
                 float(dropout), _flags(layer_norm, flags))
        return self

    def add_task(self, name, type=TaskType.REGRESSION, outputs=1):
        """Add a task; returns its index.  ``type``: 'regression', 'binary'
        or 'multiclass' (then ``outputs`` is the number of classes)."""
        idx = c_int64(-1)
        task_type = int(to_enum(TaskType, type, what="task type"))
        with self._native as p:
            call("mtl_model_add_task", p, encode(name, "task name"), task_type, int(outputs),
                 byref(idx))
        return idx.value

    def add_head_layer(self, task, units, activation="relu", dropout=0.0, layer_norm=False,
                       flags=0):
        """Append a hidden dense layer to a task's head."""
        t = self.task_index(task)
        with self._native as p:
            call("mtl_model_add_head_layer", p, t, int(units), _activation(activation),
                 float(dropout), _flags(layer_norm, flags))
        return self

    def set_task_option(self, task, **options):
        """Per-task options by name: loss_weight, huber_delta, loss ('mse',
        'mae', 'huber', ...), standardize, log_target."""
        t = self.task_index(task)
        for name, value in options.items():
            opt = option_member(TaskOption, name)
            is_float, v = option_c_value(opt, value)
            with self._native as p:
                call("mtl_model_set_task_f64" if is_float else "mtl_model_set_task_i64",
                     p, t, int(opt), v)
        return self

    def get_task_option(self, task, name):
        t = self.task_index(task)
        opt = option_member(TaskOption, name)
        if opt & enums.OPTTYPE_F64:
            v = c_double()
            with self._native as p:
                call("mtl_model_get_task_f64", p, t, int(opt), byref(v))
            return v.value
        v = c_int64()
        with self._native as p:
            call("mtl_model_get_task_i64", p, t, int(opt), byref(v))
        return option_python_value(opt, v.value)

    def set_init(self, init):
        """How :meth:`finalize` initialises the parameters (before finalize
        only): 'he_glorot' (the default: He normal for the ReLU family,
        Glorot uniform otherwise, biases 0) or 'uniform_fan_in' (weights
        and biases uniform in +-1/sqrt(fan_in), as PyTorch's nn.Linear).
        Reproducible by the context seed."""
        with self._native as p:
            call("mtl_model_set_init", p, int(to_enum(Init, init, what="init")))
        return self

    def finalize(self):
        """Check the definition, allocate and initialise the parameters."""
        with self._native as p:
            call("mtl_model_finalize", p)
        return self

    # ---- read-back ----------------------------------------------------------
    def _count(self, fname):
        with self._native as p:
            return getattr(C, fname)(p)

    n_inputs = property(lambda self: self._count("mtl_model_input_count"))
    n_tasks = property(lambda self: self._count("mtl_model_task_count"))
    layer_count = property(lambda self: self._count("mtl_model_layer_count"))
    param_count = property(lambda self: self._count("mtl_model_param_count"))
    embedding_width = property(lambda self: self._count("mtl_model_embedding_width"))
    target_width = property(lambda self: self._count("mtl_model_target_width"))
    output_width = property(lambda self: self._count("mtl_model_output_width"))
    is_finalized = property(lambda self: bool(self._count("mtl_model_is_finalized")))

    def task_index(self, task):
        """Index of a task given by index or name (NotFoundError if absent)."""
        if isinstance(task, str):
            return self.find_task(task)
        if isinstance(task, bool) or not isinstance(task, (int, np.integer)):
            raise InvalidArgumentError(f"task must be an index or a name, not {task!r}")
        return int(task)

    def find_task(self, name):
        idx = c_int64()
        with self._native as p:
            call("mtl_model_find_task", p, encode(name, "task name"), byref(idx))
        return idx.value

    def task_name(self, task):
        s = c_char_p()
        with self._native as p:
            call("mtl_model_task_name", p, self.task_index(task), byref(s))
            return decode(s.value)

    def task_type(self, task):
        v = c_int()
        with self._native as p:
            call("mtl_model_task_type", p, self.task_index(task), byref(v))
        return to_enum(TaskType, v.value)

    def task_outputs(self, task):
        v = c_int64()
        with self._native as p:
            call("mtl_model_task_outputs", p, self.task_index(task), byref(v))
        return v.value

    def task_columns(self, task):
        """(first target column, first output column) of a task."""
        tc, oc = c_int64(), c_int64()
        with self._native as p:
            call("mtl_model_task_columns", p, self.task_index(task), byref(tc), byref(oc))
        return tc.value, oc.value

    @property
    def tasks(self):
        """Task names, in index order."""
        return [self.task_name(t) for t in range(self.n_tasks)]

    def __repr__(self):
        if self.closed:
            return "<libmtl.Model (closed)>"
        state = f"{self.param_count} parameters" if self.is_finalized else "not finalized"
        return (f"<libmtl.Model {self.n_inputs} inputs, tasks {self.tasks}, "
                f"{self.layer_count} layers, {state}>")

    # ---- parameters ---------------------------------------------------------
    def get_params(self):
        """A copy of all parameters as one flat float32 array."""
        n = self.param_count
        out = np.empty(n, dtype=np.float32)
        with self._native as p:
            call("mtl_model_get_params", p, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n)
        return out

    def set_params(self, params):
        """Replace all parameters (a flat array of param_count values)."""
        n = self.param_count
        arr = np.ascontiguousarray(params, dtype=np.float32)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ShapeError(f"params must be a flat array of {n} values, not shape {arr.shape}")
        with self._native as p:
            call("mtl_model_set_params", p, arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n)

    def param_blocks(self):
        """The matrices in the flat parameter buffer, as ParamBlock tuples."""
        blocks = []
        with self._native as p:
            for i in range(C.mtl_model_param_block_count(p)):
                name = c_char_p()
                off, rows, cols, ld = c_int64(), c_int64(), c_int64(), c_int64()
                call("mtl_model_param_block", p, i, byref(name), byref(off), byref(rows),
                     byref(cols), byref(ld))
                blocks.append(ParamBlock(decode(name.value), off.value, rows.value, cols.value,
                                         ld.value))
        return blocks

    # ---- scalers and domain -------------------------------------------------
    def fit_scalers(self, train):
        """Fit input/target standardisation and the input domain on a Dataset."""
        _require_dataset(train, "train")
        with self._native as p, train._native as d:
            call("mtl_model_fit_scalers", p, d)
        return self

    def check_domain(self, x):
        """Per row, how many features lie outside the training-data range."""
        arr, xp, n, ldx = float_matrix(x, "x", cols=self.n_inputs)
        out = np.zeros(n, dtype=np.int64)
        with self._native as p:
            call("mtl_model_check_domain", p, n, xp, ldx,
                 out.ctypes.data_as(ctypes.POINTER(c_int64)))
        return out

    # ---- inference ----------------------------------------------------------
    def _workspace_for(self, workspace):
        if workspace is None:
            return None
        if not isinstance(workspace, Workspace) or workspace.model is not self:
            raise InvalidArgumentError("workspace must be a Workspace created for this model")
        return workspace

    def _infer(self, fname, x, out, workspace, width):
        workspace = self._workspace_for(workspace)
        arr, xp, n, ldx = float_matrix(x, "x", cols=self.n_inputs)
        om = OutMatrix(out, n, width)
        if workspace is not None:
            with self._native as p, workspace._native as w:
                call(fname, p, w, n, xp, ldx, om.ptr, om.ld)
        else:
            with self._ws_lock:
                ws = self._default_workspace()
                with self._native as p, ws._native as w:
                    call(fname, p, w, n, xp, ldx, om.ptr, om.ld)
        result = om.finish()
        if out is None and np.ndim(x) == 1:
            return result[0]  # one row in, one row out
        return result

    def _default_workspace(self):
        if self._ws is None:
            self._ws = Workspace(self, DEFAULT_WORKSPACE_BATCH)
        return self._ws

    def predict(self, x, out=None, workspace=None):
        """Predictions (rows x output_width): regression values in target
        units, binary probabilities, multiclass class probabilities.

        ``x`` is rows x n_inputs (a 1-D array is one row, and gives a 1-D
        result).  ``out``, if given, receives the result and is returned."""
        return self._infer("mtl_model_predict", x, out, workspace, self.output_width)

    def predict_labels(self, x, out=None, workspace=None):
        """Predictions in the target layout (rows x target_width): regression
        values, binary 0/1, multiclass class index."""
        return self._infer("mtl_model_predict_labels", x, out, workspace, self.target_width)

    def embed(self, x, out=None, workspace=None):
        """The shared trunk's output (rows x embedding_width)."""
        return self._infer("mtl_model_embed", x, out, workspace, self.embedding_width)

    def evaluate(self, data, metric=Metric.MAE, workspace=None):
        """A metric per task on a Dataset (NaN where it does not apply)."""
        _require_dataset(data, "data")
        workspace = self._workspace_for(workspace)
        m = int(to_enum(Metric, metric, what="metric"))
        out = np.full(self.n_tasks, np.nan)
        dp = out.ctypes.data_as(ctypes.POINTER(c_double))
        if workspace is not None:
            with self._native as p, workspace._native as w, data._native as d:
                call("mtl_model_evaluate", p, w, d, m, dp)
        else:
            with self._ws_lock:
                ws = self._default_workspace()
                with self._native as p, ws._native as w, data._native as d:
                    call("mtl_model_evaluate", p, w, d, m, dp)
        return out

    # ---- metadata and texts -------------------------------------------------
    @property
    def metadata(self):
        """The model's key/value metadata as a dict-like view (saved with
        the model): ``m.metadata["units"] = "kcal/mol"``."""
        return Metadata(self)

    def set_metadata(self, key, value):
        """Set (or replace) a key; value None removes the key."""
        with self._native as p:
            call("mtl_model_set_metadata", p, encode(key, "key"), encode(value, "value"))

    def get_metadata(self, key):
        """The value of `key` (NotFoundError, a LookupError, if absent)."""
        v = c_char_p()
        with self._native as p:
            call("mtl_model_get_metadata", p, encode(key, "key"), byref(v))
            return decode(v.value)

    def set_task_text(self, task, unit=None, description=None):
        """A task's unit and description; None clears one."""
        with self._native as p:
            call("mtl_model_set_task_text", p, self.task_index(task), encode(unit, "unit"),
                 encode(description, "description"))

    def get_task_text(self, task):
        """(unit, description) of a task."""
        u, d = c_char_p(), c_char_p()
        with self._native as p:
            call("mtl_model_get_task_text", p, self.task_index(task), byref(u), byref(d))
            return decode(u.value), decode(d.value)

    def set_feature_name(self, feature, name):
        with self._native as p:
            call("mtl_model_set_feature_name", p, int(feature), encode(name, "feature name"))

    def get_feature_name(self, feature):
        v = c_char_p()
        with self._native as p:
            call("mtl_model_get_feature_name", p, int(feature), byref(v))
            return decode(v.value)

    @property
    def feature_names(self):
        """All input feature names (None where none is set)."""
        return [self.get_feature_name(i) for i in range(self.n_inputs)]

    @feature_names.setter
    def feature_names(self, names):
        names = list(names)
        if len(names) != self.n_inputs:
            raise ShapeError(f"{len(names)} feature names for {self.n_inputs} inputs")
        for i, name in enumerate(names):
            self.set_feature_name(i, name)


class Metadata(collections.abc.MutableMapping):
    """Dict-like view of a model's metadata, in the order keys were added."""

    def __init__(self, model):
        self._model = model

    def __getitem__(self, key):
        try:
            return self._model.get_metadata(key)
        except NotFoundError:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        self._model.set_metadata(key, value)

    def __delitem__(self, key):
        self[key]  # KeyError if absent, as for a dict
        self._model.set_metadata(key, None)

    def _items(self):
        m = self._model
        k, v = c_char_p(), c_char_p()
        with m._native as p:
            n = C.mtl_model_metadata_count(p)
            items = []
            for i in range(n):
                call("mtl_model_metadata_at", p, i, byref(k), byref(v))
                items.append((decode(k.value), decode(v.value)))
        return items

    def __iter__(self):
        return iter([k for k, _ in self._items()])

    def __len__(self):
        with self._model._native as p:
            return C.mtl_model_metadata_count(p)

    def __repr__(self):
        return f"Metadata({dict(self._items())!r})"


class Workspace(Owner):
    """Scratch memory for inference, for batches of up to `max_batch` rows
    (larger calls are processed in chunks).  One per predicting thread;
    many threads may predict with one model, each with its own workspace:

        ws = libmtl.Workspace(model, max_batch=1)
        y = model.predict(x_row, workspace=ws)
    """

    def __init__(self, model, max_batch=DEFAULT_WORKSPACE_BATCH):
        if not isinstance(model, Model):
            raise InvalidArgumentError(f"model must be a libmtl.Model, not {type(model).__name__}")
        out = c_void_p()
        with model._native as mp:
            call("mtl_workspace_create", byref(out), mp, int(max_batch))
            # The workspace keeps the C model alive until it is freed.
            self._native = Native(out.value, C.mtl_workspace_destroy, "workspace",
                                  deps=[model._native])
        self.model = model
        self.max_batch = int(max_batch)

    def __repr__(self):
        return f"<libmtl.Workspace max_batch={self.max_batch}{' (closed)' if self.closed else ''}>"
