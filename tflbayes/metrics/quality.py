"""Quality metrics of a predictive distribution: fit, calibration and OOD detection.

All functions take numpy arrays and return plain Python floats; no TensorFlow.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from tflbayes._checks import as_float_array, check_classification, check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.uncertainty.decompose import Prediction

__all__ = [
    "accuracy",
    "nll",
    "brier",
    "ece",
    "misclassification_auroc",
    "ood_auroc",
    "ood_aupr",
    "evaluate",
    "evaluate_prediction",
]

_CLIP = 1e-12


# --------------------------------------------------------------------------- validation


def _check_probs(probs, name: str = "probs") -> np.ndarray:
    p = as_float_array(probs, name)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected an array of shape [N, C] with "
            f"N >= 1 and C >= 2. Received: shape={p.shape}"
        )
    if not np.all(np.isfinite(p)):
        raise InvalidInputError(f"Invalid value received for argument `{name}`: it contains NaN or inf.")
    if np.any(p < -1e-6) or np.any(np.abs(p.sum(-1) - 1.0) > 1e-3):
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected probabilities (non-negative, rows "
            f"summing to 1). Received: min={p.min():.3g}, row sums in "
            f"[{p.sum(-1).min():.4g}, {p.sum(-1).max():.4g}]"
        )
    return np.clip(p, 0.0, 1.0)


def _check_labels(y, n: int, num_classes: int, name: str = "y") -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected {n} labels of shape [{n}] "
            f"(one per row of probs). Received: shape={a.shape}"
        )
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected integer class labels. "
            f"Received: dtype={a.dtype}"
        )
    if n and (a.min() < 0 or a.max() >= num_classes):
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected labels in 0..{num_classes - 1}. "
            f"Received: labels in {int(a.min())}..{int(a.max())}"
        )
    return a.astype(np.int64)


def _check_scores(score, name: str, n: Optional[int] = None) -> np.ndarray:
    s = as_float_array(score, name)
    if s.ndim != 1 or s.shape[0] < 1 or (n is not None and s.shape[0] != n):
        want = f"[{n}]" if n is not None else "[N] with N >= 1"
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected a 1-D array of shape {want}. "
            f"Received: shape={s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise InvalidInputError(f"Invalid value received for argument `{name}`: it contains NaN or inf.")
    return s


def _probs_and_labels(probs, y):
    p = _check_probs(probs)
    return p, _check_labels(y, p.shape[0], p.shape[1])


# --------------------------------------------------------------------------- fit


def accuracy(probs, y) -> float:
    """Fraction of inputs whose most probable class is the label.

    Example:
        >>> accuracy([[0.9, 0.1], [0.4, 0.6]], [0, 0])
        0.5
    """
    p, y = _probs_and_labels(probs, y)
    return float(np.mean(np.argmax(p, axis=-1) == y))


def nll(probs, y) -> float:
    """Mean negative log-likelihood ``-1/N sum_n log p_n[y_n]`` (nats), probs clipped at 1e-12.

    Example:
        >>> round(nll([[0.5, 0.5], [0.25, 0.75]], [0, 1]), 4)   # (log 2 + log 4/3) / 2
        0.4904
    """
    p, y = _probs_and_labels(probs, y)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _CLIP, 1.0))))


def brier(probs, y) -> float:
    """Multiclass Brier score ``1/N sum_n sum_c (p_nc - [y_n = c])^2`` (Brier 1950), in [0, 2].

    Example:
        >>> brier([[1.0, 0.0], [0.5, 0.5]], [0, 0])
        0.25
    """
    p, y = _probs_and_labels(probs, y)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=-1)))


def ece(probs, y, num_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017, eq. 3).

    ``ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` over ``num_bins`` equal-width bins of
    the confidence ``max_c p_c`` on [0, 1] (a confidence of exactly 1 falls in the last bin),
    the same estimator as ``tfp.stats.expected_calibration_error``.

    Example:
        >>> ece([[0.9, 0.1], [0.8, 0.2]], [0, 1], num_bins=10)   # (|1-.9| + |0-.8|) / 2
        0.45
    """
    num_bins = check_positive_int("num_bins", num_bins)
    p, y = _probs_and_labels(probs, y)
    pred = np.argmax(p, axis=-1)
    conf = p[np.arange(len(y)), pred]
    correct = (pred == y).astype(np.float64)
    bins = np.clip(np.floor(conf * num_bins).astype(np.int64), 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins).astype(np.float64)
    sum_conf = np.bincount(bins, weights=conf, minlength=num_bins)
    sum_correct = np.bincount(bins, weights=correct, minlength=num_bins)
    nonzero = count > 0
    gap = np.abs(sum_correct[nonzero] - sum_conf[nonzero])  # = |B| * |acc - conf|
    return float(np.sum(gap) / len(y))


