"""Turn a deterministic Keras model into its stochastic twin by rewriting its config.

``build_model`` returns a plain Sequential or functional model that outputs logits; the
methods here rebuild it with always-on dropout or variational layers in place, keeping
every other layer, all layer names and the wiring of any functional graph (residual ``Add``,
``Concatenate``, shared layers, multi-input layers). Subclassed models have no config to
rewrite and are refused with a clear error.

Where the randomness goes (``layers=``):

- MC dropout (:func:`to_mc_dropout`): ``"head"`` drops the features that feed the classifier
  head (before each of the trailing Dense layers, e.g. after the global pooling of a MobileNet
  or the GRU of a recurrent model) and makes the model's own ``Dropout`` layers always-on;
  ``"all"`` drops the input of every weight layer but the first (Gal & Ghahramani's network);
  ``"auto"`` is ``"all"`` on a plain chain of Dense / Conv2D layers and ``"head"`` otherwise;
  ``"last"`` only the input of the last Dense; a list of layer names: before each named layer.
- VI (:func:`to_variational`): ``"all"`` every Dense / Conv1D / Conv2D / DepthwiseConv2D,
  ``"last"`` the last Dense, or a list of layer names.
"""
from __future__ import annotations

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError
from tflbayes.methods.config_graph import DENSE_LAYERS as _DENSE
from tflbayes.methods.config_graph import WEIGHT_LAYERS, ConfigGraph, class_name

__all__ = ["WEIGHT_LAYERS", "DROPOUT_POLICIES", "VARIATIONAL_POLICIES", "ConfigGraph", "class_name",
           "to_mc_dropout", "to_variational", "weight_layer_names", "resolve_dropout_policy", "check_layers_option",
           "dropout_summary", "variational_summary", "deterministic_layer"]

_CLASSIC = ("Dense", "Conv2D")  # a plain chain of these keeps layers="all" as its "auto" policy
DROPOUT_POLICIES = ("auto", "head", "all", "last")
VARIATIONAL_POLICIES = ("all", "last")


_Graph = ConfigGraph  # the name tflbayes.distill.students subclasses (use ConfigGraph)


def weight_layer_names(model) -> list:
    """Names of the weight layers of ``model`` (Dense, Conv*, RNNs, variational twins) in config order."""
    g = ConfigGraph(model)
    return [g.name_of(i) for i in g.weight_layers()]


def check_layers_option(layers, choices) -> object:
    """``layers`` as given to ``tb.fit``: one of ``choices`` or a non-empty list of layer names (returned as a list)."""
    if isinstance(layers, str):
        if layers in choices:
            return layers
    elif isinstance(layers, (list, tuple)) and layers and all(isinstance(n, str) for n in layers):
        return list(layers)
    raise InvalidInputError(
        f"Invalid value received for argument `layers`. Expected one of {', '.join(map(repr, choices))} or a "
        f"non-empty list of layer names. Received: layers={layers!r}")


def _check_names(g: ConfigGraph, layers, what: str) -> list:
    names = [layers] if isinstance(layers, str) else list(layers)
    valid = g.layer_names()
    bad = [n for n in names if not isinstance(n, str) or n not in valid]
    if bad or not names:
        raise InvalidInputError(
            f"Invalid value received for argument `layers`. Expected {what}, or a list of layer names of the model. "
            f"Unknown: {bad if bad else 'an empty list'}. Valid names: {', '.join(valid)}.")
    return names


def resolve_dropout_policy(model, layers) -> str:
    """What ``layers`` means for ``model``: ``"all"``/``"head"`` for ``"auto"``, else ``layers`` (a list: "names")."""
    if not isinstance(layers, str):
        return "names"
    if layers != "auto":
        return layers
    g = ConfigGraph(model)
    plain = g.is_chain() and all(g.kind(i) in _CLASSIC for i in g.weight_layers())
    return "all" if plain else "head"


