"""Tests of tflbayes.metrics against hand-computed values, scikit-learn and TFP."""
import json
import math

import numpy as np
import pytest

from tflbayes import metrics
from tflbayes.errors import InvalidInputError
from tflbayes.metrics import (
    accuracy,
    brier,
    ece,
    evaluate,
    evaluate_prediction,
    misclassification_auroc,
    nll,
    ood_aupr,
    ood_auroc,
)
from tflbayes.uncertainty import Prediction, prediction_from_samples


def _random_probs(rng, n, c, sharp=3.0):
    logits = rng.normal(size=(n, c)) * sharp
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _samples(rng, s, n, c):
    return np.stack([_random_probs(rng, n, c) for _ in range(s)])


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("seed, n, c, num_bins", [(0, 500, 10, 15), (1, 300, 3, 10), (2, 64, 2, 5)])
def test_ece_matches_tfp(seed, n, c, num_bins):
    tfp = pytest.importorskip("tensorflow_probability")
    rng = np.random.default_rng(seed)
    probs = _random_probs(rng, n, c)
    # labels drawn from the probs, mixed with some noise: a realistically miscalibrated model.
    # TFP wants float32 logits; log-probs are logits (softmax(log p) = p).
    y = np.array([rng.choice(c, p=0.7 * p + 0.3 / c) for p in probs])
    ref = tfp.stats.expected_calibration_error(
        num_bins, logits=np.log(probs).astype(np.float32), labels_true=y.astype(np.int64)
    )
    assert float(ref) > 0.02  # a non-trivial case
    assert ece(probs, y, num_bins=num_bins) == pytest.approx(float(ref), abs=1e-6)


def test_ece_hand_computed_and_confidence_one():
    # bins of width 0.5: confidences 0.6, 0.9 and 1.0 all fall in the last bin
    probs = np.array([[0.6, 0.4], [0.1, 0.9], [1.0, 0.0], [0.45, 0.55]])
    y = np.array([0, 0, 0, 1])
    # last bin holds all 4: mean conf (.6+.9+1+.55)/4 = .7625, accuracy 3/4
    assert ece(probs, y, num_bins=2) == pytest.approx(abs(0.75 - 0.7625))
    # perfectly confident and right: zero
    assert ece(np.eye(3), [0, 1, 2]) == 0.0


def test_nll_matches_sklearn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    probs = _random_probs(rng, 200, 5)
    y = rng.integers(0, 5, 200)
    assert nll(probs, y) == pytest.approx(log_loss(y, probs, labels=range(5)), rel=1e-12)
    assert nll([[0.5, 0.5], [0.25, 0.75]], [0, 1]) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)


def test_nll_clips_zero_probability():
    assert nll([[1.0, 0.0]], [1]) == pytest.approx(-math.log(1e-12))


def test_brier_hand_computed_and_binary_sklearn():
    from sklearn.metrics import brier_score_loss

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 1])
    by_hand = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert brier(probs, y) == pytest.approx(by_hand)
    # two classes: the multiclass Brier sums both (identical) squared errors = 2 x sklearn's
    rng = np.random.default_rng(1)
    p = _random_probs(rng, 100, 2)
    yb = rng.integers(0, 2, 100)
    assert brier(p, yb) == pytest.approx(2 * brier_score_loss(yb, p[:, 1]))


def test_accuracy():
    assert accuracy([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], [0, 0, 1]) == pytest.approx(2 / 3)


def test_misclassification_auroc_hand_case():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 0])  # rows 1 and 3 are wrong
    # errors uncertain, correct ones sure: perfect ranking
    assert misclassification_auroc(probs, y, [0.1, 0.9, 0.2, 0.8]) == 1.0
    # reversed ranking
    assert misclassification_auroc(probs, y, [0.9, 0.1, 0.8, 0.2]) == 0.0
    # 3 of the 4 (wrong, right) pairs ordered right
    assert misclassification_auroc(probs, y, [0.1, 0.9, 0.5, 0.3]) == pytest.approx(0.75)
    # undefined without errors
    assert math.isnan(misclassification_auroc(probs, [0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]))