# --------------------------------------------------------------------------- ranking


def _auroc(labels: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, score))


def misclassification_auroc(probs, y, score) -> float:
    """AUROC of ``score`` for telling misclassified inputs (positives) from correct ones.

    0.5 is chance, 1.0 means every error is more uncertain than every correct prediction.

    Args:
        probs: ``[N, C]`` predictive probabilities.
        y: ``[N]`` labels.
        score: ``[N]`` uncertainty, higher = less sure (e.g. ``Prediction.total``).

    Returns:
        The AUROC, or ``nan`` when every prediction is right (or every one wrong), where it
        is undefined.

    Example:
        >>> misclassification_auroc([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]], [0, 1, 1], [0.1, 0.9, 0.5])
        1.0
    """
    p, y = _probs_and_labels(probs, y)
    s = _check_scores(score, "score", len(y))
    wrong = (np.argmax(p, axis=-1) != y).astype(np.int64)
    if wrong.min() == wrong.max():
        return math.nan
    return _auroc(wrong, s)


def _ood_labels(score_in, score_out):
    s_in = _check_scores(score_in, "score_in")
    s_out = _check_scores(score_out, "score_out")
    labels = np.concatenate([np.zeros(len(s_in), np.int64), np.ones(len(s_out), np.int64)])
    return labels, np.concatenate([s_in, s_out])


def ood_auroc(score_in, score_out) -> float:
    """AUROC of an uncertainty score for detecting OOD inputs (OOD = positive class).

    Example:
        >>> ood_auroc([0.1, 0.2, 0.6], [0.5, 0.9])   # 5 of 6 (in, out) pairs ordered right
        0.8333333333333334
    """
    labels, scores = _ood_labels(score_in, score_out)
    return _auroc(labels, scores)


def ood_aupr(score_in, score_out) -> float:
    """Area under the precision-recall curve for OOD detection (OOD = positive class).

    Computed as ``sklearn.metrics.average_precision_score`` (step-wise, no interpolation).
    Chance level is the OOD fraction ``len(score_out) / (len(score_in) + len(score_out))``.

    Example:
        >>> ood_aupr([0.1, 0.2], [0.5, 0.9])
        1.0
    """
    from sklearn.metrics import average_precision_score

    labels, scores = _ood_labels(score_in, score_out)
    return float(average_precision_score(labels, scores))


# --------------------------------------------------------------------------- all at once


def _check_prediction(pred, name: str) -> Prediction:
    if not all(hasattr(pred, a) for a in ("probs", "total", "epistemic")):
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected a tflbayes Prediction "
            f"(probs, total, aleatoric, epistemic). Received: {type(pred).__name__}"
        )
    return pred


def _json_float(v: float) -> Optional[float]:
    v = float(v)
    return None if math.isnan(v) else v


