"""MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation")."""
from __future__ import annotations

from tflbayes._checks import check_choice, check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.methods import _train
from tflbayes.methods.registry import register_method
from tflbayes.methods.transform import to_mc_dropout
from tflbayes.posterior import StochasticPosterior

LAYER_CHOICES = ("all", "last")


@register_method(
    "mc_dropout",
    defaults={"rate": None, "layers": "all", "num_samples": 32},
    summary="dropout kept on at prediction time; each forward pass is a posterior sample",
)
def train_mc_dropout(build_model, x, y, cfg, rate=None, layers="all", num_samples=32):
    """Train with dropout and keep it on at prediction time.

    Dropout with keep probability ``1 - p`` on the inputs of each weight layer is variational
    inference with a Bernoulli-mixture approximate posterior; ``S`` stochastic forward passes
    estimate the posterior predictive ``p(y|x) ≈ 1/S Σ_s softmax(f(x; W ⊙ z_s))``.

    Options:
        rate: dropout probability (default: the model's own Dropout rates, 0.25 where inserted).
        layers: ``"all"`` or ``"last"`` (only the input of the last layer is dropped).
        num_samples: default S at prediction time.
    """
    check_choice("layers", layers, LAYER_CHOICES)
    check_positive_int("num_samples", num_samples)
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1):
        raise InvalidInputError(
            f"Invalid value received for argument `rate`. Expected a float between 0 and 1. Received: rate={rate!r}"
        )
    _train.set_seed(cfg.seed)
    with _train.scope(cfg.strategy):
        model = to_mc_dropout(_train.build(build_model, x.shape[1:], y), rate=rate, layers=layers)
        _train.compile_classifier(model, cfg.learning_rate)
    _train.train(model, x, y, cfg, what="MC dropout model")
    options = {"rate": rate, "layers": layers, "num_samples": int(num_samples)}
    return StochasticPosterior(model, "mc_dropout", options, cfg.class_names)
