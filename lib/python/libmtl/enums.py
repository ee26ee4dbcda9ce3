"""IntEnum mirrors of the constants in mtl.h.

Names drop the C prefix: MTL_ACT_RELU is Activation.RELU, MTL_OPT_SEED is
Option.SEED, MTL_ERR_SHAPE is Status.SHAPE.  The values are the ABI values;
tests/python/test_header.py parses mtl.h and checks every one of them.

Wherever the Python API takes one of these, it also accepts the plain int
or the member name as a case-insensitive string ("relu", "adamw").
"""

import enum

# Header #defines.
VERSION_MAJOR = 0
VERSION_MINOR = 1
VERSION_PATCH = 0
VERSION_NUMBER = VERSION_MAJOR * 10000 + VERSION_MINOR * 100 + VERSION_PATCH

OPTTYPE_I64 = 0x10000
OPTTYPE_F64 = 0x20000

LAYER_NORM = 1           # MTL_LAYER_NORM
DATASET_COPY = 1         # MTL_DATASET_COPY
CSV_DROP_INCOMPLETE = 1  # MTL_CSV_DROP_INCOMPLETE


class Status(enum.IntEnum):
    OK = 0
    INVALID_ARGUMENT = 1
    OUT_OF_MEMORY = 2
    SHAPE = 3
    STATE = 4
    IO = 5
    FORMAT = 6
    VERSION = 7
    NON_FINITE = 8
    UNSUPPORTED = 9
    INTERNAL = 10
    NOT_FOUND = 11


class Option(enum.IntEnum):
    """Context and trainer options.  The value type is encoded in the number
    (:attr:`is_float`)."""
    # context
    NUM_THREADS = OPTTYPE_I64 | 1
    SEED = OPTTYPE_I64 | 2
    PARALLEL_MIN_FLOPS = OPTTYPE_I64 | 3
    # trainer: optimiser
    OPTIMIZER = OPTTYPE_I64 | 100
    LEARNING_RATE = OPTTYPE_F64 | 101
    MOMENTUM = OPTTYPE_F64 | 102
    NESTEROV = OPTTYPE_I64 | 103
    BETA1 = OPTTYPE_F64 | 104
    BETA2 = OPTTYPE_F64 | 105
    EPSILON = OPTTYPE_F64 | 106
    WEIGHT_DECAY = OPTTYPE_F64 | 107
    CLIP_NORM = OPTTYPE_F64 | 108
    # trainer: learning-rate schedule
    SCHEDULE = OPTTYPE_I64 | 120
    SCHEDULE_STEP_EPOCHS = OPTTYPE_I64 | 121
    SCHEDULE_GAMMA = OPTTYPE_F64 | 122
    WARMUP_STEPS = OPTTYPE_I64 | 123
    MIN_LEARNING_RATE = OPTTYPE_F64 | 124
    PLATEAU_PATIENCE = OPTTYPE_I64 | 125
    # trainer: fit loop
    BATCH_SIZE = OPTTYPE_I64 | 140
    EPOCHS = OPTTYPE_I64 | 141
    EARLY_STOP_PATIENCE = OPTTYPE_I64 | 142
    EARLY_STOP_MIN_DELTA = OPTTYPE_F64 | 143
    CALLBACK_EVERY_STEPS = OPTTYPE_I64 | 144
    # trainer: loss weighting
    WEIGHTING = OPTTYPE_I64 | 160
    DWA_TEMPERATURE = OPTTYPE_F64 | 161
    GRADNORM_ALPHA = OPTTYPE_F64 | 162
    CAGRAD_C = OPTTYPE_F64 | 163
    WEIGHTING_LR = OPTTYPE_F64 | 164
    DIAGNOSTICS = OPTTYPE_I64 | 165
    AFFINITY = OPTTYPE_I64 | 166

    @property
    def is_float(self):
        return bool(self.value & OPTTYPE_F64)