def test_ood_auroc_and_aupr_hand_case():
    score_in, score_out = [0.1, 0.4], [0.35, 0.8]
    # pairs (in, out): (.1,.35) (.1,.8) (.4,.8) right, (.4,.35) wrong
    assert ood_auroc(score_in, score_out) == pytest.approx(0.75)
    # ranked: .8 out (P=1, R=.5), .4 in, .35 out (P=2/3, R=1): AP = .5*1 + .5*2/3
    assert ood_aupr(score_in, score_out) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert ood_auroc([0, 0, 0], [1, 1]) == 1.0 and ood_aupr([0, 0, 0], [1, 1]) == 1.0
    assert ood_auroc([1.0, 1.0], [1.0]) == 0.5


def test_all_return_plain_floats():
    rng = np.random.default_rng(0)
    p = _random_probs(rng, 50, 4)
    y = rng.integers(0, 4, 50)
    u = rng.uniform(size=50)
    values = [accuracy(p, y), nll(p, y), brier(p, y), ece(p, y),
              misclassification_auroc(p, y, u), ood_auroc(u, u + 1), ood_aupr(u, u + 1)]
    assert all(type(v) is float for v in values)


# --------------------------------------------------------------------------- validation


_BAD = {
    "probs 1d": (np.array([0.5, 0.5]), [0]),
    "probs one class": (np.ones((3, 1)), [0, 0, 0]),
    "probs nan": (np.array([[np.nan, 1.0]]), [0]),
    "probs not summing": (np.array([[0.5, 0.2]]), [0]),
    "probs negative": (np.array([[1.5, -0.5]]), [0]),
    "labels too many": (np.array([[0.5, 0.5]]), [0, 1]),
    "labels out of range": (np.array([[0.5, 0.5]]), [2]),
    "labels negative": (np.array([[0.5, 0.5]]), [-1]),
    "labels fractional": (np.array([[0.5, 0.5]]), [0.5]),
    "labels strings": (np.array([[0.5, 0.5]]), ["a"]),
    "labels 2d": (np.array([[0.5, 0.5]]), [[0]]),
}


@pytest.mark.parametrize("case", sorted(_BAD))
@pytest.mark.parametrize("fn", [accuracy, nll, brier, ece])
def test_bad_inputs_raise(fn, case):
    probs, y = _BAD[case]
    with pytest.raises(InvalidInputError):
        fn(probs, y)


def test_bad_scores_and_bins():
    p, y = np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([1, 1])
    with pytest.raises(InvalidInputError, match="num_bins"):
        ece(p, y, num_bins=0)
    with pytest.raises(InvalidInputError, match="score"):
        misclassification_auroc(p, y, [0.1])
    with pytest.raises(InvalidInputError, match="score_in"):
        ood_auroc([np.nan], [1.0])
    with pytest.raises(InvalidInputError, match="score_out"):
        ood_aupr([0.1], [])


# --------------------------------------------------------------------------- evaluate


class _FakeModel:
    """Posterior stand-in: a fixed Prediction per input set, recording how it was called."""

    def __init__(self, preds, epistemic=True):
        self.preds = preds
        self.calls = []
        self.epistemic = epistemic

    def predict(self, x, num_samples=None):
        self.calls.append((len(x), num_samples))
        pred = self.preds[len(x)]
        if not self.epistemic:
            pred = Prediction(pred.probs, pred.total, None, None)
        return pred


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    pred_in = prediction_from_samples(_samples(rng, 5, 40, 3))
    pred_out = prediction_from_samples(_samples(rng, 5, 25, 3))
    y = rng.integers(0, 3, 40)
    return pred_in, pred_out, y


