"""``tb.calibrate``: post-hoc temperature scaling (Guo et al. 2017) for every kind of posterior.

(The module is ``tflbayes.calibration``, so that ``tflbayes.calibrate`` stays the function.)

Every posterior sample's logits are divided by one temperature ``T`` fitted on held-out data by
minimising the negative log-likelihood of the posterior predictive,

    T* = argmin_T  -sum_n log p_T(y_n | x_n),   p_T = mean_s softmax(l_s(x) / T)

(bounded scalar search in ``ln T``, ``scipy.optimize.minimize_scalar``). What "the logits" are:

- ensembles, stochastic (MC dropout / VI) and single-pass (MIMO, BatchEnsemble) posteriors: each
  sample's logits (the stochastic passes are drawn once, with a fixed seed, for the fit);
- EnD² students: the alpha logits ``z`` (``alpha = exp(clip(z / T))``, so the mean is
  ``softmax(z / T)`` inside the clip range);
- BDK / GPED students: the predictive logits (the distilled expectation heads are unchanged);
- last-layer Laplace: the Gaussian logits ``f / T``: mean ``/ T``, variances ``/ T²``, through the
  posterior's link.

The temperature is *folded into the weights* wherever the logits come out of a linear layer (Dense,
VariationalDense, BatchEnsemble, the Laplace head, also behind a Reshape or member untiling):
exact, and every later stage (save/load, conversion to every bundle, the device) uses the
calibrated posterior without knowing. Otherwise a :class:`~tflbayes.layers.TemperatureScale` layer
(a MUL by ``1/T``) is appended to the model. ``options["temperature"]`` records ``T`` (the total, if
a calibrated posterior is calibrated again) and is carried into every bundle's manifest
(``provenance.options``).

Example:
    >>> cal = tb.calibrate(post, (x_val, y_val))                 # doctest: +SKIP
    >>> cal.options["temperature"]                               # doctest: +SKIP
    1.7
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from tflbayes._checks import check_choice, check_inputs, check_labelled, check_positive_int
from tflbayes._keras import keras, tf
from tflbayes.errors import InvalidInputError
from tflbayes.posterior.base import forward, softmax

__all__ = ["calibrate", "METHODS", "tempered_probs"]

METHODS = ("temperature",)
_BOUNDS = (0.05, 20.0)


def _nll(probs, y) -> float:
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-300))))


def _mean_softmax(logit_samples):
    return lambda t: softmax(logit_samples / t).mean(axis=0)


def tempered_probs(posterior, x, num_samples=None, seed: int = 0):
    """A function ``T -> [N, C]`` predictive probabilities of ``posterior`` on ``x`` at temperature ``T``
    (module docstring), computed from one pass over ``x``."""
    kind = posterior.kind
    x = check_inputs(x, posterior.input_shape, "x")
    if kind == "ensemble":
        s = posterior.num_samples if num_samples is None else num_samples
        logits = []
        for ws in posterior.members[:s]:
            posterior.model.set_weights(ws)
            logits.append(forward(posterior.model, x))
        return _mean_softmax(np.stack(logits))
    if kind == "stochastic":
        s = posterior.num_samples if num_samples is None else num_samples
        tf.random.set_seed(seed)
        return _mean_softmax(np.stack([forward(posterior.model, x) for _ in range(int(s))]))
    if kind == "single_pass":
        return _mean_softmax(posterior.logits(x))
    if kind == "dirichlet":
        from tflbayes.posterior.dirichlet import alpha_from_logits

        z = forward(posterior.model, x)

        def dirichlet(t):
            a = alpha_from_logits(z / t)
            return a / a.sum(axis=-1, keepdims=True)

        return dirichlet
    if kind == "distilled":
        z = forward(posterior.model, x)[:, : posterior.num_classes]
        return lambda t: softmax(z / t)
    if kind == "laplace":
        from tflbayes.posterior.dirichlet import alpha_from_logits
        from tflbayes.posterior.laplace import bridge_log_alpha, probit_probs

        if posterior.link == "mc":
            return _mean_softmax(posterior.sample_logits(x, num_samples, seed))
        mu, var = posterior.moments(x)
        if posterior.link == "probit":
            return lambda t: probit_probs(mu / t, var / t ** 2)

        def bridge(t):
            a = alpha_from_logits(bridge_log_alpha(mu / t, var / t ** 2))
            return a / a.sum(axis=-1, keepdims=True)

        return bridge
    raise InvalidInputError(f"tb.calibrate does not know posteriors of kind {kind!r} ({type(posterior).__name__}).")


# -- folding 1/T into the weights ------------------------------------------------------------------
def _output_layer(model):
    return model.layers[-1]


def _producer(container, layer):
    """The layer of ``container`` whose output feeds ``layer`` (None if it is fed by an Input)."""
    for cand in container.layers:
        if cand is layer or isinstance(cand, keras.layers.InputLayer):
            continue
        try:  # the output of the layer's last call (a nested model's call output is not its .output)
            out = cand.get_output_at(-1)
        except (AttributeError, RuntimeError, ValueError, IndexError):
            continue
        if out is layer.input:
            return cand
    return None


def _logit_layer(model):
    """The layer that computes the logits, through nested models and shape-only layers."""
    from tflbayes.layers.single_pass import UntileMembers

    container, layer = model, _output_layer(model)
    while True:
        if isinstance(layer, keras.Model):
            container, layer = layer, _output_layer(layer)
        elif type(layer) in (keras.layers.Reshape, UntileMembers):
            prev = _producer(container, layer)
            if prev is None:
                return None
            layer = prev
        else:
            return layer


def _linear(layer) -> bool:
    return keras.activations.serialize(getattr(layer, "activation", None) or keras.activations.linear) == "linear"


def _fold_rules(layer, num_classes, distilled):
    """``[(variable, transform)]`` that divide ``layer``'s outputs by T, or None if it cannot absorb T."""
    from tflbayes.layers import VariationalDense

    if hasattr(layer, "temperature_weights"):
        if hasattr(layer, "member_activation") and not _linear_member(layer):
            return None
        return [(v, lambda w, t, p=p: w * (1.0 / t) ** p) for v, p in layer.temperature_weights()]
    if type(layer) is keras.layers.Dense and _linear(layer):
        cols = num_classes if distilled else None

        def scale(w, t):
            w = w.copy()
            w[..., :cols] = w[..., :cols] / t
            return w

        return [(layer.kernel, scale)] + ([(layer.bias, scale)] if layer.use_bias else [])
    if type(layer) is VariationalDense and _linear(layer) and not distilled:
        def rho(w, t):
            sigma = np.logaddexp(0.0, w.astype(np.float64)) / t
            return (sigma + np.log(-np.expm1(-sigma))).astype(np.float32)  # softplus^-1

        rules = [(layer.kernel_loc, lambda w, t: w / t), (layer.kernel_rho, rho)]
        return rules + ([(layer.bias, lambda w, t: w / t)] if getattr(layer, "bias", None) is not None else [])
    return None