def evaluate_prediction(pred_in: Prediction, y, pred_ood: Optional[Prediction] = None) -> dict:
    """All quality metrics from precomputed predictions.

    Args:
        pred_in: prediction on the in-distribution test inputs.
        y: ``[N]`` their labels.
        pred_ood: prediction on OOD inputs, or ``None``.

    Returns:
        A JSON-able dict of plain floats: ``accuracy``, ``nll``, ``brier``, ``ece``,
        ``misclassification_auroc`` (score = total uncertainty; ``None`` when undefined, i.e.
        no errors or no correct predictions) and, with ``pred_ood``, ``ood_auroc_total``,
        ``ood_auroc_epistemic``, ``ood_aupr_total``, ``ood_aupr_epistemic`` (the epistemic
        ones are ``None`` where a prediction has no epistemic part).

    Example:
        >>> import numpy as np
        >>> from tflbayes.uncertainty import prediction_from_samples
        >>> pred = prediction_from_samples(np.array([[[0.9, 0.1], [0.2, 0.8]]]))
        >>> evaluate_prediction(pred, [0, 1])["accuracy"]
        1.0
    """
    pred_in = _check_prediction(pred_in, "pred_in")
    p, labels = _probs_and_labels(pred_in.probs, y)
    total_in = _check_scores(pred_in.total, "pred_in.total", len(labels))
    out = {
        "accuracy": accuracy(p, labels),
        "nll": nll(p, labels),
        "brier": brier(p, labels),
        "ece": ece(p, labels),
        "misclassification_auroc": _json_float(misclassification_auroc(p, labels, total_in)),
    }
    if pred_ood is not None:
        pred_ood = _check_prediction(pred_ood, "pred_ood")
        p_ood = _check_probs(pred_ood.probs, "pred_ood.probs")
        if p_ood.shape[1] != p.shape[1]:
            raise InvalidInputError(
                f"Invalid value received for argument `pred_ood`. Expected {p.shape[1]} classes like "
                f"pred_in. Received: probs.shape={p_ood.shape}"
            )
        total_out = _check_scores(pred_ood.total, "pred_ood.total", len(p_ood))
        out["ood_auroc_total"] = ood_auroc(total_in, total_out)
        out["ood_aupr_total"] = ood_aupr(total_in, total_out)
        if pred_in.epistemic is None or pred_ood.epistemic is None:
            out["ood_auroc_epistemic"] = None
            out["ood_aupr_epistemic"] = None
        else:
            epi_in = _check_scores(pred_in.epistemic, "pred_in.epistemic", len(labels))
            epi_out = _check_scores(pred_ood.epistemic, "pred_ood.epistemic", len(p_ood))
            out["ood_auroc_epistemic"] = ood_auroc(epi_in, epi_out)
            out["ood_aupr_epistemic"] = ood_aupr(epi_in, epi_out)
    return out


def evaluate(model, x_test, y_test, x_ood=None, num_samples: Optional[int] = None) -> dict:
    """Predict with ``model`` and compute every quality metric (see :func:`evaluate_prediction`).

    Args:
        model: anything with ``predict(x) -> Prediction``: a Posterior, a LiteRT bundle, ...
        x_test: in-distribution test inputs.
        y_test: ``[N]`` their labels.
        x_ood: OOD inputs (e.g. ``tflbayes.data.ood(ds, "noise")``), or ``None``.
        num_samples: passed on as ``model.predict(x, num_samples=num_samples)`` when given
            (stochastic posteriors); ``model.predict(x)`` otherwise.

    Returns:
        A JSON-able dict of plain floats (``None`` where a metric is not available).

    Example:
        >>> import tflbayes as tb
        >>> ds = tb.data.load("digits")
        >>> report = tb.metrics.evaluate(post, ds.x_test, ds.y_test,
        ...                              x_ood=tb.data.ood(ds, "noise"))  # doctest: +SKIP
        >>> report["ood_auroc_epistemic"]  # doctest: +SKIP
        0.97
    """
    check_classification(model, "tb.metrics.evaluate")
    if not callable(getattr(model, "predict", None)):
        raise InvalidInputError(
            "Invalid value received for argument `model`. Expected an object with a "
            f"predict(x) -> Prediction method. Received: {type(model).__name__}"
        )
    num_samples = check_positive_int("num_samples", num_samples, allow_none=True)
    n = len(x_test)
    if len(np.asarray(y_test).reshape(-1)) != n or np.asarray(y_test).ndim != 1:
        raise InvalidInputError(
            f"Invalid value received for argument `y_test`. Expected {n} labels, one per input of "
            f"x_test. Received: shape={np.shape(y_test)}"
        )
    kwargs = {} if num_samples is None else {"num_samples": int(num_samples)}
    pred_in = model.predict(x_test, **kwargs)
    pred_ood = None if x_ood is None else model.predict(x_ood, **kwargs)
    return evaluate_prediction(pred_in, y_test, pred_ood)
