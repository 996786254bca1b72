"""``tb.fit``: one entry point that turns a deterministic Keras builder into a Posterior."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from tflbayes._checks import check_inputs, check_labels, check_options, check_positive_float, check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.methods.budget import check_epochs, is_auto
from tflbayes.methods.registry import METHODS, TrainConfig

# importing the method modules registers them
from tflbayes.methods import dropout as _dropout  # noqa: F401,E402
from tflbayes.methods import ensemble as _ensemble  # noqa: F401,E402
from tflbayes.methods import variational as _variational  # noqa: F401,E402
from tflbayes.methods import sampling as _sampling  # noqa: F401,E402  (sgld, sghmc, csgmcmc, snapshot, subspace)
from tflbayes.methods import batch_ensemble, laplace, mimo  # noqa: F401,E402  (single-pass, Laplace)
from tflbayes.methods.sampling.likelihoods import check_targets  # noqa: E402

__all__ = ["fit", "METHODS"]


def fit(build_model: Callable, data, method: str = "deep_ensemble", *, epochs="auto", batch_size: int = 64,
        learning_rate: float = 1e-3, validation_data=None, callbacks: Sequence = (), verbose: int = 1,
        seed: Optional[int] = 0, strategy=None, class_names: Optional[Sequence[str]] = None, **options):
    """Train an approximate posterior with the Keras API.

    Args:
        build_model: zero-argument function returning a deterministic Sequential or functional
            Keras model (from ``tflbayes._keras`` / ``tf_keras``) that outputs logits.
        data: ``(x, y)`` arrays (inputs, integer labels) or a :class:`tflbayes.data.Dataset`
            (its training split and class names are used).
        method: one of ``tflbayes.METHODS`` (``"mc_dropout"``, ``"variational"``,
            ``"deep_ensemble"``, and the sampling methods).
        epochs: ``"auto"`` (default) or an integer. ``"auto"`` adapts the budget to the data
            (:mod:`tflbayes.methods.budget`): mc_dropout / variational / deep_ensemble train until the
            NLL on held-out rows (``validation_data``, else 15 % of the training rows) stops
            improving, between a floor of 500 and a ceiling of 20,000 optimizer steps, and restore
            the best weights; the SG-MCMC methods run ``burn_in + thinning × num_samples`` steps.
            What ran is recorded in ``posterior.options`` (``steps_run``, ``epochs_run``,
            ``stopped_by``, ...). An integer trains exactly that many epochs.
        batch_size, learning_rate: the usual Keras training options.
        validation_data: optional ``(x_val, y_val)`` passed to ``model.fit``.
        callbacks: extra Keras callbacks, run alongside tflbayes's own.
        verbose: 0 silent, 1 Keras progress bars.
        seed: seeds initialisation, shuffling and dropout (None: not seeded).
        strategy: a ``tf.distribute.Strategy``; models are built and trained under its scope.
        class_names: class names (default: the dataset's, else "0".."C-1").
        **options: method options; unknown ones raise ``ValueError`` listing the valid ones.

    Returns:
        A :class:`~tflbayes.posterior.Posterior`.

    Example:
        >>> post = tb.fit(build, (x, y), method="deep_ensemble", members=5, epochs=10)  # doctest: +SKIP
    """
    if method not in METHODS:
        raise InvalidInputError(
            f"Invalid value received for argument `method`. Expected one of {', '.join(sorted(METHODS))}. "
            f"Received: method={method!r}"
        )
    spec = METHODS[method]
    check_options(options, spec.defaults, f"method {method!r}")
    if not callable(build_model):
        raise InvalidInputError("`build_model` must be a zero-argument function that returns a Keras model.")
    if hasattr(data, "x_train"):
        x, y = data.x_train, data.y_train
        class_names = class_names if class_names is not None else getattr(data, "class_names", None)
    else:
        try:
            x, y = data
        except (TypeError, ValueError):
            raise InvalidInputError("`data` must be a tuple (x, y) or a tflbayes Dataset.") from None
    x = check_inputs(x, (None,) * (max(getattr(x, "ndim", 2), 2) - 1), "x")
    regression = {**spec.defaults, **options}.get("likelihood") == "regression"
    y = check_targets(y, len(x)) if regression else check_labels(y, len(x))
    if validation_data is not None:
        xv, yv = validation_data
        xv = check_inputs(xv, x.shape[1:], "validation_data[0]")
        yv = (check_targets(yv, len(xv), "validation_data[1]") if regression
              else check_labels(yv, len(xv), name="validation_data[1]"))
        validation_data = (xv, yv)
    cfg = TrainConfig(
        epochs=check_epochs(epochs),
        batch_size=check_positive_int("batch_size", batch_size),
        learning_rate=check_positive_float("learning_rate", learning_rate),
        validation_data=validation_data,
        callbacks=list(callbacks or ()),
        verbose=int(verbose),
        seed=seed,
        strategy=strategy,
        class_names=list(class_names) if class_names is not None else None,
    )
    post = spec.train(build_model, x, y, cfg, **{**spec.defaults, **options})
    if is_auto(cfg.epochs) and cfg.runs:
        post.options.update(_run_record(cfg.runs))
    return post


def _run_record(runs: list) -> dict:
    """One training run's record as it is; several (ensemble members): one list per key."""
    if len(runs) == 1:
        return {"epochs": "auto", **runs[0]}
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {"epochs": "auto", **{k: [r[k] for r in runs] for k in keys}}