def test_evaluate_prediction_values(setup):
    pred_in, pred_out, y = setup
    r = evaluate_prediction(pred_in, y, pred_out)
    assert set(r) == {"accuracy", "nll", "brier", "ece", "misclassification_auroc",
                      "ood_auroc_total", "ood_auroc_epistemic", "ood_aupr_total", "ood_aupr_epistemic"}
    p = pred_in.probs
    assert r["accuracy"] == accuracy(p, y)
    assert r["nll"] == nll(p, y)
    assert r["brier"] == brier(p, y)
    assert r["ece"] == ece(p, y, num_bins=15)
    assert r["misclassification_auroc"] == misclassification_auroc(p, y, pred_in.total)
    assert r["ood_auroc_total"] == ood_auroc(pred_in.total, pred_out.total)
    assert r["ood_auroc_epistemic"] == ood_auroc(pred_in.epistemic, pred_out.epistemic)
    assert r["ood_aupr_total"] == ood_aupr(pred_in.total, pred_out.total)
    assert r["ood_aupr_epistemic"] == ood_aupr(pred_in.epistemic, pred_out.epistemic)
    assert all(type(v) is float for v in r.values())
    json.dumps(r, allow_nan=False)


def test_evaluate_prediction_without_ood_or_epistemic(setup):
    pred_in, pred_out, y = setup
    assert set(evaluate_prediction(pred_in, y)) == {"accuracy", "nll", "brier", "ece", "misclassification_auroc"}
    no_epi = Prediction(pred_in.probs, pred_in.total, None, None)
    r = evaluate_prediction(no_epi, y, pred_out)
    assert r["ood_auroc_epistemic"] is None and r["ood_aupr_epistemic"] is None
    assert type(r["ood_auroc_total"]) is float
    # all correct: misclassification AUROC is undefined -> None (JSON null, not NaN)
    r = evaluate_prediction(pred_in, pred_in.label)
    assert r["accuracy"] == 1.0 and r["misclassification_auroc"] is None
    json.dumps(r, allow_nan=False)


def test_evaluate_calls_model_and_matches_evaluate_prediction(setup):
    pred_in, pred_out, y = setup
    model = _FakeModel({40: pred_in, 25: pred_out})
    x_in, x_out = np.zeros((40, 4)), np.zeros((25, 4))
    r = evaluate(model, x_in, y, x_ood=x_out)
    assert r == evaluate_prediction(pred_in, y, pred_out)
    assert model.calls == [(40, None), (25, None)]
    evaluate(model, x_in, y, num_samples=7)
    assert model.calls[-1] == (40, 7)
    # a model whose predict takes no num_samples works when none is asked for
    class Plain:
        def predict(self, x):
            return pred_in

    assert evaluate(Plain(), x_in, y)["accuracy"] == accuracy(pred_in.probs, y)
    r = evaluate(_FakeModel({40: pred_in, 25: pred_out}, epistemic=False), x_in, y, x_ood=x_out)
    assert r["ood_auroc_epistemic"] is None


def test_evaluate_bad_inputs(setup):
    pred_in, pred_out, y = setup
    model = _FakeModel({40: pred_in, 25: pred_out})
    with pytest.raises(InvalidInputError, match="model"):
        evaluate(object(), np.zeros((40, 4)), y)
    with pytest.raises(InvalidInputError, match="y_test"):
        evaluate(model, np.zeros((40, 4)), y[:-1])
    with pytest.raises(InvalidInputError, match="num_samples"):
        evaluate(model, np.zeros((40, 4)), y, num_samples=0)
    with pytest.raises(InvalidInputError, match="pred_in"):
        evaluate_prediction(pred_in.probs, y)
    with pytest.raises(InvalidInputError, match="y"):
        evaluate_prediction(pred_in, np.full(40, 3))
    four_class = prediction_from_samples(_samples(np.random.default_rng(1), 2, 5, 4))
    with pytest.raises(InvalidInputError, match="classes"):
        evaluate_prediction(pred_in, y, four_class)
    bad_total = Prediction(pred_in.probs, np.full(40, np.nan), None, None)
    with pytest.raises(InvalidInputError, match="total"):
        evaluate_prediction(bad_total, y)


def test_public_api_and_no_tensorflow_import():
    assert set(metrics.__all__) >= {"accuracy", "nll", "brier", "ece", "misclassification_auroc",
                                    "ood_auroc", "ood_aupr", "evaluate", "evaluate_prediction"}
    import ast
    import inspect

    import tflbayes.metrics.plots as plots_mod
    import tflbayes.metrics.quality as quality_mod

    for mod in (metrics, quality_mod, plots_mod):
        tree = ast.parse(inspect.getsource(mod))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"tensorflow", "tf_keras", "tensorflow_probability"}, mod.__name__
