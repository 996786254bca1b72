"""A Keras model's config as an editable graph: insert layers before a layer, replace a layer, rebuild.

Works on Sequential and functional configs with any wiring: multi-input layers (``Add``,
``Concatenate``), shared layers (several call nodes), tensors read by several layers (residual
shortcuts). Used by :mod:`tflbayes.methods.transform` (stochastic twins) and
:mod:`tflbayes.distill.students` (student architectures).
"""
from __future__ import annotations

import copy

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError

__all__ = ["ConfigGraph", "class_name", "WEIGHT_LAYERS", "DENSE_LAYERS"]

# Layers with a weight matrix applied to their input: where MC dropout goes in layers="all".
WEIGHT_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                 "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "GRU", "LSTM",
                 "SimpleRNN", "Bidirectional", "VariationalDense", "VariationalConv1D", "VariationalConv2D",
                 "VariationalDepthwiseConv2D")
DENSE_LAYERS = ("Dense", "VariationalDense")
_CONTAINERS = ("Sequential", "Functional", "Model")


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
            if self.kind(i) in DENSE_LAYERS:
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
