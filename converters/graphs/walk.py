"""Walk a Keras model's layer graph: the public model-walking helpers of the converter.

Used by the graph builders (packed chains, the general batched and stochastic graphs) and by
:mod:`tflbayes.compress.structured`. The API:

- :func:`chain_layers` ``(model) -> [layer, ...]``: the layers of a Sequential model or a
  single-path functional one in call order (InputLayers dropped, nested models inlined); any
  other graph raises ``ConversionError`` naming the layer where the chain branches.
- :func:`graph_nodes` ``(model) -> [node, ...]``: every call of a layer in a functional (or
  Sequential) model, in an order where each node comes after the nodes that feed it.
- :func:`run_graph` ``(model, feeds, call) -> {tensor id: tensor}``: evaluate the graph from
  given tensors, calling each node through ``call(layer, args, kwargs)`` (default: the layer
  itself with ``training=False``), so a builder can replace some layers (a sampler for
  ``MCDropout``) or start in the middle of the graph (the suffix after a cut).
- :func:`find_layers` ``(model, predicate) -> [layer, ...]``: the layers (nested models
  searched too) for which ``predicate(layer)`` holds.
- :func:`describe` ``(layer) -> "layer 'name' (Class)"``: how errors name a layer.

Tensor ids are the Keras ids a node records (``node.flat_input_ids`` / ``flat_output_ids``),
``tensor_id(keras_tensor)`` for the model's own inputs and outputs.

Example:
    >>> values = run_graph(model, {tensor_id(model.inputs[0]): x})        # doctest: +SKIP
    >>> logits = values[tensor_id(model.outputs[0])]                       # doctest: +SKIP
"""
from __future__ import annotations

from typing import Callable, Optional

from tflbayes._keras import keras, tf
from tflbayes.errors import ConversionError

__all__ = ["chain_layers", "graph_nodes", "run_graph", "find_layers", "describe", "tensor_id",
           "is_graph_network", "call_layer"]

L = keras.layers


def describe(layer) -> str:
    """``layer 'name' (Class)``: how the converter's errors name a layer of the user's model."""
    return f"layer {layer.name!r} ({type(layer).__name__})"


def tensor_id(t) -> str:
    """The id under which a node records the Keras tensor ``t``."""
    return str(id(t))


def is_graph_network(model) -> bool:
    """Whether ``model`` is a Sequential or functional model (a graph of layer calls)."""
    return isinstance(model, keras.Model) and bool(getattr(model, "_is_graph_network", False))


def _check_graph(model):
    if not is_graph_network(model):
        raise ConversionError(
            f"Cannot convert model {getattr(model, 'name', model)!r}: it is a subclassed "
            f"{type(model).__name__}; the graph builders need a Sequential or functional model "
            "(a subclassed model converts only in mode 'members')."
        )


# -- chains ----------------------------------------------------------------------------------------
def chain_layers(model) -> list:
    """The model's layers in call order, for a Sequential model or a single-path functional one.

    InputLayers are dropped; nested models are inlined. A functional graph with branches, several
    inputs/outputs or a layer called twice raises ``ConversionError``.
    """
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
    else:
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ConversionError(
                f"Cannot convert model {model.name!r}: only single-input, single-output chains are "
                f"supported (it has {len(model.inputs)} inputs and {len(model.outputs)} outputs)."
            )
        layers, t, seen = [], model.outputs[0], set()
        while True:
            layer, node_index, _ = t._keras_history
            if isinstance(layer, L.InputLayer):
                break
            node = layer._inbound_nodes[node_index]
            inputs = tf.nest.flatten(node.input_tensors)
            if len(inputs) != 1 or id(layer) in seen:
                raise ConversionError(
                    f"Cannot convert model {model.name!r}: {describe(layer)} is not part of a single "
                    f"chain (it has {len(inputs)} inputs or is called twice); only Sequential models "
                    "and functional chains are supported."
                )
            seen.add(id(layer))
            layers.append(layer)
            t = inputs[0]
        layers.reverse()
    out = []
    for layer in layers:
        if isinstance(layer, L.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            out.extend(chain_layers(layer))
        else:
            out.append(layer)
    return out


# -- general graphs --------------------------------------------------------------------------------
def graph_nodes(model) -> list:
    """The model's layer calls (Keras nodes, InputLayers left out), each after the nodes it reads."""
    _check_graph(model)
    by_depth = model._nodes_by_depth
    nodes = []
    for depth in sorted(by_depth, reverse=True):
        nodes.extend(n for n in by_depth[depth] if not n.is_input)
    return nodes


class _Value:
    """A computed tensor as ``Node.map_arguments`` reads it (it pops; a value here stays)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def pop(self):
        return self.value


def call_layer(layer, args, kwargs):
    """The layer itself at prediction time (``training=False``: BatchNormalization uses its moving
    statistics, Dropout is the identity)."""
    kwargs = dict(kwargs)
    kwargs.setdefault("training", False)
    return layer(*args, **kwargs)


def run_graph(model, feeds: dict, call: Optional[Callable] = None, nodes: Optional[list] = None) -> dict:
    """Evaluate ``model``'s graph from ``feeds`` ``{tensor id: tensor}``.

    Args:
        model: a Sequential or functional model.
        feeds: the starting tensors; usually the model's inputs, or the tensors of a cut.
        call: ``call(layer, args, kwargs) -> outputs`` for each node (default :func:`call_layer`).
        nodes: the nodes to run (default all, in :func:`graph_nodes` order); a node whose inputs
            are not all computed is skipped.

    Returns:
        Every computed tensor, ``{tensor id: tensor}`` (the feeds included).
    """
    call = call or call_layer
    values = {k: _Value(v) for k, v in feeds.items()}
    for node in graph_nodes(model) if nodes is None else nodes:
        if any(i not in values for i in node.flat_input_ids):
            continue
        args, kwargs = node.map_arguments(values)
        outputs = call(node.layer, args, kwargs)
        for oid, y in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
            values[oid] = _Value(y)
    return {k: v.value for k, v in values.items()}


def find_layers(model, predicate: Callable) -> list:
    """The layers of ``model`` (nested models searched, each layer once) with ``predicate(layer)``."""
    out, seen = [], set()

    def visit(m):
        for layer in getattr(m, "layers", []):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if predicate(layer):
                out.append(layer)
            if isinstance(layer, keras.Model):
                visit(layer)

    visit(model)
    return out
