"""tb.calibrate: temperature scaling folded into the posterior, kept after save/load and in bundles."""
from __future__ import annotations

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.calibration import tempered_probs


@pytest.fixture(scope="module")
def underconfident(digits, mlp_builder):
    # a Laplace posterior after 3 epochs is underconfident (ECE ~0.15): what temperature scaling fixes
    return tb.fit(mlp_builder, digits, method="laplace", structure="diag", epochs=3, verbose=0)


def _halves(ds):
    n = len(ds.x_test) // 2
    return (ds.x_test[:n], ds.y_test[:n]), (ds.x_test[n:], ds.y_test[n:])


def test_temperature_lowers_ece_and_nll_on_held_out_data(underconfident, digits):
    val, test = _halves(digits)
    cal = tb.calibrate(underconfident, val)
    before = tb.metrics.evaluate(underconfident, *test)
    after = tb.metrics.evaluate(cal, *test)
    assert after["ece"] < 0.7 * before["ece"]
    assert after["nll"] < before["nll"]
    assert after["accuracy"] == pytest.approx(before["accuracy"], abs=0.02)
    assert cal.options["temperature"] < 1.0  # underconfident: sharpen
    assert cal.options["calibration"]["nll_after"] <= cal.options["calibration"]["nll_before"]


def test_fold_is_exact(ensemble, digits):
    val, _ = _halves(digits)
    cal = tb.calibrate(ensemble, val)
    t = cal.options["temperature"]
    assert "folded" in cal.options["calibration"]["applied"]
    want = tempered_probs(ensemble, digits.x_test[:40])(t)
    np.testing.assert_allclose(cal.predict(digits.x_test[:40]).probs, want, atol=1e-5)


def test_kept_after_save_load_and_in_the_bundle(ensemble, digits, tmp_path):
    val, test = _halves(digits)
    cal = tb.calibrate(ensemble, val)
    cal.save(tmp_path / "cal")
    back = tb.load(tmp_path / "cal")
    assert back.options["temperature"] == pytest.approx(cal.options["temperature"])
    np.testing.assert_allclose(back.predict(test[0]).probs, cal.predict(test[0]).probs, atol=1e-6)
    b = tb.convert(back, tmp_path / "bundle")
    assert b.manifest["provenance"]["options"]["temperature"] == pytest.approx(cal.options["temperature"])
    np.testing.assert_allclose(b.predict(test[0][:40]).probs, cal.predict(test[0][:40]).probs, atol=1e-4)


def test_temperature_layer_when_the_logits_are_not_a_dense_output(digits):
    from tflbayes._keras import keras

    def build():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10),
                                 keras.layers.Activation("linear")])

    post = tb.fit(build, digits, method="deep_ensemble", members=1, epochs=1, verbose=0)
    cal = tb.calibrate(post, _halves(digits)[0])
    assert cal.options["calibration"]["applied"] == "TemperatureScale layer appended"
    want = tempered_probs(post, digits.x_test[:20])(cal.options["temperature"])
    np.testing.assert_allclose(cal.predict(digits.x_test[:20]).probs, want, atol=1e-5)


def test_temperature_scale_round_trip():
    from tflbayes.layers import TemperatureScale

    layer = TemperatureScale(2.5)
    again = TemperatureScale.from_config(layer.get_config())
    assert again.temperature == 2.5
    np.testing.assert_allclose(again(np.ones((1, 3), np.float32)).numpy(), 0.4)
    with pytest.raises(tb.InvalidInputError):
        TemperatureScale(0.0)


def test_bad_inputs(ensemble, digits):
    with pytest.raises(tb.InvalidInputError, match="method"):
        tb.calibrate(ensemble, _halves(digits)[0], method="platt")
    with pytest.raises(tb.InvalidInputError):
        tb.calibrate(ensemble, (digits.x_test[:10], digits.y_test[:5]))
    with pytest.raises(tb.InvalidInputError, match="Posterior"):
        tb.calibrate("not a posterior", _halves(digits)[0])


def test_cli_calibrate(ensemble, tmp_path):
    from click.testing import CliRunner

    from tflbayes.cli.main import cli

    ensemble.save(tmp_path / "ens")
    res = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "ens"), "--data", "digits"])
    assert res.exit_code == 0, res.output
    assert "T = " in res.output and "wrote" in res.output
    assert "temperature" in tb.load(tmp_path / "ens-calibrated").options
    bad = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_variational_last_layer_absorbs_the_temperature(digits, mlp_builder):
    post = tb.fit(mlp_builder, digits, method="variational", epochs=1, verbose=0, num_samples=4)
    cal = tb.calibrate(post, _halves(digits)[0], num_samples=4)
    assert "folded" in cal.options["calibration"]["applied"]
    x = digits.x_test[:20]
    want = tempered_probs(post, x, num_samples=4, seed=5)(cal.options["temperature"])
    np.testing.assert_allclose(cal.sample_probs(x, num_samples=4, seed=5).mean(0), want, atol=1e-4)
