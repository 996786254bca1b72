"""Mean-field Gaussian variational inference (Blundell et al. 2015, "Weight Uncertainty in NNs")."""
from __future__ import annotations

from tflbayes._checks import check_choice, check_positive_float, check_positive_int
from tflbayes.methods import training
from tflbayes.methods.registry import register_method
from tflbayes.methods.transform import VARIATIONAL_POLICIES, check_layers_option, to_variational, variational_summary
from tflbayes.posterior import StochasticPosterior

LAYER_CHOICES = VARIATIONAL_POLICIES


@register_method(
    "variational",
    defaults={"estimator": "flipout", "prior_std": 1.0, "kl_weight": None, "init_std": 1e-3,
              "layers": "all", "num_samples": 32},
    summary="mean-field Gaussian weights trained by the ELBO (Flipout / reparameterization / LRT)",
)
def train_variational(build_model, x, y, cfg, estimator="flipout", prior_std=1.0, kl_weight=None,
                      init_std=1e-3, layers="all", num_samples=32):
    """Maximise the ELBO  E_q[log p(D|W)] - KL(q(W) || p(W)).

    Dense / Conv1D / Conv2D / DepthwiseConv2D layers become :class:`~tflbayes.layers.VariationalDense`
    / ``VariationalConv1D`` / ``VariationalConv2D`` / ``VariationalDepthwiseConv2D`` with
    ``q(w) = N(μ, softplus(ρ)²)`` per weight and prior ``N(0, prior_std²)``; other weight layers
    (GRU, LSTM, SeparableConv2D, ...) stay deterministic. Keras minimises the mean cross-entropy
    over a mini-batch, so the KL is scaled by ``kl_weight = 1 / N_train`` (the per-example ELBO);
    pass ``kl_weight`` to change it (e.g. < 1/N for a tempered posterior).

    Options:
        estimator: ``"flipout"`` (default; random signs from the builtin RANDOM_UNIFORM op),
            ``"reparameterization"`` or ``"local_reparameterization"``.
        prior_std, kl_weight, init_std: see above; ``init_std`` is the initial posterior std.
        layers: ``"all"``, ``"last"`` (the last Dense: a last-layer posterior on a deterministic
            body, on any architecture) or a list of layer names.
        num_samples: default S at prediction time.

    The posterior's options record ``variational_layers`` and ``deterministic_layers`` (the
    weight layers left as they were).
    """
    from tflbayes.layers import ESTIMATORS

    check_choice("estimator", estimator, ESTIMATORS)
    layers = check_layers_option(layers, LAYER_CHOICES)
    check_positive_float("prior_std", prior_std)
    check_positive_float("init_std", init_std)
    check_positive_int("num_samples", num_samples)
    kl = 1.0 / len(x) if kl_weight is None else check_positive_float("kl_weight", kl_weight, allow_zero=True)
    training.set_seed(cfg.seed)
    with training.scope(cfg.strategy):
        model = to_variational(training.build(build_model, x.shape[1:], y), layers=layers, estimator=estimator,
                               prior_std=float(prior_std), kl_weight=kl, init_std=float(init_std))
        training.compile_classifier(model, cfg.learning_rate)
    which = variational_summary(model)
    if cfg.verbose:
        rest = f"; deterministic: {', '.join(which['deterministic'])}" if which["deterministic"] else ""
        print(f"variational (layers={layers!r}): {len(which['variational'])} variational layer(s): "
              f"{', '.join(which['variational'])}{rest}")
    training.train(model, x, y, cfg, what="variational model")
    options = {"estimator": estimator, "prior_std": float(prior_std), "kl_weight": kl,
               "init_std": float(init_std), "layers": layers, "num_samples": int(num_samples),
               "variational_layers": which["variational"], "deterministic_layers": which["deterministic"]}
    return StochasticPosterior(model, "variational", options, cfg.class_names)