class TaskOption(enum.IntEnum):
    """Per-task options (model: loss and scaling; trainer: LR_MULTIPLIER)."""
    LOSS_WEIGHT = OPTTYPE_F64 | 1
    HUBER_DELTA = OPTTYPE_F64 | 2
    LOSS = OPTTYPE_I64 | 3
    STANDARDIZE = OPTTYPE_I64 | 4
    LOG_TARGET = OPTTYPE_I64 | 5
    LR_MULTIPLIER = OPTTYPE_F64 | 6

    @property
    def is_float(self):
        return bool(self.value & OPTTYPE_F64)


class LogLevel(enum.IntEnum):
    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3


class Activation(enum.IntEnum):
    IDENTITY = 0
    RELU = 1
    LEAKY_RELU = 2
    TANH = 3
    SIGMOID = 4
    GELU = 5
    SOFTPLUS = 6


class Init(enum.IntEnum):
    """How finalize initialises dense layers (mtl_init)."""
    HE_GLOROT = 0       # the default: He normal for the ReLU family, Glorot uniform otherwise
    UNIFORM_FAN_IN = 1  # weights and biases in +-1/sqrt(fan_in), as PyTorch's nn.Linear


class TaskType(enum.IntEnum):
    REGRESSION = 1
    BINARY = 2
    MULTICLASS = 3


class Loss(enum.IntEnum):
    MSE = 1
    MAE = 2
    HUBER = 3
    BCE = 4
    CROSS_ENTROPY = 5


class Metric(enum.IntEnum):
    LOSS = 1
    MAE = 2
    RMSE = 3
    R2 = 4
    ACCURACY = 5
    CROSS_ENTROPY = 6
    ROC_AUC = 7

    @property
    def higher_is_better(self):
        return self in (Metric.R2, Metric.ACCURACY, Metric.ROC_AUC)


class Optimizer(enum.IntEnum):
    SGD = 1
    ADAM = 2
    ADAMW = 3


class Schedule(enum.IntEnum):
    CONSTANT = 1
    STEP = 2
    COSINE = 3
    PLATEAU = 4


class Weighting(enum.IntEnum):
    FIXED = 1
    UNCERTAINTY = 2
    DWA = 3
    GLS = 4
    RLW = 5
    GRADNORM = 6
    PCGRAD = 7
    MGDA = 8
    CAGRAD = 9
    IMTL_G = 10
    UPGRAD = 11


class Split(enum.IntEnum):
    TRAIN = 0
    VALIDATION = 1


class Diagnostic(enum.IntEnum):
    TASK_WEIGHTS = 1
    GRAD_NORMS = 2
    GRAD_COSINE = 3
    CONFLICTS = 4
    AFFINITY = 5


class Scope(enum.IntEnum):
    STEP = 0
    EPOCH = 1


# Options whose integer value is one of these enums (so a name is accepted).
OPTION_ENUMS = {
    Option.OPTIMIZER: Optimizer,
    Option.SCHEDULE: Schedule,
    Option.WEIGHTING: Weighting,
    TaskOption.LOSS: Loss,
}


def to_enum(cls, value, what=None):
    """Convert an enum member, an int or a case-insensitive member name to
    ``cls``.  Raises InvalidArgumentError for anything else.  Ints that are
    not members pass through as plain ints: the library decides (it may be
    newer than this module)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        key = value.strip().upper().replace("-", "_").replace(" ", "_")
        try:
            return cls[key]
        except KeyError:
            from .errors import InvalidArgumentError
            names = ", ".join(m.name.lower() for m in cls)
            raise InvalidArgumentError(
                f"unknown {what or cls.__name__} '{value}' (one of: {names})") from None
    if isinstance(value, bool) or not isinstance(value, int):
        from .errors import InvalidArgumentError
        raise InvalidArgumentError(
            f"{what or cls.__name__} must be a {cls.__name__}, an int or a name, "
            f"not {type(value).__name__}")
    try:
        return cls(value)
    except ValueError:
        return int(value)