def to_mc_dropout(model, rate=None, layers="all", default_rate: float = 0.25):
    """Rebuild ``model`` with always-on dropout (Gal & Ghahramani 2016).

    Args:
        model: a Sequential or functional Keras model.
        rate: the dropout rate of every MC dropout layer (default: the model's own Dropout rates,
            ``default_rate`` where inserted).
        layers: where (see the module docstring): ``"all"`` (the model's own ``Dropout`` layers
            become :class:`~tflbayes.layers.MCDropout`; a model without any gets one before every
            weight layer except those that see the input directly), ``"head"``, ``"auto"``,
            ``"last"`` (only the dropout feeding the last Dense is stochastic; the model's other
            Dropout layers stay ordinary) or a list of layer names (an MCDropout before each,
            or the named Dropout made always-on; other Dropout layers stay ordinary).

    Raises:
        InvalidInputError: no weight layer, an unknown layer name (the message lists the valid
            ones), or a policy that would put no dropout anywhere (the message says what to pass).
    """
    from tflbayes.layers import MCDropout

    g = ConfigGraph(model)
    weights = g.weight_layers()
    if not weights:
        raise InvalidInputError("The model has no weight layer (Dense, Conv, GRU, ...); there is nothing to put "
                                "dropout before.")
    policy = resolve_dropout_policy(model, layers)
    if policy not in ("all", "head", "last", "names"):
        raise InvalidInputError(f"Invalid value received for argument `layers`. Expected one of "
                                f"{', '.join(map(repr, DROPOUT_POLICIES))} or a list of layer names. "
                                f"Received: layers={layers!r}")
    r = (lambda old: rate if rate is not None else old)

    def make(name):
        return MCDropout(r(default_rate), name=name)

    def always_on(i):
        old = g.entries[i]["config"]
        g.replace(i, MCDropout(r(old["rate"]), noise_shape=old.get("noise_shape"), seed=old.get("seed"),
                               name=old["name"]))

    def drop_before(name):
        i = g.index(name)
        if g.kind(i) == "Dropout":
            return always_on(i)
        j = g.predecessor(i)
        if j is not None and g.kind(j) == "Dropout":
            return always_on(j)
        g.insert_before(i, make, f"mc_dropout_{name}")

    own = [i for i in range(len(g.entries)) if g.kind(i) == "Dropout"]
    if policy == "names":
        targets = _check_names(g, layers, "'auto', 'head', 'all', 'last'")
    elif policy == "last":
        head = g.head_dense()
        dense = [i for i in weights if g.kind(i) in _DENSE]
        targets = [g.name_of(head[0] if head else (dense or weights)[-1])]
    else:
        for i in own:
            always_on(i)
        if policy == "all":
            targets = [] if own else [g.name_of(i) for i in weights if g.has_weights_upstream(i)]
        else:
            targets = [g.name_of(i) for i in g.head_dense()
                       if g.has_weights_upstream(i) and not (g.predecessor(i) is not None
                                                            and g.kind(g.predecessor(i)) in ("Dropout", "MCDropout"))]
    for name in targets:
        drop_before(name)
    if not any(class_name(e) == "MCDropout" for e in g.entries):
        names = [g.name_of(i) for i in weights]
        if policy == "head" and not g.head_dense():
            why = "no Dense layer on the path to its output: it has no classifier head to feed"
        else:
            why = f"its weight layers {', '.join(map(repr, names[:5]))} all see the input directly"
        raise InvalidInputError(
            f"MC dropout with layers={layers!r} puts no dropout in this model ({why}), so every prediction would be "
            "the same and the posterior would have no epistemic uncertainty. Name the layers to drop the inputs of, "
            f"e.g. layers={[names[-1]]!r}, use layers='all', or add a Dropout layer to the model.")
    return g.build()


def dropout_summary(model) -> dict:
    """``{MCDropout layer name: [names of the layers it feeds]}`` of a rebuilt model."""
    g = ConfigGraph(model)
    return {g.name_of(i): g.consumers(g.name_of(i)) for i in range(len(g.entries)) if g.kind(i) == "MCDropout"}


# ---------------------------------------------------------------------------------------------- VI


def _variational_twin(entry, options):
    """The variational layer for one config entry; raises ``ValueError(reason)`` where there is none."""
    import tflbayes.layers as tl

    kind, c = class_name(entry), entry["config"]
    common = dict(name=c["name"], activation=c.get("activation"), use_bias=c.get("use_bias", True), **options)
    if kind == "Dense":
        return tl.VariationalDense(c["units"], **common)
    if kind not in ("Conv1D", "Conv2D", "DepthwiseConv2D"):
        raise InvalidInputError(f"{kind} has no variational twin in tflbayes")
    if c.get("data_format", "channels_last") != "channels_last":
        raise InvalidInputError("only data_format='channels_last' is supported")
    if any(int(d) != 1 for d in c.get("dilation_rate", (1,))) or c.get("groups", 1) != 1:
        raise InvalidInputError("dilation and groups are not supported by VI")
    if c.get("padding") not in ("valid", "same"):
        raise InvalidInputError(f"padding={c.get('padding')!r} is not supported by VI (only 'valid' and 'same')")
    conv = dict(strides=tuple(c["strides"]), padding=c["padding"], **common)
    if kind == "Conv1D":
        return tl.VariationalConv1D(c["filters"], int(c["kernel_size"][0]), **{**conv, "strides": int(c["strides"][0])})
    if kind == "Conv2D":
        return tl.VariationalConv2D(c["filters"], tuple(c["kernel_size"]), **conv)
    return tl.VariationalDepthwiseConv2D(tuple(c["kernel_size"]), depth_multiplier=int(c.get("depth_multiplier", 1)),
                                         **conv)


