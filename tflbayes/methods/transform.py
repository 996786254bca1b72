"""Turn a deterministic Keras model into its stochastic twin by rewriting its config.

``build_model`` returns a plain Sequential or functional model that outputs logits; the
methods here rebuild it with always-on dropout or variational layers in place, keeping
every other layer and all layer names. Subclassed models have no config to rewrite and are
refused with a clear error.
"""
from __future__ import annotations

import copy

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError

__all__ = ["WEIGHT_LAYERS", "to_mc_dropout", "to_variational", "weight_layer_names"]

WEIGHT_LAYERS = ("Dense", "Conv2D")
_CONTAINERS = ("Sequential", "Functional", "Model")


def _custom_objects():
    from tflbayes.layers import MCDropout, VariationalConv2D, VariationalDense

    return {"MCDropout": MCDropout, "VariationalDense": VariationalDense, "VariationalConv2D": VariationalConv2D,
            "tflbayes>MCDropout": MCDropout, "tflbayes>VariationalDense": VariationalDense,
            "tflbayes>VariationalConv2D": VariationalConv2D}


def class_name(entry) -> str:
    """A config entry's layer class, without a registration prefix ("tflbayes>MCDropout" -> "MCDropout")."""
    return str(entry.get("class_name", "")).split(">")[-1]


class _Graph:
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

    def output_index(self) -> int:
        """Index of the entry that produces the model's (single) output."""
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

    def unique(self, base):
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def weight_layers(self):
        return [i for i, e in enumerate(self.entries) if class_name(e) in WEIGHT_LAYERS]

    def predecessor(self, i):
        """Index of the single layer feeding entry ``i`` (None for the first / input-fed layer)."""
        if self.sequential:
            j = i - 1
            return j if j >= 0 and self.entries[j]["class_name"] != "InputLayer" else None
        nodes = self.entries[i].get("inbound_nodes") or []
        if len(nodes) != 1 or len(nodes[0]) != 1:
            return None
        j = self.index(nodes[0][0][0])
        return None if self.entries[j]["class_name"] == "InputLayer" else j

    def _check_single_input(self, i):
        nodes = self.entries[i].get("inbound_nodes") or []
        if len(nodes) != 1 or len(nodes[0]) != 1:
            raise InvalidInputError(
                f"Layer {self.name_of(i)!r} is shared or has several inputs; tflbayes cannot insert a "
                "stochastic layer before it."
            )

    def insert_before(self, i, layer):
        entry = keras.layers.serialize(layer)
        name = layer.name
        if not self.sequential:
            self._check_single_input(i)
            entry["name"] = name
            entry["inbound_nodes"] = self.entries[i]["inbound_nodes"]
            self.entries[i]["inbound_nodes"] = [[[name, 0, 0, {}]]]
        self.entries.insert(i, entry)

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


def weight_layer_names(model) -> list:
    """Names of the Dense/Conv2D layers of ``model`` in topological order."""
    g = _Graph(model)
    return [g.name_of(i) for i in g.weight_layers()]


def to_mc_dropout(model, rate=None, layers: str = "all", default_rate: float = 0.25):
    """Rebuild ``model`` with always-on dropout (Gal & Ghahramani 2016).

    - The model's own ``Dropout`` layers become :class:`~tflbayes.layers.MCDropout` (their rate,
      or ``rate`` when given).
    - A model without dropout gets ``MCDropout(rate or default_rate)`` before every Dense/Conv2D
      layer except the first (the one that sees the input).
    - ``layers="last"``: only the dropout feeding the last Dense/Conv2D is stochastic (inserted
      if absent); other Dropout layers stay ordinary (off at prediction time). Sampling only the
      head lets a converted graph compute the body once and tile only the head.
    """
    from tflbayes.layers import MCDropout

    g = _Graph(model)
    weights = g.weight_layers()
    if not weights:
        raise InvalidInputError("The model has no Dense or Conv2D layer; there is nothing to put dropout before.")

    def mc(rate_, name):
        return MCDropout(rate_, name=g.unique(name))

    if layers == "last":
        last = weights[-1]
        j = g.predecessor(last)
        if j is not None and g.entries[j]["class_name"] == "Dropout":
            old = g.entries[j]["config"]
            g.replace(j, MCDropout(rate if rate is not None else old["rate"], name=old["name"]))
        else:
            g.insert_before(last, mc(rate if rate is not None else default_rate, f"mc_dropout_{g.name_of(last)}"))
        return g.build()
    dropouts = [i for i, e in enumerate(g.entries) if e["class_name"] == "Dropout"]
    if dropouts:
        for i in dropouts:
            old = g.entries[i]["config"]
            g.replace(i, MCDropout(rate if rate is not None else old["rate"], name=old["name"]))
    else:
        for i in reversed(weights[1:]):
            g.insert_before(i, mc(rate if rate is not None else default_rate, f"mc_dropout_{g.name_of(i)}"))
    return g.build()


def to_variational(model, layers: str = "all", **layer_options):
    """Rebuild ``model`` with mean-field Gaussian variational twins of its Dense/Conv2D layers.

    Keeps names, units/filters, kernel sizes, strides, padding, activations and bias settings.
    ``layers="last"`` makes only the last Dense/Conv2D layer variational (a last-layer posterior).
    ``layer_options`` go to every variational layer (``estimator``, ``prior_std``, ``kl_weight``,
    ``init_std``).
    """
    from tflbayes.layers import VariationalConv2D, VariationalDense

    g = _Graph(model)
    weights = g.weight_layers()
    if not weights:
        raise InvalidInputError("The model has no Dense or Conv2D layer to make variational.")
    chosen = weights[-1:] if layers == "last" else weights
    for i in chosen:
        e = g.entries[i]
        c = e["config"]
        common = dict(name=c["name"], activation=c.get("activation"), use_bias=c.get("use_bias", True), **layer_options)
        if e["class_name"] == "Dense":
            g.replace(i, VariationalDense(c["units"], **common))
            continue
        if c.get("data_format", "channels_last") != "channels_last":
            raise InvalidInputError(f"Conv2D layer {c['name']!r}: only data_format='channels_last' is supported.")
        if tuple(c.get("dilation_rate", (1, 1))) != (1, 1) or c.get("groups", 1) != 1:
            raise InvalidInputError(f"Conv2D layer {c['name']!r}: dilation and groups are not supported by VI.")
        g.replace(i, VariationalConv2D(c["filters"], tuple(c["kernel_size"]), strides=tuple(c["strides"]),
                                       padding=c["padding"], **common))
    return g.build()
