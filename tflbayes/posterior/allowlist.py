"""What an ``architecture.json`` may name, checked before Keras deserialises anything.

Keras rebuilds a model from JSON by looking up every ``class_name`` / ``module`` /
``registered_name`` it finds, importing modules and calling what they hold. tf_keras's safe mode
only blocks bytecode lambdas: a ``Lambda`` layer whose ``function`` names an importable module
function (``pydoc.pipepager`` with a ``cmd`` argument) runs a shell command while the model is
built. A posterior folder is something people download and share, so :func:`check_architecture`
walks the JSON itself and accepts only

- Keras's built-in layers, initializers, regularizers and constraints listed below, by name,
  from Keras's own modules;
- tflbayes's registered layers (``registered_name`` ``"tflbayes>Name"``, from a ``tflbayes.``
  module, registered with :func:`tflbayes._keras.register`);
- activation functions by name from :data:`ACTIVATIONS`;
- ``TFOpLambda`` layers (what ``x * y`` on Keras tensors becomes in a functional model) whose
  ``function`` is one of the pure TF ops in :data:`TF_OPS`.

Everything else (``Lambda``, ``__lambda__``, any other module, function or registered name)
raises :class:`~tflbayes.errors.PosteriorFormatError` naming the file and the JSON path.
"""
from __future__ import annotations

from tflbayes.errors import PosteriorFormatError

__all__ = ["LAYERS", "INITIALIZERS", "REGULARIZERS", "CONSTRAINTS", "ACTIVATIONS", "TF_OPS", "MODULES",
           "check_architecture"]

LAYERS = frozenset("""
    InputLayer Sequential Functional Model
    Dense EinsumDense Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose DepthwiseConv1D DepthwiseConv2D
    SeparableConv1D SeparableConv2D
    BatchNormalization LayerNormalization GroupNormalization UnitNormalization
    Dropout SpatialDropout1D SpatialDropout2D GaussianNoise GaussianDropout AlphaDropout
    Activation ReLU LeakyReLU PReLU ELU Softmax ThresholdedReLU
    Add Subtract Multiply Average Maximum Minimum Concatenate Dot
    Reshape Flatten Permute RepeatVector Cropping1D Cropping2D ZeroPadding1D ZeroPadding2D UpSampling1D UpSampling2D
    MaxPooling1D MaxPooling2D AveragePooling1D AveragePooling2D GlobalAveragePooling1D GlobalAveragePooling2D
    GlobalMaxPooling1D GlobalMaxPooling2D
    Resizing Rescaling CenterCrop
    GRU LSTM SimpleRNN GRUCell LSTMCell SimpleRNNCell Bidirectional TimeDistributed Embedding Masking
""".split())
INITIALIZERS = frozenset("""
    GlorotUniform GlorotNormal HeUniform HeNormal LecunUniform LecunNormal Zeros Ones Constant RandomNormal
    RandomUniform TruncatedNormal Orthogonal Identity VarianceScaling
""".split())
REGULARIZERS = frozenset("L1 L2 L1L2 OrthogonalRegularizer".split())
CONSTRAINTS = frozenset("MaxNorm MinMaxNorm NonNeg UnitNorm RadialConstraint".split())
ACTIVATIONS = frozenset("""
    linear relu relu6 sigmoid hard_sigmoid softmax tanh elu selu gelu swish silu hard_swish hard_silu softplus
    softsign exponential leaky_relu mish log_softmax
""".split())
#: Pure TF ops a ``TFOpLambda`` may call (tf API names, as tf_keras serialises them).
TF_OPS = frozenset("""
    __operators__.add __operators__.getitem math.add math.subtract math.multiply math.truediv math.divide
    math.negative math.maximum math.minimum math.sigmoid math.tanh math.exp math.log math.sqrt math.square
    math.reduce_mean math.reduce_sum math.reduce_max nn.relu nn.relu6 nn.silu nn.softmax nn.sigmoid
    reshape transpose concat identity clip_by_value
""".split())
#: Keras modules a built-in object may come from (tf_keras resolves them inside its own API).
MODULES = frozenset({"keras", "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints",
                     "keras.activations", "keras.mixed_precision", "keras.models", "builtins"})
_TF_OP_MODULE = "tf_keras.src.layers.core.tf_op_layer"  # where tf_keras serialises TFOpLambda from
_SPECIAL = frozenset({"__tuple__", "TensorShape", "Policy"})  # json_utils' and dtype-policy values
_FUNCTION_KEYS = frozenset({"activation", "recurrent_activation"})


