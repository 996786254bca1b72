"""Deep ensembles (Lakshminarayanan et al. 2017)."""
from __future__ import annotations

from tflbayes._checks import check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.registry import register_method
from tflbayes.posterior import EnsemblePosterior


@register_method(
    "deep_ensemble",
    defaults={"num_samples": None, "members": None},
    summary="S independently initialised networks, each trained with its own shuffling",
)
def train_deep_ensemble(build_model, x, y, cfg, num_samples=None, members=None):
    """Train S networks from independent random initialisations and data orders.

    The ensemble's predictive is the average of the members' softmax outputs; the spread of the
    members is the knowledge (epistemic) uncertainty.

    Options:
        num_samples: S, the number of networks (default 5).
        members: the same as ``num_samples`` (its older name); give one of the two.
    """
    s = resolve_num_samples(num_samples, members, "members", 5)
    weights, model = [], None
    for i in range(s):
        if cfg.verbose:
            print(f"deep_ensemble: member {i + 1}/{s}")
        training.set_seed(None if cfg.seed is None else cfg.seed + 1000 * i)
        with training.scope(cfg.strategy):
            model = training.build(build_model, x.shape[1:], y)
            training.compile_classifier(model, cfg.learning_rate)
        training.train(model, x, y, cfg, what=f"ensemble member {i}")
        weights.append(model.get_weights())
    return EnsemblePosterior(model, weights, "deep_ensemble", {"members": s, "num_samples": s}, cfg.class_names)


def resolve_num_samples(num_samples, alias, alias_name: str, default: int) -> int:
    """S from ``num_samples`` or its method-specific alias (``members``, ``cycles``): one of the two,
    or both equal; different values raise InvalidInputError."""
    if num_samples is not None and alias is not None and num_samples != alias:
        raise InvalidInputError(
            f"`num_samples` and `{alias_name}` both set the number of weight sets S and disagree: "
            f"num_samples={num_samples!r}, {alias_name}={alias!r}. Give one of them.")
    if num_samples is not None:
        return check_positive_int("num_samples", num_samples)
    return check_positive_int(alias_name, default if alias is None else alias)
