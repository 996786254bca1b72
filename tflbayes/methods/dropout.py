"""MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation")."""
from __future__ import annotations

from tflbayes._checks import check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.registry import register_method
from tflbayes.methods.transform import (DROPOUT_POLICIES, check_layers_option, dropout_summary,
                                        resolve_dropout_policy, to_mc_dropout)
from tflbayes.posterior import StochasticPosterior

LAYER_CHOICES = DROPOUT_POLICIES


@register_method(
    "mc_dropout",
    defaults={"rate": None, "layers": "auto", "num_samples": 32},
    summary="dropout kept on at prediction time; each forward pass is a posterior sample",
)
def train_mc_dropout(build_model, x, y, cfg, rate=None, layers="auto", num_samples=32):
    """Train with dropout and keep it on at prediction time.

    Dropout with keep probability ``1 - p`` on the inputs of each weight layer is variational
    inference with a Bernoulli-mixture approximate posterior; ``S`` stochastic forward passes
    estimate the posterior predictive ``p(y|x) ≈ 1/S Σ_s softmax(f(x; W ⊙ z_s))``.

    Options:
        rate: dropout probability (default: the model's own Dropout rates, 0.25 where inserted).
        layers: where the dropout goes (see :mod:`tflbayes.methods.transform`):
            ``"auto"`` (default: ``"all"`` on a plain Dense/Conv2D chain, else ``"head"``),
            ``"head"`` (the features feeding the trailing Dense layers, plus the model's own
            Dropout layers always-on: after the global pooling of a MobileNet / ResNet, after the
            GRU of a recurrent model), ``"all"`` (before every weight layer but the first),
            ``"last"`` (only the input of the last Dense) or a list of layer names.
        num_samples: default S at prediction time.

    The posterior's options record ``dropout_layers`` (the MCDropout layers), ``dropout_feeds``
    (the layers each one feeds) and ``dropout_policy`` (what ``"auto"`` resolved to).
    """
    layers = check_layers_option(layers, LAYER_CHOICES)
    check_positive_int("num_samples", num_samples)
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1):
        raise InvalidInputError(
            f"Invalid value received for argument `rate`. Expected a float between 0 and 1. Received: rate={rate!r}"
        )
    training.set_seed(cfg.seed)
    with training.scope(cfg.strategy):
        base = training.build(build_model, x.shape[1:], y)
        policy = resolve_dropout_policy(base, layers)
        model = to_mc_dropout(base, rate=rate, layers=layers)
        training.compile_classifier(model, cfg.learning_rate)
    where = dropout_summary(model)
    if cfg.verbose:
        feeds = "; ".join(f"{d} -> {', '.join(f)}" for d, f in where.items())
        print(f"mc_dropout (layers={layers!r}, policy {policy}): {len(where)} MCDropout layer(s): {feeds}")
    training.train(model, x, y, cfg, what="MC dropout model")
    options = {"rate": rate, "layers": layers, "num_samples": int(num_samples), "dropout_policy": policy,
               "dropout_layers": list(where), "dropout_feeds": {d: f for d, f in where.items()}}
    return StochasticPosterior(model, "mc_dropout", options, cfg.class_names)