def to_variational(model, layers="all", **layer_options):
    """Rebuild ``model`` with mean-field Gaussian variational twins of its weight layers.

    Dense, Conv1D, Conv2D and DepthwiseConv2D layers have twins; they keep names, units/filters,
    kernel sizes, strides, padding, activations and bias settings. Other weight layers (GRU,
    LSTM, SeparableConv2D, ...) stay deterministic (:func:`variational_summary` lists them).

    Args:
        model: a Sequential or functional Keras model.
        layers: ``"all"``, ``"last"`` (the last Dense: a last-layer posterior on a deterministic
            body) or a list of layer names.
        **layer_options: go to every variational layer (``estimator``, ``prior_std``,
            ``kl_weight``, ``init_std``).
    """
    g = ConfigGraph(model)
    if isinstance(layers, str) and layers not in VARIATIONAL_POLICIES:
        raise InvalidInputError(f"Invalid value received for argument `layers`. Expected 'all', 'last' or a list of "
                                f"layer names. Received: layers={layers!r}")
    able, reasons = [], {}
    for i in g.weight_layers():
        try:
            _variational_twin(g.entries[i], {})
            able.append(i)
        except ValueError as e:
            reasons[g.name_of(i)] = str(e)
    if not able:
        raise InvalidInputError("The model has no Dense, Conv1D, Conv2D or DepthwiseConv2D layer to make variational"
                                + (f" ({'; '.join(f'{k!r}: {v}' for k, v in reasons.items())})." if reasons else "."))
    if layers == "all":
        chosen = able
    elif layers == "last":
        head = g.head_dense()
        dense = [i for i in able if g.kind(i) in _DENSE]
        chosen = [head[0] if head else (dense or able)[-1]]
    else:
        names = _check_names(g, layers, "'all', 'last'")
        chosen = []
        for n in names:
            i = g.index(n)
            if i not in able:
                why = reasons.get(n, f"{g.kind(i)} has no weights to make variational")
                raise InvalidInputError(
                    f"Layer {n!r} ({g.kind(i)}) cannot be made variational: {why}. Layers that can: "
                    f"{', '.join(g.name_of(j) for j in able)}.")
            chosen.append(i)
    for i in chosen:
        g.replace(i, _variational_twin(g.entries[i], layer_options))
    return g.build()


def variational_summary(model) -> dict:
    """``{"variational": [names], "deterministic": [names of the other weight layers]}``."""
    g = ConfigGraph(model)
    ws = [g.name_of(i) for i in g.weight_layers()]
    vi = [n for i, n in zip(g.weight_layers(), ws) if g.kind(i).startswith("Variational")]
    return {"variational": vi, "deterministic": [n for n in ws if n not in vi]}


def deterministic_layer(entry):
    """The deterministic Keras layer for a stochastic config entry (``MCDropout`` -> ``Dropout``,
    each variational twin -> its Keras layer with the same sizes, activation and bias), or ``None``
    for an entry that is not stochastic. For students and other rewrites that undo :func:`to_variational`."""
    L, c, kind = keras.layers, entry["config"], class_name(entry)
    if kind == "MCDropout":
        return L.Dropout(c["rate"], noise_shape=c.get("noise_shape"), seed=c.get("seed"), name=c["name"])
    common = dict(name=c["name"], activation=c.get("activation"), use_bias=c.get("use_bias", True))
    if kind == "VariationalDense":
        return L.Dense(c["units"], **common)
    if kind == "VariationalConv1D":
        return L.Conv1D(c["filters"], c["kernel_size"], strides=c["strides"], padding=c["padding"], **common)
    if kind == "VariationalConv2D":
        return L.Conv2D(c["filters"], tuple(c["kernel_size"]), strides=tuple(c["strides"]), padding=c["padding"],
                        **common)
    if kind == "VariationalDepthwiseConv2D":
        return L.DepthwiseConv2D(tuple(c["kernel_size"]), strides=tuple(c["strides"]), padding=c["padding"],
                                 depth_multiplier=c["depth_multiplier"], **common)
    return None
