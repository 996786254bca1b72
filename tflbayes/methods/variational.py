"""Mean-field Gaussian variational inference (Blundell et al. 2015, "Weight Uncertainty in NNs")."""
from __future__ import annotations

from tflbayes._checks import check_choice, check_positive_float, check_positive_int
from tflbayes.methods import _train
from tflbayes.methods.registry import register_method
from tflbayes.methods.transform import to_variational
from tflbayes.posterior import StochasticPosterior

LAYER_CHOICES = ("all", "last")


@register_method(
    "variational",
    defaults={"estimator": "flipout", "prior_std": 1.0, "kl_weight": None, "init_std": 1e-3,
              "layers": "all", "num_samples": 32},
    summary="mean-field Gaussian weights trained by the ELBO (Flipout / reparameterization / LRT)",
)
def train_variational(build_model, x, y, cfg, estimator="flipout", prior_std=1.0, kl_weight=None,
                      init_std=1e-3, layers="all", num_samples=32):
    """Maximise the ELBO  E_q[log p(D|W)] - KL(q(W) || p(W)).

    Dense/Conv2D layers become :class:`~tflbayes.layers.VariationalDense` /
    :class:`~tflbayes.layers.VariationalConv2D` with ``q(w) = N(μ, softplus(ρ)²)`` per weight and
    prior ``N(0, prior_std²)``. Keras minimises the mean cross-entropy over a mini-batch, so the
    KL is scaled by ``kl_weight = 1 / N_train`` (the per-example ELBO); pass ``kl_weight`` to
    change it (e.g. < 1/N for a tempered posterior).

    Options:
        estimator: ``"flipout"`` (default; random signs from the builtin RANDOM_UNIFORM op),
            ``"reparameterization"`` or ``"local_reparameterization"``.
        prior_std, kl_weight, init_std: see above; ``init_std`` is the initial posterior std.
        layers: ``"all"`` or ``"last"`` (a last-layer posterior on a deterministic body).
        num_samples: default S at prediction time.
    """
    from tflbayes.layers import ESTIMATORS

    check_choice("estimator", estimator, ESTIMATORS)
    check_choice("layers", layers, LAYER_CHOICES)
    check_positive_float("prior_std", prior_std)
    check_positive_float("init_std", init_std)
    check_positive_int("num_samples", num_samples)
    kl = 1.0 / len(x) if kl_weight is None else check_positive_float("kl_weight", kl_weight, allow_zero=True)
    _train.set_seed(cfg.seed)
    with _train.scope(cfg.strategy):
        model = to_variational(_train.build(build_model, x.shape[1:], y), layers=layers, estimator=estimator,
                               prior_std=float(prior_std), kl_weight=kl, init_std=float(init_std))
        _train.compile_classifier(model, cfg.learning_rate)
    _train.train(model, x, y, cfg, what="variational model")
    options = {"estimator": estimator, "prior_std": float(prior_std), "kl_weight": kl,
               "init_std": float(init_std), "layers": layers, "num_samples": int(num_samples)}
    return StochasticPosterior(model, "variational", options, cfg.class_names)
