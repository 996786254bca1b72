"""Last-layer Laplace: curvature, marginal likelihood, probit / bridge / MC predictives, bundles."""
from __future__ import annotations

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.methods.laplace import curvature, log_marginal_likelihood
from tflbayes.posterior.base import softmax

EPOCHS = 3


@pytest.fixture(scope="module")
def laplace_diag(digits, mlp_builder):
    return tb.fit(mlp_builder, digits, method="laplace", structure="diag", epochs=EPOCHS, verbose=0)


@pytest.fixture(scope="module")
def laplace_kron(digits, mlp_builder):
    return tb.fit(mlp_builder, digits, method="laplace", structure="kron", epochs=EPOCHS, verbose=0)


def test_diag_curvature_is_the_diagonal_of_the_exact_ggn():
    rng = np.random.default_rng(0)
    n, d, c = 20, 3, 4
    phi, logits, y = rng.normal(size=(n, d)), rng.normal(size=(n, c)), rng.integers(0, c, n)
    p = softmax(logits)
    phit = np.concatenate([phi, np.ones((n, 1))], 1)
    exact = sum(np.kron(np.outer(phit[i], phit[i]), np.diag(p[i]) - np.outer(p[i], p[i])) for i in range(n))
    h = curvature(phi, logits, y, "diag")["h"]
    np.testing.assert_allclose(h.reshape(-1), np.diag(exact), rtol=1e-10)
    k = curvature(phi, logits, y, "kron")
    a_mat = (k["u_a"] * k["a"]) @ k["u_a"].T
    g_mat = (k["u_g"] * k["g"]) @ k["u_g"].T
    np.testing.assert_allclose(a_mat, phit.T @ phit, atol=1e-10)
    lam = np.mean([np.diag(p[i]) - np.outer(p[i], p[i]) for i in range(n)], axis=0)
    np.testing.assert_allclose(g_mat, lam, atol=1e-12)


def test_marglik_gradient_is_the_derivative_and_optimisers_agree():
    rng = np.random.default_rng(1)
    eig = rng.gamma(1.0, 10.0, 200)
    v, g = log_marginal_likelihood(0.3, -100.0, 50.0, eig)
    v2, _ = log_marginal_likelihood(0.3 + 1e-6, -100.0, 50.0, eig)
    assert abs((v2 - v) / 1e-6 - g) < 1e-3
    from tflbayes.methods.laplace import _tune
    grid, grad = _tune(-100.0, 50.0, eig, "grid"), _tune(-100.0, 50.0, eig, "gradient")
    assert abs(np.log(grid) - np.log(grad)) <= 0.5 * np.log(1e8) / 80 + 1e-6  # within half a grid step


def test_probit_matches_mc_within_approximation_and_mc_error(laplace_diag, digits):
    x = digits.x_test[:60]
    probit = laplace_diag.predict(x).probs
    s = 20000
    mc = laplace_diag.sample_probs(x, num_samples=s, seed=0)
    mean, se = mc.mean(0), mc.std(0) / np.sqrt(s)
    diff = np.abs(probit - mean)
    # MC error is <= 4 SE; the probit approximation (MacKay) itself is not exact: measured
    # mean |Δp| ~ 0.005, max ~ 0.08 on these digits. Tolerance: mean 0.015, max 0.15 beyond 4 SE.
    assert np.all(diff <= 0.15 + 4 * se)
    assert diff.mean() <= 0.015
    assert (probit.argmax(1) == mean.argmax(1)).mean() >= 0.95


def test_kron_samples_have_the_full_logit_covariance(laplace_kron, digits):
    x = digits.x_test[:5]
    f = laplace_kron.sample_logits(x, num_samples=20000, seed=3)
    mu, var = laplace_kron.moments(x)
    np.testing.assert_allclose(f.mean(0), mu, atol=5 * np.sqrt(var.max() / 20000))
    np.testing.assert_allclose(f.var(0), var, rtol=0.06)
    # off-diagonal covariance exists (KFAC's G couples the classes)
    cov = np.cov(f[:, 0].T)
    assert np.abs(cov - np.diag(np.diag(cov))).max() > 0.05 * np.diag(cov).max()


def test_prior_precision_is_tuned_and_recorded(laplace_kron):
    o = laplace_kron.options
    assert o["prior_precision_tuning"] == "grid" and 1e-4 <= o["prior_precision"] <= 1e4
    assert np.isfinite(o["log_marginal_likelihood"])


