"""MC dropout and VI on any Sequential / functional model: S samples per invoke, one graph.

The chain builder (:mod:`~tflbayes.converters.graphs.stochastic`) rewrites a chain layer by
layer; this builder takes any graph of layers LiteRT can convert (residual ``Add``,
``Concatenate``, DepthwiseConv2D, Conv1D, GRU, LayerNormalization, ...). ``x`` is ``[B, ...]``:

1. **The cut.** A node is *stochastic* when its layer samples (:class:`~tflbayes.layers.MCDropout`,
   a mean-field variational layer, or a nested model holding one) or it reads a tensor that
   depends on one. The other nodes, the deterministic prefix, run once on ``[B, ...]``; the
   tensors they hand to stochastic nodes (*the cut*: e.g. the pooled features before a last-layer
   MC dropout, or the input itself when the first layer is variational) are tiled S times along
   the batch.
2. **The suffix** runs the model's own layers on ``[S * B, ...]`` rows (row ``s * B + b`` is
   sample ``s`` of input ``b``), each row with its own randomness; the logits are reshaped to
   ``[S, B, C]`` and go to the uncertainty head.
3. **The stochastic layers** draw their noise from a *noise source* (the sampler of the chain
   builder): MCDropout masks ``[u >= p]`` with ``u ~ U[0, 1)``; VariationalDense by the local
   reparameterization trick (exact for a dense layer, whatever estimator trained it);
   VariationalConv2D by ``conv_sampling`` (see :func:`~tflbayes.converters.graphs.stochastic.build_stochastic`);
   the other mean-field layers (VariationalConv1D, VariationalDepthwiseConv2D) by their own
   estimator: local reparameterization per output, Flipout (one kernel perturbation per invoke,
   random signs per row, as the Keras layer draws per batch) or one kernel per sample
   (reparameterization), each through the layer's own linear map.

Noise sources (argument ``noise``):

- ``"ops"`` (default): builtin random ops, ``RANDOM_UNIFORM`` / ``RANDOM_STANDARD_NORMAL``
  (never Flex), seeded by LiteRT from the OS unless ``seed`` is given.
- ``"inputs"``: every random tensor is an extra graph input instead, so the graph has **no random
  op** (for TFLite Micro, which has none, or for a device RNG). The inputs are named
  ``noise_0``, ``noise_1``, ... in the order the graph consumes them and listed by the builder as
  specs ``{"name": "noise_0", "shape": [d0, d1, ...], "distribution": "uniform" | "normal"}``:
  ``"uniform"``: i.i.d. float32 ``U[0, 1)`` (dropout masks ``u >= rate``, Flipout signs
  ``u >= 0.5``); ``"normal"``: i.i.d. standard normal float32 (VI). Filled with those
  distributions, the outputs have exactly the distribution of the ``"ops"`` graph (one uniform
  per mask here: the packed-mask trick of the ops graph needs 23 exact random mantissa bits).

Public entry point (also used by the microcontroller target)::

    fn, noise_specs = build_stochastic_general(posterior, num_samples, batch_size=1, head=True,
                                               part="all", noise="ops")

``fn`` is a ``tf.function`` with ``input_signature`` ``[x (or the cut features), *noise inputs]``
returning ``{"probs", "total", "aleatoric", "epistemic"(, "member_probs")}`` with the head,
``{"logits": [S, B, C]}`` without; ``part="prefix"`` returns the cut features (``{"features"}``,
or ``{"features_0", "features_1", ...}`` for several cut tensors) and ``part="suffix"`` takes
them as its inputs (the int8 split: prefix in int8, suffix and head in float).
"""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from tflbayes._keras import keras, tf
from tflbayes.converters.graphs.head import head_from_logits
from tflbayes.converters.graphs.stochastic import CONV_SAMPLING, _Builder
from tflbayes.converters.graphs.walk import (call_layer, describe, find_layers, graph_nodes, is_graph_network,
                                             run_graph, tensor_id)
from tflbayes._checks import check_positive_int
from tflbayes.errors import ConversionError, InvalidInputError

__all__ = ["build_stochastic_general", "stochastic_cut", "noise_arrays", "is_stochastic", "Cut", "Sampler",
           "NOISE_SOURCES", "PARTS"]

NOISE_SOURCES = ("ops", "inputs")
PARTS = ("all", "prefix", "suffix")


def _mean_field_types():
    import tflbayes.layers as tl

    return tuple(getattr(tl, "MEAN_FIELD_LAYERS", tl.VARIATIONAL_LAYERS))


