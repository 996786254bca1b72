"""MC-dropout and variational posteriors as one TF graph that draws S samples per invoke.

The graph converts to LiteRT with builtin ops only: its randomness is the stateful
``RandomUniform`` / ``RandomStandardNormal`` pair (the ops behind ``tf.random.uniform`` and
``tf.random.normal``), which become the builtins ``RANDOM_UNIFORM`` / ``RANDOM_STANDARD_NORMAL``;
never the stateless ops (Flex only).

How the graph is laid out (``x`` is ``[B, ...]``):

1. The deterministic prefix, every layer before the first stochastic one, runs once on ``[B, ...]``.
2. The first stochastic layer draws ``S`` independent samples by *broadcasting* its noise over the
   shared activations: no ``TILE`` of the prefix output; a variational layer there computes its
   deterministic products once, on ``[B, ...]`` (LRT: mean and variance; kernel draws: the mean and
   the input patches), and only the noise and what depends on it are ``[S, B, ...]``.
3. The rest runs on ``[S * B, ...]`` rows (row ``s * B + b`` is sample ``s`` of input ``b``), each
   row with its own randomness; the logits are reshaped to ``[S, B, C]`` (sample-major) and go to
   the uncertainty head (:func:`~tflbayes.converters.graphs.head.head_from_logits`).

The stochastic layers:

- :class:`~tflbayes.layers.MCDropout` (Gal & Ghahramani 2016): inverted dropout
  ``y = x / (1 - p) * m`` with ``m = [u >= p]``, ``u ~ U[0, 1)`` per row and unit. The reference
  ``RANDOM_UNIFORM`` kernel costs ~5 ns a number, most of the graph's time if every mask took one;
  for a dyadic rate (0.5, 0.25, 0.125, ...) one uniform's 23 random bits make ``23 // m`` exact,
  independent masks (:meth:`_Builder.keep_mask`), other rates take one uniform per mask.
- :class:`~tflbayes.layers.VariationalDense`: always the local reparameterization trick (LRT,
  Kingma, Salimans & Welling 2015), whatever estimator trained it:
  ``y = (x mu + b) + sqrt(x^2 sigma^2) * eps``, ``eps ~ N(0, 1)`` per row and unit. The output units
  of one row share no weights, so this is the exact predictive of every estimator, and the S rows
  are independent (Flipout / reparameterization would share weight noise between them).
- :class:`~tflbayes.layers.VariationalConv2D` (``conv_sampling``): LRT is exact per output unit but
  draws the pixels of one channel independently, where a weight sample shares one kernel across
  them. It is therefore the layer's own model only when it was trained with
  ``estimator="local_reparameterization"``; Flipout/reparameterization-trained convolutions get a
  whole kernel per row (``"weights"``: exact, independent rows, ``S * |kernel|`` normals per
  invoke instead of ``S * |output|``). ``"auto"`` (default) picks by the layer's estimator;
  ``"local_reparameterization"`` forces LRT (cheaper, but another predictive: measured in
  ``tests/test_graphs_stochastic.py``).

Seeding: LiteRT seeds a random op when Prepare runs (a new interpreter, or ``allocate_tensors``
after a resize) from its ``seed``/``seed2`` attributes, or from ``/dev/urandom`` when both are 0; its
Philox state then advances with every invoke. ``tf.random.uniform`` under a global seed
(``tf.random.set_seed``, ``keras.utils.set_random_seed``, which ``tb.fit`` calls) would bake fixed
seeds into the graph: every interpreter on every device would replay one stream. So the ops here
are emitted as ``RandomUniform`` / ``RandomStandardNormal`` with ``seed = seed2 = 0`` whatever the
global seed, unless ``seed`` is given (reproducible streams, for tests).

Example:
    >>> post = tb.fit(build, (x, y), method="mc_dropout", epochs=5)  # doctest: +SKIP
    >>> fn = build_stochastic(post, num_samples=32)  # doctest: +SKIP
    >>> converter = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [fn.get_concrete_function()], post.model)  # doctest: +SKIP
"""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from tflbayes._keras import keras, tf
from tflbayes.converters.graphs.walk import chain_layers
from tflbayes.converters.graphs.head import head_from_logits
from tflbayes._checks import check_positive_int
from tflbayes.errors import ConversionError, InvalidInputError

