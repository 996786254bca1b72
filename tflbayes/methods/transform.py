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

import copy

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError

__all__ = ["WEIGHT_LAYERS", "DROPOUT_POLICIES", "VARIATIONAL_POLICIES", "ConfigGraph", "class_name",
           "to_mc_dropout", "to_variational", "weight_layer_names", "resolve_dropout_policy", "check_layers_option", "dropout_summary",
           "variational_summary"]

# Layers with a weight matrix applied to their input: where MC dropout goes in layers="all".
WEIGHT_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                 "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "GRU", "LSTM",
                 "SimpleRNN", "Bidirectional", "VariationalDense", "VariationalConv1D", "VariationalConv2D",
                 "VariationalDepthwiseConv2D")
_DENSE = ("Dense", "VariationalDense")
_CLASSIC = ("Dense", "Conv2D")  # a plain chain of these keeps layers="all" as its "auto" policy
_CONTAINERS = ("Sequential", "Functional", "Model")
DROPOUT_POLICIES = ("auto", "head", "all", "last")
VARIATIONAL_POLICIES = ("all", "last")


def _custom_objects():
    import tflbayes.layers as tl

    names = ("MCDropout", "VariationalDense", "VariationalConv1D", "VariationalConv2D", "VariationalDepthwiseConv2D")
    out = {}
    for n in names:
        out[n] = out[f"tflbayes>{n}"] = getattr(tl, n)
    return out


def class_name(entry) -> str:
    """A config entry's layer class, without a registration prefix ("tflbayes>MCDropout" -> "MCDropout")."""
    return str(entry.get("class_name", "")).split(">")[-1]


def _is_ref(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) in (3, 4) and isinstance(x[0], str) and isinstance(x[1], int)


def _refs(node):
    """The inbound tensor references ``[layer, node, tensor, kwargs]`` of one node, in order."""
    if _is_ref(node):
        return [node]
    if isinstance(node, dict):
        return [r for v in node.values() for r in _refs(v)]
    if isinstance(node, (list, tuple)):
        return [r for v in node for r in _refs(v)]
    return []


def _map_refs(node, fn):
    """``node`` with every tensor reference ``r`` replaced by ``fn(r)`` (structure kept)."""
    if _is_ref(node):
        return fn(list(node))
    if isinstance(node, dict):
        return {k: _map_refs(v, fn) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_map_refs(v, fn) for v in node]
    return node