def is_stochastic(layer) -> bool:
    """Whether ``layer`` samples at prediction time (MCDropout, mean-field VI, or a model holding one)."""
    from tflbayes.layers import MCDropout

    if type(layer) is MCDropout or isinstance(layer, _mean_field_types()):
        return True
    return isinstance(layer, keras.Model) and bool(find_layers(layer, is_stochastic))


class Cut:
    """Where a model's graph splits into the deterministic prefix and the sampled suffix.

    Attributes:
        prefix, suffix: the nodes (Keras layer calls) of each part, in graph order.
        ids: the cut tensors' ids (prefix or model-input tensors read by the suffix).
        shapes: their shapes without the batch axis.
        input_id, output_id: the model's input and output tensor ids.
        prefix_layers: the layers the prefix runs (what an int8 body quantizes).
    """

    def __init__(self, model):
        if not is_graph_network(model) or len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ConversionError(
                f"Cannot convert model {getattr(model, 'name', model)!r} in mode 'stochastic': the graph needs a "
                "Sequential or functional model with one input and one output. Alternatives: distil the posterior "
                "into a student (tb.distill(post, x, method='end2') -> mode 'dirichlet'), or train an ensemble "
                "(mode 'members' / 'batched' take any model LiteRT converts).")
        self.input_id, self.output_id = tensor_id(model.inputs[0]), tensor_id(model.outputs[0])
        tainted, self.prefix, self.suffix = set(), [], []
        for node in graph_nodes(model):
            if is_stochastic(node.layer) or any(i in tainted for i in node.flat_input_ids):
                self.suffix.append(node)
                tainted.update(node.flat_output_ids)
            else:
                self.prefix.append(node)
        if self.output_id not in tainted:
            raise ConversionError(
                f"Model {model.name!r} has no stochastic layer on the path to its output (MCDropout, "
                "VariationalDense, VariationalConv2D, ...): every sample would be the same. Convert a "
                "deterministic model as an ensemble (mode 'members' or 'batched').")
        self.ids = list(dict.fromkeys(i for n in self.suffix for i in n.flat_input_ids if i not in tainted))
        shapes = {self.input_id: list(model.inputs[0].shape)[1:]}
        for node in self.prefix:
            for oid, t in zip(node.flat_output_ids, tf.nest.flatten(node.outputs)):
                shapes[oid] = list(t.shape)[1:]
        self.shapes = [shapes[i] for i in self.ids]
        self.prefix_layers = [n.layer for n in self.prefix]

    @property
    def has_prefix(self) -> bool:
        """Whether the prefix has weights to run (in int8): a prefix of Flatten / Reshape only, or
        none at all (the first weighted layer samples), leaves nothing worth quantizing."""
        return any(i != self.input_id for i in self.ids) and any(n.layer.weights for n in self.prefix)

    def feature_names(self) -> list:
        return ["features"] if len(self.ids) == 1 else [f"features_{k}" for k in range(len(self.ids))]


def stochastic_cut(posterior) -> Cut:
    """The :class:`Cut` of a stochastic posterior's model."""
    return Cut(posterior.model)


class Sampler(_Builder):
    """The noise source of the general graph: the chain builder's ops, or graph inputs.

    With ``inputs=None`` and ``record=True`` it records the noise specs and returns zeros (a
    tracing pass); with ``inputs`` (a list of tensors) it consumes them in order.
    """

    def __init__(self, num_samples, batch_size, seed, noise="ops", inputs=None):
        super().__init__(num_samples, batch_size, seed)
        self.noise = noise
        self.inputs = list(inputs) if inputs is not None else None
        self.specs = []

    def _take(self, shape, distribution):
        shape = [int(d) for d in shape]
        self.specs.append({"name": f"noise_{len(self.specs)}", "shape": shape, "distribution": distribution})
        if self.inputs is None:
            return tf.zeros(shape, tf.float32)
        return tf.reshape(self.inputs[len(self.specs) - 1], shape)

    def uniform(self, shape):
        return super().uniform(shape) if self.noise == "ops" else self._take(shape, "uniform")

    def normal(self, shape):
        return super().normal(shape) if self.noise == "ops" else self._take(shape, "normal")

    def keep_mask(self, shape, rate: float):
        if self.noise == "ops":
            return super().keep_mask(shape, rate)
        return tf.floor(self.uniform(shape) + (1.0 - rate))  # one U[0, 1) per mask: 1 where u >= rate

    def signs(self, shape):
        """Random signs +-1 (``u >= 0.5`` -> +1)."""
        return 2.0 * tf.floor(self.uniform(shape) + 0.5) - 1.0

    def mean_field(self, layer, h, conv_sampling: str):
        """One posterior sample per row of any mean-field variational layer (module docstring)."""
        import tflbayes.layers as tl

        if type(layer) in tuple(tl.VARIATIONAL_LAYERS):
            return self.variational(layer, h, False, conv_sampling)
        linear = getattr(layer, "_linear", None)
        if linear is None:
            raise ConversionError(f"Cannot sample {describe(layer)}: it has no linear map to sample through.")
        loc = tf.convert_to_tensor(layer.kernel_loc)
        std = tf.nn.softplus(tf.convert_to_tensor(layer.kernel_rho))
        est = getattr(layer, "estimator", "flipout")
        if est == "local_reparameterization":
            mean = linear(h, loc)
            sd = tf.sqrt(tf.nn.relu(linear(tf.square(h), tf.square(std))))
            y = mean + sd * self.normal(mean.shape.as_list())
        elif est == "reparameterization":  # one whole kernel per sample, as the Keras layer per call
            rows = tf.split(h, self.s, axis=0)
            y = tf.concat([linear(r, loc + std * self.normal(std.shape.as_list())) for r in rows], axis=0)
        else:  # flipout: one perturbation per invoke, random signs per row and channel
            mean = linear(h, loc)
            rank = h.shape.rank
            sign_in = self.signs([int(h.shape[0]), *([1] * (rank - 2)), int(h.shape[-1])])
            pert = linear(h * sign_in, std * self.normal(std.shape.as_list()))
            sign_out = self.signs([int(pert.shape[0]), *([1] * (pert.shape.rank - 2)), int(pert.shape[-1])])
            y = mean + pert * sign_out
        if layer.bias is not None:
            y = tf.nn.bias_add(y, tf.convert_to_tensor(layer.bias))
        if layer.activation is not None and layer.activation is not keras.activations.linear:
            y = layer.activation(y)
        return y