def _linear_member(layer) -> bool:
    act = getattr(layer, "member_activation", None)
    return act is not None and keras.activations.serialize(act) == "linear"


def _rebuild(posterior, model, sets, options):
    from tflbayes.posterior import EnsemblePosterior

    model.set_weights(sets[0])
    if posterior.kind == "ensemble":
        return EnsemblePosterior(model, sets, posterior.method, options, posterior.class_names, mask=posterior.mask)
    return type(posterior)(model, posterior.method, options, posterior.class_names)


def _apply(posterior, t: float):
    """A new posterior of the same kind whose logits are divided by ``t``; and how it was applied."""
    import tflbayes.layers  # noqa: F401  (registers the custom layers for model_from_json)
    from tflbayes.layers.single_pass import TemperatureScale

    model = keras.models.model_from_json(posterior.model.to_json())
    sets = [[np.array(w, dtype=np.float32, copy=True) for w in ws] for ws in posterior.weight_sets()]
    layer = _logit_layer(posterior.model)
    rules = None if layer is None else _fold_rules(layer, posterior.num_classes, posterior.kind == "distilled")
    if rules is not None:
        index = {id(v): i for i, v in enumerate(posterior.model.weights)}
        for ws in sets:
            for v, fn in rules:
                i = index[id(v)]
                ws[i] = np.asarray(fn(ws[i], t), dtype=np.float32)
        return model, sets, f"folded into layer {layer.name!r}"
    if posterior.kind not in ("ensemble", "stochastic", "single_pass"):
        raise InvalidInputError(
            f"Cannot apply a temperature to this {type(posterior).__name__}: its last layer "
            f"({getattr(layer, 'name', None)!r}) is not a linear layer that outputs the logits.")
    model.set_weights(sets[0])
    wrapped = keras.Model(model.inputs, TemperatureScale(t, name="temperature_scale")(model.outputs[0]))
    return wrapped, sets, "TemperatureScale layer appended"


def calibrate(posterior, data, method: str = "temperature", *, num_samples=None, seed: int = 0):
    """Fit a temperature on held-out ``data`` and return the calibrated posterior (module docstring).

    Args:
        posterior: any :class:`~tflbayes.posterior.Posterior` (ensemble, stochastic, single-pass,
            Laplace, Dirichlet or distilled student).
        data: ``(x_val, y_val)``, held-out inputs and integer labels (not the training data).
        method: ``"temperature"``.
        num_samples: S used to fit (stochastic / MC posteriors; default the posterior's).
        seed: seeds the fixed samples of stochastic / MC posteriors during the fit.

    Returns:
        A new posterior of the same kind; ``options["temperature"]`` is the fitted ``T`` and
        ``options["calibration"]`` the validation NLL before and after.

    Raises:
        InvalidInputError: bad ``data`` / ``method``, or a posterior whose logits cannot be tempered.
    """
    from tflbayes.posterior.base import Posterior

    if not isinstance(posterior, Posterior):
        raise InvalidInputError(f"`posterior` must be a tflbayes Posterior. Received: {type(posterior).__name__}")
    check_choice("method", method, METHODS)
    if num_samples is not None:
        num_samples = check_positive_int("num_samples", num_samples)
    x, y = check_labelled(data, posterior.input_shape, posterior.num_classes, "data")
    probs_at = tempered_probs(posterior, x, num_samples, seed)
    before = _nll(probs_at(1.0), y)
    res = minimize_scalar(lambda lt: _nll(probs_at(math.exp(lt)), y), bounds=tuple(np.log(_BOUNDS)),
                          method="bounded", options={"xatol": 1e-5})
    t = float(math.exp(res.x))
    after = _nll(probs_at(t), y)
    if after > before:  # the search is bounded and unimodal in practice; never return a worse fit
        t, after = 1.0, before
    model, sets, how = _apply(posterior, t)
    total = t * float(posterior.options.get("temperature", 1.0))
    options = {**posterior.options, "temperature": total,
               "calibration": {"method": method, "temperature": t, "num_inputs": int(len(x)),
                               "nll_before": before, "nll_after": after, "applied": how}}
    return _rebuild(posterior, model, sets, options)