def test_bridge_gives_a_closed_form_decomposition(laplace_diag, digits, x_noise):
    br = laplace_diag.with_link("bridge")
    p_in, p_ood = br.predict(digits.x_test), br.predict(x_noise)
    assert p_in.epistemic is not None and np.all(p_in.epistemic >= 0)
    assert p_ood.epistemic.mean() > p_in.epistemic.mean()
    assert laplace_diag.predict(digits.x_test).epistemic is None  # probit: predictive only


@pytest.mark.parametrize("link", ["probit", "bridge"])
def test_bundle_matches_keras(laplace_kron, digits, tmp_path, link):
    post = laplace_kron.with_link(link)
    b = tb.convert(post, tmp_path / link, calibration=(digits.x_test[:50], digits.y_test[:50]))
    assert b.manifest["mode"] == "single_pass"
    assert not any("RANDOM" in o for ops in b.manifest["ops"].values() for o in ops)
    x = digits.x_test[50:80]
    np.testing.assert_allclose(b.predict(x).probs, post.predict(x).probs, atol=1e-4)
    q = tb.convert(post, tmp_path / f"{link}8", precision="int8", representative_data=digits.x_train[:200])
    assert (q.predict(x).probs.argmax(1) == post.predict(x).probs.argmax(1)).mean() >= 0.9


def test_mc_link_is_refused_by_convert(laplace_diag, tmp_path):
    with pytest.raises(tb.ConversionError, match="with_link"):
        tb.convert(laplace_diag.with_link("mc"), tmp_path / "mc")


def test_save_load_round_trip(laplace_kron, digits, tmp_path):
    laplace_kron.save(tmp_path / "lap")
    back = tb.load(tmp_path / "lap")
    assert back.kind == "laplace" and back.options["structure"] == "kron"
    np.testing.assert_allclose(back.moments(digits.x_test[:10])[1], laplace_kron.moments(digits.x_test[:10])[1],
                               rtol=1e-6)


def test_bad_inputs(digits):
    from tflbayes._keras import keras

    def softmax_out():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])

    with pytest.raises(tb.InvalidInputError, match="logits"):
        tb.fit(softmax_out, digits, method="laplace", epochs=1, verbose=0)
    with pytest.raises(tb.InvalidInputError, match="structure"):
        tb.fit(softmax_out, digits, method="laplace", epochs=1, verbose=0, structure="full")
    with pytest.raises(tb.InvalidInputError, match="prior_precision"):
        tb.laplace(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), (np.zeros((4, 3)), np.zeros(4, int)),
                   prior_precision=-1.0)


def test_a_stored_unknown_link_is_named(laplace_diag, tmp_path):
    import json
    import warnings

    laplace_diag.save(tmp_path / "lap")
    meta_path = tmp_path / "lap" / "posterior.json"
    meta = json.loads(meta_path.read_text())
    meta["options"]["link"] = "bogus"
    meta.pop("fields_sha256", None)  # as if written before field digests: the options check must catch it
    meta_path.write_text(json.dumps(meta))
    with warnings.catch_warnings(), pytest.raises(tb.PosteriorFormatError, match="link"):
        warnings.simplefilter("ignore")
        tb.load(tmp_path / "lap")


def test_prior_precision_on_validation_data(digits, ensemble, mlp_builder):
    n = len(digits.x_test) // 2
    val = (digits.x_test[:n], digits.y_test[:n])
    model = ensemble.member_model(0)  # a trained MAP network
    tuned = tb.laplace(model, (digits.x_train, digits.y_train), structure="diag", prior_precision="val",
                       validation_data=val)
    marg = tb.laplace(model, (digits.x_train, digits.y_train), structure="diag")
    assert tuned.options["prior_precision_tuning"] == "validation"
    val_nll = lambda p: tb.metrics.nll(p.predict(val[0]).probs, val[1])  # noqa: E731
    assert val_nll(tuned) <= val_nll(marg) + 1e-9  # both on the same grid; val picks the best there
    with pytest.raises(tb.InvalidInputError, match="validation_data"):
        tb.fit(mlp_builder, digits, method="laplace", epochs=1, verbose=0, prior_precision="val")


def test_bridge_bundle_runs_on_tflite_micro(laplace_diag, digits, tmp_path):
    # no random op, builtins TFLite Micro has: the closed-form head converts for microcontrollers
    post = laplace_diag.with_link("bridge")
    b = tb.convert(post, tmp_path / "micro", target="micro", precision="int8",
                   representative_data=digits.x_train[:200], calibration=(digits.x_test[:60], digits.y_test[:60]))
    assert b.manifest["verification"]["passed"]
    assert (tmp_path / "micro" / "micro").is_dir()