def _tflbayes_classes() -> dict:
    """``"tflbayes>Name" -> class`` for every layer tflbayes registered."""
    import tflbayes.layers  # noqa: F401  (importing registers them)
    from tflbayes._keras import keras

    return {k: v for k, v in keras.saving.get_custom_objects().items()
            if k.startswith("tflbayes>") and getattr(v, "__module__", "").startswith("tflbayes.")}


class _Walker:
    def __init__(self, where: str):
        self.where = where
        self.custom = _tflbayes_classes()

    def refuse(self, path: str, why: str):
        raise PosteriorFormatError(
            f"{self.where}: {path or 'the top level'} {why}; a posterior folder may only name Keras's built-in "
            "layers and tflbayes's registered ones (refused before anything was deserialised).")

    def walk(self, obj, path: str = "") -> None:
        stack = [(obj, path)]
        while stack:
            o, p = stack.pop()
            if isinstance(o, dict):
                if "class_name" in o:
                    self.check_object(o, p)
                for k, v in o.items():
                    if not isinstance(k, str):
                        self.refuse(p, "has a non-string key")
                    if k in _FUNCTION_KEYS and isinstance(v, str) and v not in ACTIVATIONS:
                        self.refuse(f"{p}.{k}", f"names the activation {v!r:.80}, which is not a Keras built-in")
                    if isinstance(v, (dict, list)):
                        stack.append((v, f"{p}.{k}" if p else k))
            elif isinstance(o, list):
                stack.extend((v, f"{p}[{i}]") for i, v in enumerate(o) if isinstance(v, (dict, list)))

    def check_object(self, o: dict, p: str) -> None:
        cls, module, reg = o.get("class_name"), o.get("module"), o.get("registered_name")
        if not isinstance(cls, str):
            self.refuse(p, f"has a class_name of type {type(cls).__name__}")
        if module is not None and not isinstance(module, str):
            self.refuse(p, "has a non-string module")
        if reg is not None and not isinstance(reg, str):
            self.refuse(p, "has a non-string registered_name")
        if cls == "function":  # an activation serialised as an object
            name = o.get("config")
            if module not in (None, "keras.activations", "builtins") or name not in ACTIVATIONS \
                    or reg not in (None, "function", name):
                self.refuse(p, f"names the function {module}.{name!s:.80}, which is not a Keras activation")
            return
        if cls in _SPECIAL:
            if module not in (None, "keras.mixed_precision") or reg not in (None, cls):
                self.refuse(p, f"names {cls!r} from module {module!r}")
            return
        custom = self.custom.get(reg) if reg else self.custom.get(f"tflbayes>{cls}")
        if custom is not None and (reg is None or reg == f"tflbayes>{cls}"):
            if module not in (None, custom.__module__, "tflbayes.layers"):
                self.refuse(p, f"names tflbayes's {cls} from module {module!r} (expected {custom.__module__!r})")
            return
        if reg not in (None, cls):
            self.refuse(p, f"has registered_name {reg!r:.80}, which is not a tflbayes layer")
        if cls in ("TFOpLambda", "SlicingOpLambda"):
            fn = o["config"].get("function") if isinstance(o.get("config"), dict) else None
            if module not in (None, *MODULES, _TF_OP_MODULE) or fn not in TF_OPS:
                self.refuse(p, f"is a {cls} calling {fn!r:.80} (module {module!r:.80}), which is not one of the "
                               "pure TF ops allowed")
            return
        if module is not None and module not in MODULES:
            self.refuse(p, f"names class {cls!r:.80} from module {module!r:.80}, which is not a Keras module")
        if cls not in LAYERS | INITIALIZERS | REGULARIZERS | CONSTRAINTS:
            self.refuse(p, f"names class {cls!r:.80}, which is not on the allowlist (e.g. Lambda runs code)")


def check_architecture(config, where) -> None:
    """Raise :class:`PosteriorFormatError` unless ``config`` (parsed architecture JSON) is allowlisted."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise PosteriorFormatError(f"{where}: must hold a Keras model config (an object with a class_name).")
    if config["class_name"] not in ("Sequential", "Functional", "Model"):
        raise PosteriorFormatError(
            f"{where}: the top-level class_name is {config['class_name']!r:.80}; expected Sequential or Functional.")
    _Walker(str(where)).walk(config)