class ConfigGraph:
    """The layer entries of a Sequential or functional config, with insert/replace that keep wiring.

    Args:
        model: the Keras model whose config is rewritten.
        what: how error messages name the model (e.g. "the teacher's model").
        fresh_shapes: drop the layers' build shapes (for rewrites that change widths).
    """

    def __init__(self, model, what: str = "the model built by `build_model`", fresh_shapes: bool = False):
        if not isinstance(model, keras.Model):
            raise InvalidInputError(f"{what[0].upper() + what[1:]} must be a Keras model. Received: {type(model).__name__}")
        self.sequential = isinstance(model, keras.Sequential)
        if not self.sequential and not getattr(model, "_is_graph_network", False):
            raise InvalidInputError(
                f"{what[0].upper() + what[1:]} is a subclassed model ({type(model).__name__}); tflbayes needs a "
                "Sequential or functional model so it can rewrite layers and convert them to LiteRT."
            )
        self.config = copy.deepcopy(model.get_config())
        self.entries = self.config["layers"]
        self.names = set()
        for e in self.entries:
            if fresh_shapes:
                e.pop("build_config", None)
            if class_name(e) in _CONTAINERS:
                raise InvalidInputError(
                    f"Layer {e['config'].get('name')!r} of {what} is a nested model; flatten it into one "
                    "Sequential/functional model first."
                )
            self.names.add(e["config"].get("name"))

    # ----------------------------------------------------------------------------- queries
    def output_index(self) -> int:
        """Index of the entry that produces the model's (first) output."""
        if self.sequential:
            return len(self.entries) - 1
        return self.index(self.config["output_layers"][0][0])

    def name_of(self, i):
        return self.entries[i]["config"]["name"]

    def index(self, name):
        for i, e in enumerate(self.entries):
            if e["config"]["name"] == name:
                return i
        raise KeyError(name)

    def kind(self, i) -> str:
        return class_name(self.entries[i])

    def layer_names(self) -> list:
        """Every layer's name except the inputs, in config order."""
        return [self.name_of(i) for i in range(len(self.entries)) if self.kind(i) != "InputLayer"]

    def unique(self, base):
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def weight_layers(self):
        return [i for i, e in enumerate(self.entries) if class_name(e) in WEIGHT_LAYERS]

    def inputs_of(self, i) -> list:
        """Indices of the entries whose outputs entry ``i`` reads (every node, every position)."""
        if self.sequential:
            return [i - 1] if i > 0 else []
        return [self.index(r[0]) for node in self.entries[i].get("inbound_nodes") or [] for r in _refs(node)]

    def consumers(self, name) -> list:
        """Names of the layers that read layer ``name``'s output."""
        if self.sequential:
            i = self.index(name)
            return [self.name_of(i + 1)] if i + 1 < len(self.entries) else []
        return [self.name_of(j) for j, e in enumerate(self.entries)
                if any(r[0] == name for node in e.get("inbound_nodes") or [] for r in _refs(node))]

    def predecessor(self, i):
        """Index of the single layer feeding entry ``i`` (None for an input-fed, merge or shared layer)."""
        ins = self.inputs_of(i)
        if len(ins) != 1 or (not self.sequential and len(self.entries[i].get("inbound_nodes") or []) != 1):
            return None
        return None if self.kind(ins[0]) == "InputLayer" else ins[0]

    def is_chain(self) -> bool:
        """Every layer reads exactly one tensor once (no merges, no shared layers)."""
        return self.sequential or all(len(self.inputs_of(i)) <= 1 for i in range(len(self.entries)))

    def has_weights_upstream(self, i) -> bool:
        """Whether some weight layer lies between the model's inputs and entry ``i``."""
        seen, todo = set(), list(self.inputs_of(i))
        while todo:
            j = todo.pop()
            if j in seen:
                continue
            seen.add(j)
            if self.kind(j) in WEIGHT_LAYERS:
                return True
            todo.extend(self.inputs_of(j))
        return False

    def head_dense(self) -> list:
        """The classifier head: the Dense layers on the single path back from the output, up to the
        first other weight layer, merge or input (output first)."""
        head, i = [], self.output_index()
        while i is not None and self.kind(i) != "InputLayer":
            if self.kind(i) in _DENSE:
                head.append(i)
            elif self.kind(i) in WEIGHT_LAYERS:
                break
            ins = self.inputs_of(i)
            i = ins[0] if len(ins) == 1 else None
        return head

    # ----------------------------------------------------------------------------- edits
    def insert_before(self, i, make, base: str) -> list:
        """Insert ``make(name)`` between entry ``i`` and each of its inputs; returns the new names.

        A multi-input layer (``Add``, ``Concatenate``) gets one new layer per input position; a
        shared layer's new layer is shared the same way (one call per node), so every other
        reader of the same tensors (a residual shortcut) is left as it was.
        """
        if self.sequential:
            layer = make(self.unique(base))
            self.entries.insert(i, keras.layers.serialize(layer))
            return [layer.name]
        target = self.entries[i]
        nodes = target.get("inbound_nodes") or []
        positions = max((len(_refs(n)) for n in nodes), default=0)
        if positions == 0:
            raise InvalidInputError(f"Layer {self.name_of(i)!r} reads no tensor; nothing can be inserted before it.")
        new = []
        for p in range(positions):
            layer = make(self.unique(base if positions == 1 else f"{base}_in{p}"))
            entry = keras.layers.serialize(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = []
            new.append(entry)
        for k, node in enumerate(nodes):
            pos = iter(range(positions))

            def reroute(ref):
                p = next(pos)
                entry = new[p]
                entry["inbound_nodes"].append([[ref[0], ref[1], ref[2], {}]])
                return [entry["name"], len(entry["inbound_nodes"]) - 1, 0, ref[3] if len(ref) == 4 else {}]

            nodes[k] = _map_refs(node, reroute)
        for entry in new:
            self.entries.insert(i, entry)
        return [e["name"] for e in new]

    def replace(self, i, layer):
        entry = keras.layers.serialize(layer)
        old = self.entries[i]
        if not self.sequential:
            entry["name"] = old["name"]
            entry["inbound_nodes"] = old["inbound_nodes"]
        self.entries[i] = entry

    def build(self):
        cls = keras.Sequential if self.sequential else keras.Model
        return cls.from_config(self.config, custom_objects=_custom_objects())


_Graph = ConfigGraph  # the name tflbayes.distill.students subclasses


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
        dense = [g.name_of(i) for i in weights]
        raise InvalidInputError(
            f"MC dropout with layers={layers!r} puts no dropout in this model (its weight layers "
            f"{', '.join(map(repr, dense))} all see the input directly), so every prediction would be the same and "
            "the posterior would have no epistemic uncertainty. Name the layers to drop the inputs of, e.g. "
            f"layers={[dense[-1]]!r}, use layers='all', or add a Dropout layer to the model.")
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
        raise ValueError(f"{kind} has no variational twin in tflbayes")
    if c.get("data_format", "channels_last") != "channels_last":
        raise ValueError("only data_format='channels_last' is supported")
    if any(int(d) != 1 for d in c.get("dilation_rate", (1,))) or c.get("groups", 1) != 1:
        raise ValueError("dilation and groups are not supported by VI")
    if c.get("padding") not in ("valid", "same"):
        raise ValueError(f"padding={c.get('padding')!r} is not supported by VI (only 'valid' and 'same')")
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
