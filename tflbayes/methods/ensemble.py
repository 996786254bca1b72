"""Deep ensembles (Lakshminarayanan et al. 2017)."""
from __future__ import annotations

from tflbayes._checks import check_positive_int
from tflbayes.methods import _train
from tflbayes.methods.registry import register_method
from tflbayes.posterior import EnsemblePosterior


@register_method(
    "deep_ensemble",
    defaults={"members": 5},
    summary="S independently initialised networks, each trained with its own shuffling",
)
def train_deep_ensemble(build_model, x, y, cfg, members=5):
    """Train ``members`` networks from independent random initialisations and data orders.

    The ensemble's predictive is the average of the members' softmax outputs; the spread of the
    members is the knowledge (epistemic) uncertainty.

    Options:
        members: S, the number of networks (default 5).
    """
    s = check_positive_int("members", members)
    weights, model = [], None
    for i in range(s):
        if cfg.verbose:
            print(f"deep_ensemble: member {i + 1}/{s}")
        _train.set_seed(None if cfg.seed is None else cfg.seed + 1000 * i)
        with _train.scope(cfg.strategy):
            model = _train.build(build_model, x.shape[1:], y)
            _train.compile_classifier(model, cfg.learning_rate)
        _train.train(model, x, y, cfg, what=f"ensemble member {i}")
        weights.append(model.get_weights())
    return EnsemblePosterior(model, weights, "deep_ensemble", {"members": s}, cfg.class_names)
