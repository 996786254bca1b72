"""Tests of tflbayes.metrics.plots: real image files, atomic writes, validation."""
from pathlib import Path

import numpy as np
import pytest

from tflbayes.errors import InvalidInputError
from tflbayes.metrics.plots import comparison_plots, reliability_diagram, uncertainty_histogram
from tflbayes.uncertainty import Prediction, prediction_from_samples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _probs(rng, n, c):
    logits = rng.normal(size=(n, c)) * 2
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _assert_png(path):
    path = Path(path)
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000  # a drawn figure, not an empty canvas
    # atomic write: no temporary file left next to it
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture(scope="module")
def preds():
    rng = np.random.default_rng(0)
    pin = prediction_from_samples(np.stack([_probs(rng, 80, 4) for _ in range(5)]))
    pout = prediction_from_samples(np.stack([_probs(rng, 30, 4) for _ in range(5)]))
    y = rng.integers(0, 4, 80)
    return pin, pout, y


def test_reliability_diagram_writes_png(tmp_path, preds):
    pin, _, y = preds
    out = reliability_diagram(pin.probs, y, tmp_path / "sub" / "rel.png", num_bins=10, title="test")
    assert out == tmp_path / "sub" / "rel.png"
    _assert_png(out)


def test_reliability_diagram_other_formats_and_overwrite(tmp_path, preds):
    pin, _, y = preds
    svg = reliability_diagram(pin.probs, y, str(tmp_path / "rel.svg"))
    assert svg.read_text().lstrip().startswith("<?xml")
    target = tmp_path / "rel.png"
    target.write_bytes(b"old")
    _assert_png(reliability_diagram(pin.probs, y, target))


def test_reliability_diagram_all_correct(tmp_path):
    # a single correctness class must still draw (calibration_curve with only positives)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    _assert_png(reliability_diagram(probs, [0, 1, 0], tmp_path / "ok.png"))


def test_uncertainty_histogram(tmp_path, preds):
    pin, pout, _ = preds
    _assert_png(uncertainty_histogram(pin.epistemic, pout.epistemic, tmp_path / "epi.png"))
    _assert_png(uncertainty_histogram(pin.total, None, tmp_path / "tot.png", label="total (nats)",
                                      title="in only"))
    _assert_png(uncertainty_histogram(np.zeros(5), np.zeros(3), tmp_path / "const.png"))


def test_comparison_plots(tmp_path, preds):
    pin, pout, y = preds
    student = Prediction(pin.probs, pin.total, None, None)  # no epistemic part
    paths = comparison_plots(
        {"deep ensemble": (pin, pout, y), "bdk/student": (student, None, y)}, tmp_path / "plots"
    )
    names = [Path(p).name for p in paths]
    assert names == ["reliability_deep_ensemble.png", "epistemic_deep_ensemble.png",
                     "reliability_bdk_student.png", "total_bdk_student.png"]
    for p in paths:
        _assert_png(p)


def test_comparison_plots_name_clash(tmp_path, preds):
    pin, pout, y = preds
    paths = comparison_plots({"a b": (pin, pout, y), "a/b": (pin, pout, y)}, tmp_path)
    assert len({str(p) for p in paths}) == 4


def test_bad_inputs(tmp_path, preds):
    pin, pout, y = preds
    with pytest.raises(InvalidInputError, match="path"):
        reliability_diagram(pin.probs, y, tmp_path / "rel.nope")
    with pytest.raises(InvalidInputError, match="path"):
        uncertainty_histogram(pin.total, None, tmp_path / "no_suffix")
    with pytest.raises(InvalidInputError):
        reliability_diagram(pin.probs, y[:-1], tmp_path / "r.png")
    with pytest.raises(InvalidInputError, match="num_bins"):
        reliability_diagram(pin.probs, y, tmp_path / "r.png", num_bins=0)
    with pytest.raises(InvalidInputError, match="u_out"):
        uncertainty_histogram(pin.total, [np.nan], tmp_path / "u.png")
    with pytest.raises(InvalidInputError, match="results"):
        comparison_plots({}, tmp_path)
    with pytest.raises(InvalidInputError, match="results"):
        comparison_plots({"x": (pin, y)}, tmp_path)
    with pytest.raises(InvalidInputError, match="results"):
        comparison_plots({"x": (pin.probs, None, y)}, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