def _suffix_call(g: Sampler, conv_sampling: str):
    from tflbayes.layers import MCDropout

    def call(layer, args, kwargs):
        if type(layer) is MCDropout:
            return g.mc_dropout(layer, args[0], shared=False)
        if isinstance(layer, _mean_field_types()):
            return g.mean_field(layer, args[0], conv_sampling)
        if isinstance(layer, keras.Model) and is_stochastic(layer):
            if not is_graph_network(layer):
                raise ConversionError(f"Cannot sample {describe(layer)}: a subclassed model holding a stochastic "
                                      "layer; use a Sequential or functional model.")
            feeds = {tensor_id(k): v for k, v in zip(layer.inputs, tf.nest.flatten(args[0]))}
            values = run_graph(layer, feeds, call)
            outs = [values[tensor_id(t)] for t in layer.outputs]
            return outs[0] if len(outs) == 1 else outs
        return call_layer(layer, args, kwargs)

    return call


def _check(posterior, num_samples, batch_size, part, noise, seed, conv_sampling):
    check_positive_int("num_samples", num_samples)
    check_positive_int("batch_size", batch_size)
    for name, v, choices in (("part", part, PARTS), ("noise", noise, NOISE_SOURCES),
                             ("conv_sampling", conv_sampling, CONV_SAMPLING)):
        if v not in choices:
            raise InvalidInputError(f"Invalid value received for argument `{name}`. Expected one of "
                                    f"{', '.join(map(repr, choices))}. Received: {name}={v!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise InvalidInputError(f"Invalid value received for argument `seed`. Expected an integer or None. "
                                f"Received: seed={seed!r}")
    if getattr(posterior, "kind", None) != "stochastic" or not isinstance(getattr(posterior, "model", None), keras.Model):
        raise ConversionError(
            f"build_stochastic_general needs a StochasticPosterior (MC dropout or VI); received "
            f"{type(posterior).__name__}. Convert ensembles with the batched or members modes.")
    if any(d is None for d in posterior.input_shape):
        raise ConversionError(f"The model's input shape {tuple(posterior.input_shape)} is not fully known.")