__all__ = ["build_stochastic", "CONV_SAMPLING", "DETERMINISTIC_LAYERS", "IDENTITY_LAYERS"]

# How a VariationalConv2D is sampled: see build_stochastic.
CONV_SAMPLING = ("auto", "local_reparameterization", "weights")

# Layers run by calling the Keras layer itself (``training=False``). Exact types: a subclass may
# override ``call`` with anything, so it is refused rather than guessed at.
DETERMINISTIC_LAYERS = (
    keras.layers.Dense,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.ZeroPadding2D,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
)
# Layers that are the identity at prediction time (regularizers that are off outside training).
IDENTITY_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
)


# RANDOM_UNIFORM (and TF's RandomUniform) makes a float32 in [0, 1) from 23 random mantissa bits.
_UNIFORM_BITS = 23


def _dyadic_bits(rate: float) -> Optional[int]:
    """The smallest ``m`` with ``rate * 2**m`` an integer (``m <= 23``), else None."""
    for m in range(1, _UNIFORM_BITS + 1):
        scaled = rate * 2.0**m
        if scaled == int(scaled):
            return m
    return None


class _Builder:
    """Emits the graph's ops; counts the random ops to give each its own seed pair."""

    def __init__(self, num_samples: int, batch_size: int, seed: Optional[int]):
        self.s = num_samples
        self.b = batch_size
        self.seed = seed
        self._ops = 0

    def _seeds(self):
        self._ops += 1
        if self.seed is None:
            return 0, 0  # LiteRT (and TF) seed the op from the OS: a new stream per interpreter
        return self.seed, self._ops  # never (0, 0), which would mean "unseeded"

    def uniform(self, shape):
        seed, seed2 = self._seeds()
        return tf.raw_ops.RandomUniform(shape=shape, dtype=tf.float32, seed=seed, seed2=seed2)

    def normal(self, shape):
        """Standard normals; always an even count. LiteRT's RANDOM_STANDARD_NORMAL fills its output
        by Box-Muller pairs and, for an odd count, writes one float past the end of its buffer."""
        seed, seed2 = self._seeds()
        n = int(np.prod(shape))
        if n % 2 == 0:
            return tf.raw_ops.RandomStandardNormal(shape=shape, dtype=tf.float32, seed=seed, seed2=seed2)
        eps = tf.raw_ops.RandomStandardNormal(shape=[n + 1], dtype=tf.float32, seed=seed, seed2=seed2)
        return tf.reshape(eps[:n], shape)

    def noise_shape(self, h, shared: bool) -> list:
        """``[S * B, ...]`` noise for per-sample rows; ``[S, B * ...]`` for shared ``[B, ...]`` rows."""
        dims = h.shape.as_list()
        if shared:
            return [self.s, int(np.prod(dims))]
        return dims

    def spread(self, h, shared: bool):
        """``h`` viewed so that it broadcasts against :meth:`noise_shape` noise."""
        return tf.reshape(h, [1, -1]) if shared else h

    def rows(self, y, shared: bool, like):
        """Sampled values back to ``[S * B, ...]`` rows (sample-major)."""
        if shared:
            return tf.reshape(y, [self.s * self.b, *like.shape.as_list()[1:]])
        return y

    def keep_mask(self, shape, rate: float):
        """``shape`` independent Bernoulli(1 - rate) draws in {0, 1}, from as few uniforms as exact.

        A ``RANDOM_UNIFORM`` float is ``k * 2**-23`` with 23 random bits, and the reference kernel
        costs ~5 ns per number: most of an MC-dropout graph's time when every uniform makes one
        mask. When ``rate = r / 2**m`` (0.5, 0.25, 0.125, ...), a mask needs only ``m`` bits, so
        one uniform gives ``23 // m`` masks: ``f_j = frac(u * 2**(m j))`` holds bits
        ``m j + 1 ...`` of ``u`` and ``f_j >= rate`` reads exactly bits ``m j + 1 .. m j + m``
        (disjoint, hence independent). Every step is exact in float32. Other rates take one
        uniform per mask (``u >= rate``).
        """
        keep = 1.0 - rate
        bits = _dyadic_bits(rate)
        per = _UNIFORM_BITS // bits if bits else 1
        if per == 1:
            return tf.floor(self.uniform(shape) + keep)  # 1 where u >= rate, else 0
        n = int(np.prod(shape))
        count = -(-n // per)
        # [per, 1] x [1, count]: the long axis innermost broadcasts fast (XNNPACK); exact, as
        # multiplying by a power of two is.
        scales = tf.constant([[2.0 ** (bits * j)] for j in range(per)], tf.float32)
        v = scales * self.uniform([1, count])
        mask = tf.floor(v - tf.floor(v) + keep)  # frac(v) >= rate, exact for a dyadic rate
        mask = tf.reshape(mask, [-1])
        if count * per != n:
            mask = mask[:n]
        return tf.reshape(mask, shape)

    # -- stochastic layers -------------------------------------------------------------------
    def mc_dropout(self, layer, h, shared: bool):
        """Inverted dropout ``h / (1 - p) * mask`` with a fresh mask for every row."""
        rate = float(layer.rate)
        dims = h.shape.as_list()
        if rate == 0.0:
            return tf.tile(h, [self.s] + [1] * (len(dims) - 1)) if shared else h
        scaled = h * (1.0 / (1.0 - rate))  # on [B, ...] when shared: once, not S times
        noise = layer.noise_shape
        if noise is None and shared:
            y = tf.reshape(scaled, [1, -1]) * self.keep_mask([self.s, int(np.prod(dims))], rate)
        elif noise is None:
            y = scaled * self.keep_mask(dims, rate)
        else:
            # Keras semantics: a None dimension follows the input; the row dimension is always
            # per row here (each sample its own mask).
            kept = [d if n is None else int(n) for d, n in zip(dims[1:], list(noise)[1:])]
            if shared:
                y = tf.expand_dims(scaled, 0) * self.keep_mask([self.s, self.b, *kept], rate)
            else:
                y = scaled * self.keep_mask([dims[0], *kept], rate)
        return tf.reshape(y, [self.s * self.b, *dims[1:]])

    def variational(self, layer, h, shared: bool, conv_sampling: str):
        """One posterior sample per row of a VariationalDense / VariationalConv2D layer."""
        from tflbayes.layers import VariationalConv2D

        if isinstance(layer, VariationalConv2D):
            mode = conv_sampling
            if mode == "auto":
                mode = "local_reparameterization" if layer.estimator == "local_reparameterization" else "weights"
            if mode == "weights":
                y = self.conv_kernel_samples(layer, h, shared)
            else:
                y = self.local_reparameterization(layer, h, shared, _conv(layer))
        else:
            y = self.local_reparameterization(layer, h, shared, _matmul)
        if layer.activation is not None and layer.activation is not keras.activations.linear:
            y = layer.activation(y)
        return y

    def local_reparameterization(self, layer, h, shared: bool, linear):
        """``(h mu + b) + sqrt(h^2 sigma^2) * eps``, ``eps`` per row and output unit (Kingma et al. 2015).

        On shared ``[B, ...]`` rows both products run once; only ``eps`` is ``[S, B * ...]``.
        """
        mean = linear(h, tf.convert_to_tensor(layer.kernel_loc))
        if layer.bias is not None:
            mean = tf.nn.bias_add(mean, tf.convert_to_tensor(layer.bias))
        var_w = tf.square(tf.nn.softplus(tf.convert_to_tensor(layer.kernel_rho)))  # folded by the converter
        # relu: a free clamp of rounding below 0 (fused into CONV_2D / FULLY_CONNECTED).
        std = tf.sqrt(tf.nn.relu(linear(tf.square(h), var_w)))
        eps = self.normal(self.noise_shape(mean, shared))
        y = self.spread(mean, shared) + self.spread(std, shared) * eps
        return self.rows(y, shared, mean)

    def conv_kernel_samples(self, layer, h, shared: bool):
        """``conv(h, mu) + b + conv(h, sigma * eps_r)`` with a whole kernel ``eps_r`` per row.

        The exact predictive of a convolution's weight posterior: one kernel serves every pixel
        of a sample, as in the Flipout / reparameterization layers. The perturbation is a
        ``BATCH_MATMUL`` of the input's patches ``[rows, P, K]`` (strided slices + concat) with
        the per-row kernels ``[rows, K, C_out]``; on shared rows the patches are cut once and
        broadcast against ``[S, B, K, C_out]``.
        """
        kernel_std = tf.nn.softplus(tf.convert_to_tensor(layer.kernel_rho))
        kh, kw, cin, cout = layer.kernel_loc.shape.as_list()
        k = kh * kw * cin
        mean = _conv(layer)(h, tf.convert_to_tensor(layer.kernel_loc))
        if layer.bias is not None:
            mean = tf.nn.bias_add(mean, tf.convert_to_tensor(layer.bias))
        rows, ho, wo, _ = mean.shape.as_list()
        p = ho * wo
        patches = tf.reshape(_patches(h, layer, ho, wo), [rows, p, k])
        std = tf.reshape(kernel_std, [k, cout])
        if shared:
            kernels = std * self.normal([self.s, rows, k, cout])
            y = tf.reshape(mean, [1, rows, p, cout]) + tf.matmul(tf.expand_dims(patches, 0), kernels)
        else:
            kernels = std * self.normal([rows, k, cout])
            y = tf.reshape(mean, [rows, p, cout]) + tf.matmul(patches, kernels)
        return tf.reshape(y, [self.s * self.b, ho, wo, cout])


def _matmul(x, w):
    if x.shape.rank == 2:
        return tf.matmul(x, w)
    return tf.tensordot(x, w, [[x.shape.rank - 1], [0]])


def _conv(layer):
    def linear(x, w):
        return tf.nn.conv2d(x, w, strides=list(layer.strides), padding=layer.padding.upper())

    return linear


def _patches(x, layer, ho: int, wo: int):
    """``[N, ho, wo, kh * kw * C]``: every output pixel's input window, in the kernel's (i, j, c)
    order, from PAD + STRIDED_SLICE + CONCATENATION (EXTRACT_IMAGE_PATCHES is not a builtin)."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    _, hi, wi, _ = x.shape.as_list()
    if layer.padding == "same":
        ph = max((ho - 1) * sh + kh - hi, 0)
        pw = max((wo - 1) * sw + kw - wi, 0)
        if ph or pw:
            x = tf.pad(x, [[0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]])
    windows = [
        x[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return windows[0] if len(windows) == 1 else tf.concat(windows, axis=-1)


def build_stochastic(posterior, num_samples: int, batch_size: int = 1, head: bool = True,
                     member_probs: bool = False, *, seed: Optional[int] = None,
                     conv_sampling: str = "auto", part: str = "all"):
    """A ``tf.function`` that draws ``num_samples`` posterior samples of a stochastic posterior per call.

    Args:
        posterior: a :class:`~tflbayes.posterior.StochasticPosterior` (MC dropout or mean-field VI)
            whose model is a Sequential or chain-like functional model.
        num_samples: S, samples drawn per call (per LiteRT invoke).
        batch_size: B, the static batch size of the input ``x``.
        head: return the uncertainty head (``probs``, ``total``, ``aleatoric``, ``epistemic``);
            ``False`` returns ``{"logits": [S, B, C]}``.
        member_probs: with the head, also return the per-sample probabilities ``[S, B, C]``
            (ignored without the head).
        seed: ``None`` (default): the random ops carry no seed and LiteRT seeds each from the OS
            when the interpreter prepares it, so every interpreter draws a different stream. An
            integer: fixed per-op seeds, so every interpreter of the model repeats one stream.
        conv_sampling: how :class:`~tflbayes.layers.VariationalConv2D` layers are sampled, one of
            :data:`CONV_SAMPLING`: ``"auto"`` (default) the layer's own model (LRT if it was trained
            with ``estimator="local_reparameterization"``, else one kernel draw per sample);
            ``"local_reparameterization"``; ``"weights"``. Dense layers always use LRT (exact).
        part: ``"all"`` (default) the whole graph; ``"prefix"`` only the deterministic layers before
            the first stochastic one, returning ``{"features": [B, ...]}`` (what an int8 / Edge TPU
            body runs); ``"suffix"`` the rest, taking ``features`` as its input (float, on the CPU:
            random ops have no int8 kernels).

    Returns:
        A ``tf.function`` with ``input_signature=[tf.TensorSpec([B, *input_shape], tf.float32,
        name="x")]`` returning a dict of tensors. The posterior's variables are read when the
        function is traced (``get_concrete_function``); conversion freezes them.

    Raises:
        ConversionError: the model has a layer the graph cannot run (named), is not chain-like,
            has no stochastic layer, or its input shape is not fully known.
        InvalidInputError: ``num_samples`` or ``batch_size`` is not a positive integer, or
            ``seed`` / ``conv_sampling`` is invalid.
    """
    from tflbayes.layers import VARIATIONAL_LAYERS, MCDropout

    s = check_positive_int("num_samples", num_samples)
    b = check_positive_int("batch_size", batch_size)
    if conv_sampling not in CONV_SAMPLING:
        raise InvalidInputError(
            f"Invalid value received for argument `conv_sampling`. Expected one of {CONV_SAMPLING}. "
            f"Received: conv_sampling={conv_sampling!r}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise InvalidInputError(
            f"Invalid value received for argument `seed`. Expected an integer or None. Received: seed={seed!r}"
        )
    model = getattr(posterior, "model", None)
    if not isinstance(model, keras.Model) or getattr(posterior, "kind", None) != "stochastic":
        raise ConversionError(
            f"build_stochastic needs a StochasticPosterior (MC dropout or VI); received "
            f"{type(posterior).__name__}. Convert ensembles with the batched or members modes."
        )
    input_shape = tuple(posterior.input_shape)
    if any(d is None for d in input_shape):
        raise ConversionError(f"The model's input shape {input_shape} is not fully known; give every dimension.")

    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ConversionError(
            f"Model {model.name!r} is a subclassed {type(model).__name__}; the stochastic graph needs a "
            "Sequential or functional model."
        )
    layers = chain_layers(model)  # raises ConversionError for a non-chain graph
    plan = []
    for layer in layers:
        if type(layer) is MCDropout:
            plan.append(("dropout", layer))
        elif type(layer) in VARIATIONAL_LAYERS:
            plan.append(("variational", layer))
        elif type(layer) in IDENTITY_LAYERS:
            continue
        elif type(layer) in DETERMINISTIC_LAYERS:
            plan.append(("keras", layer))
        else:
            raise ConversionError(
                f"Layer {layer.name!r} ({type(layer).__name__}) is not supported by the stochastic graph. "
                f"Supported: MCDropout, VariationalDense, VariationalConv2D, "
                f"{', '.join(c.__name__ for c in DETERMINISTIC_LAYERS)} and the dropout/noise layers "
                "that are off at prediction time."
            )
    if not any(kind != "keras" for kind, _ in plan):
        raise ConversionError(
            f"Model {model.name!r} has no stochastic layer (MCDropout, VariationalDense, VariationalConv2D): "
            "every sample would be the same."
        )
    num_classes = int(posterior.num_classes)
    if part not in ("all", "prefix", "suffix"):
        raise InvalidInputError(f"Invalid value received for argument `part`. Expected 'all', 'prefix' or 'suffix'. "
                                f"Received: part={part!r}")
    n_prefix = next(i for i, (kind, _) in enumerate(plan) if kind != "keras")
    if part != "all":
        if n_prefix == 0:
            raise ConversionError(
                f"Model {model.name!r} samples from its first layer: there is no deterministic prefix to run "
                "in int8. Use precision 'float32', 'float16' or 'dynamic', or train with layers='last'."
            )
        prefix = [layer for _, layer in plan[:n_prefix]]

        @tf.function(input_signature=[tf.TensorSpec([b, *input_shape], tf.float32, name="x")], autograph=False)
        def prefix_fn(x):
            h = x
            for layer in prefix:
                h = layer(h, training=False)
            return {"features": h}

        if part == "prefix":
            return prefix_fn
        feat_shape = prefix_fn.get_concrete_function().structured_outputs["features"].shape.as_list()
        plan, input_spec = plan[n_prefix:], tf.TensorSpec(feat_shape, tf.float32, name="features")
    else:
        input_spec = tf.TensorSpec([b, *input_shape], tf.float32, name="x")

    @tf.function(input_signature=[input_spec], autograph=False)
    def stochastic(x):
        g = _Builder(s, b, seed)
        h, shared = x, True  # shared: [B, ...], the same for every sample
        for kind, layer in plan:
            if kind == "keras":
                h = layer(h, training=False)
            elif kind == "dropout":
                h, shared = g.mc_dropout(layer, h, shared), False
            else:
                h, shared = g.variational(layer, h, shared, conv_sampling), False
        logits = tf.reshape(h, [s, b, num_classes])
        if not head:
            return {"logits": logits}
        return head_from_logits(logits, member_probs=member_probs)

    return stochastic