def build_stochastic_general(posterior, num_samples: int, batch_size: int = 1, head: bool = True,
                             part: str = "all", noise: str = "ops", *, member_probs: bool = True,
                             seed: Optional[int] = None, conv_sampling: str = "auto"):
    """The general stochastic graph of a stochastic posterior and its noise inputs.

    Args:
        posterior: a :class:`~tflbayes.posterior.StochasticPosterior` (MC dropout or VI) whose
            model is a Sequential or functional model (one input, one output, logits).
        num_samples: S, samples per invoke.
        batch_size: B, the static batch of ``x``.
        head: append the uncertainty head (``part`` ``"all"`` / ``"suffix"``); else return logits.
        part: ``"all"``, ``"prefix"`` (the deterministic prefix: cut features out) or ``"suffix"``
            (cut features in: the part that samples).
        noise: ``"ops"`` (builtin random ops) or ``"inputs"`` (noise as graph inputs; module docstring).
        member_probs: with the head, also output the per-sample probabilities ``[S, B, C]``.
        seed: fixed per-op seeds for ``noise="ops"`` (reproducible streams); ``None``: OS-seeded.
        conv_sampling: how VariationalConv2D layers are sampled (``"auto"``, ``"local_reparameterization"``,
            ``"weights"``).

    Returns:
        ``(fn, noise_specs)``: the ``tf.function`` and the list of noise-input specs
        ``{"name", "shape", "distribution"}`` (empty for ``noise="ops"`` and for ``part="prefix"``).

    Raises:
        ConversionError: not a stochastic posterior, no stochastic layer on the path to the output,
            a multi-input/output or subclassed model, or ``part="prefix"``/``"suffix"`` on a model
            that samples from its input (no deterministic prefix to run in int8).
        InvalidInputError: a bad argument (named).
    """
    _check(posterior, num_samples, batch_size, part, noise, seed, conv_sampling)
    from tflbayes.converters.graphs.recurrent import unroll_recurrent

    s, b, model = int(num_samples), int(batch_size), unroll_recurrent(posterior.model)
    # an unrolled clone owns its variables, not posterior.model (the converter's trackable): freeze them
    own = _freeze if model is not posterior.model else (lambda fn, specs: fn)
    cut = Cut(model)
    c = int(posterior.num_classes)
    if part != "all" and not cut.has_prefix:
        raise ConversionError(
            f"Model {model.name!r} samples from its input (its first layers are stochastic): no deterministic "
            "prefix to run in int8; use precision='dynamic' or 'float32' (or 'float16').")
    x_spec = tf.TensorSpec([b, *posterior.input_shape], tf.float32, name="x")
    names = cut.feature_names()
    feat_specs = [tf.TensorSpec([b, *shape], tf.float32, name=n) for shape, n in zip(cut.shapes, names)]

    if part == "prefix":
        @tf.function(input_signature=[x_spec], autograph=False)
        def prefix(x):
            values = run_graph(model, {cut.input_id: x}, nodes=cut.prefix)
            return {n: values[i] for n, i in zip(names, cut.ids)}

        return own(prefix, [x_spec]), []

    def body(g, inputs):
        if part == "all":
            values = run_graph(model, {cut.input_id: inputs[0]}, nodes=cut.prefix)
            feats = [values[i] for i in cut.ids]
        else:
            feats = list(inputs)
        feeds = {i: tf.tile(f, [s] + [1] * (f.shape.rank - 1)) for i, f in zip(cut.ids, feats)}
        values = run_graph(model, feeds, _suffix_call(g, conv_sampling), nodes=cut.suffix)
        logits = tf.reshape(values[cut.output_id], [s, b, c])
        return head_from_logits(logits, member_probs=member_probs) if head else {"logits": logits}

    in_specs = [x_spec] if part == "all" else feat_specs
    n_in = len(in_specs)
    if noise == "ops":
        @tf.function(input_signature=in_specs, autograph=False)
        def stochastic(*inputs):
            return body(Sampler(s, b, seed), inputs)

        return own(stochastic, in_specs), []

    recorder = Sampler(s, b, None, "inputs")  # a tracing pass that records the noise shapes
    tf.function(lambda *inputs: body(recorder, inputs), input_signature=in_specs, autograph=False
                ).get_concrete_function()
    specs = recorder.specs
    noise_specs = [tf.TensorSpec(sp["shape"], tf.float32, name=sp["name"]) for sp in specs]

    @tf.function(input_signature=[*in_specs, *noise_specs], autograph=False)
    def stochastic_inputs(*inputs):
        return body(Sampler(s, b, None, "inputs", inputs[n_in:]), inputs[:n_in])

    return own(stochastic_inputs, [*in_specs, *noise_specs]), [dict(sp) for sp in specs]


def _freeze(fn, specs):
    """``fn`` with its captured variables folded into constants (a function that owns no variables)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    cf = fn.get_concrete_function()
    frozen = convert_variables_to_constants_v2(cf)

    @tf.function(input_signature=specs, autograph=False)
    def frozen_fn(*inputs):
        return tf.nest.pack_sequence_as(cf.structured_outputs, frozen(*inputs))

    return frozen_fn


def noise_arrays(specs, rng: np.random.Generator) -> dict:
    """Arrays for the noise inputs of ``specs`` drawn from their distributions (for tests / hosts)."""
    out = {}
    for sp in specs:
        shape = sp["shape"]
        out[sp["name"]] = (rng.random(shape, dtype=np.float32) if sp["distribution"] == "uniform"
                           else rng.standard_normal(shape, dtype=np.float32))
    return out
