"""Verification of a converted bundle against its Keras posterior (runs at the end of every conversion).

Tolerances (documented in the README):

- float32: max |Δprob| ≤ 1e-4 and every uncertainty within 1e-4 nats of ``decompose`` on the
  Keras samples (Dirichlet and BDK/GPED students: of their ``predict``, the closed form / the
  distilled heads); argmax agreement 100 %.
- float16: max |Δprob| ≤ 1e-2, uncertainties within 2e-2 nats; argmax agreement ≥ 99 %.
- dynamic / int8 / edgetpu: argmax agreement ≥ 97 %.
- stochastic bundles: the sample mean of the bundle's probabilities over ≥ 512 draws per input
  equals the Keras Monte Carlo mean within a z-test (Bonferroni over inputs × classes, family
  error 1e-4, so a correct bundle fails 1 conversion in 10,000) plus a precision slack (0 for float32, 0.02 for float16, 0.05 for int8).
- every precision: the head's total / aleatoric / epistemic equal ``decompose`` of the bundle's
  own per-sample probabilities within 1e-4 nats (the head runs in float).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from tflbayes.errors import VerificationError
from tflbayes.uncertainty import decompose

__all__ = ["TOLERANCES", "verify_bundle", "z_test"]

TOLERANCES = {
    "float32": {"prob": 1e-4, "uncertainty": 1e-4, "argmax": 1.0, "slack": 0.0},
    "float16": {"prob": 1e-2, "uncertainty": 2e-2, "argmax": 0.99, "slack": 0.02},
    "dynamic": {"prob": None, "uncertainty": None, "argmax": 0.97, "slack": 0.05},
    "int8": {"prob": None, "uncertainty": None, "argmax": 0.97, "slack": 0.05},
    "edgetpu": {"prob": None, "uncertainty": None, "argmax": 0.97, "slack": 0.05},
}
HEAD_TOLERANCE = 1e-4


def _head_check(out) -> float:
    if "member_probs" not in out:
        return 0.0
    ref = decompose(out["member_probs"].astype(np.float64))
    return float(max(np.max(np.abs(out[k].astype(np.float64) - r)) for k, r in
                     zip(("total", "aleatoric", "epistemic"), ref)))


def _reference(posterior, x):
    """Keras reference: probs and (total, aleatoric, epistemic); None where the posterior has none."""
    if posterior.kind in ("dirichlet", "distilled", "laplace"):  # closed form / distilled heads, not samples
        pred = posterior.predict(x)
        return pred.probs, (pred.total, pred.aleatoric, pred.epistemic)
    ref_samples = posterior.sample_probs(x)
    return ref_samples.mean(axis=0), decompose(ref_samples)


def _verify_deterministic(bundle, posterior, x, tol) -> dict:
    out = bundle.run(x)
    ref_probs, ref_u = _reference(posterior, x)
    probs = out["probs"].astype(np.float64)
    pairs = [(out[k], r) for k, r in zip(("total", "aleatoric", "epistemic"), ref_u) if r is not None and k in out]
    report = {
        "inputs": int(len(x)),
        "max_abs_prob_diff": float(np.max(np.abs(probs - ref_probs))),
        "argmax_agreement": float(np.mean(probs.argmax(-1) == ref_probs.argmax(-1))),
        "max_uncertainty_diff": float(max(np.max(np.abs(o.astype(np.float64) - r)) for o, r in pairs)),
        "head_max_diff": _head_check(out),
    }
    failures = []
    if tol["prob"] is not None and report["max_abs_prob_diff"] > tol["prob"]:
        failures.append(f"max |Δprob| {report['max_abs_prob_diff']:.3g} > {tol['prob']}")
    if tol["uncertainty"] is not None and report["max_uncertainty_diff"] > tol["uncertainty"]:
        failures.append(f"max |Δuncertainty| {report['max_uncertainty_diff']:.3g} > {tol['uncertainty']}")
    if report["argmax_agreement"] < tol["argmax"]:
        failures.append(f"argmax agreement {report['argmax_agreement']:.3f} < {tol['argmax']}")
    return report, failures


def z_test(bundle_samples, keras_samples, slack: float = 0.0, alpha: float = 1e-4) -> dict:
    """Two-sample z-test of the per-input, per-class mean probabilities (Bonferroni over inputs x classes).

    ``bundle_samples`` ``[N_b, N, C]`` and ``keras_samples`` ``[N_k, N, C]`` are independent draws;
    returns ``diff`` (mean difference), ``se``, ``z_critical``, ``excess`` (``|diff| - (z se + 1e-6 +
    slack)``, > 0 where the test fails) and ``passed``.
    """
    b_samples, k_samples = np.asarray(bundle_samples, np.float64), np.asarray(keras_samples, np.float64)
    n_b, n_k = len(b_samples), len(k_samples)
    diff = b_samples.mean(0) - k_samples.mean(0)
    se = np.sqrt(b_samples.var(0, ddof=1) / n_b + k_samples.var(0, ddof=1) / n_k)
    z_crit = float(norm.ppf(1 - alpha / (2 * diff.size)))
    excess = np.abs(diff) - (z_crit * se + 1e-6 + slack)
    return {"diff": diff, "se": se, "z_critical": z_crit, "excess": excess, "passed": bool(np.all(excess <= 0))}


def _verify_stochastic(bundle, posterior, x, tol, draws=512, alpha=1e-4) -> dict:
    x = x[:20]
    s = bundle.num_samples
    reps = max(1, math.ceil(draws / s))
    b_samples = np.concatenate([bundle.sample_probs(x) for _ in range(reps)])  # [R*S, N, C]
    k_samples = posterior.sample_probs(x, num_samples=draws)
    t = z_test(b_samples, k_samples, tol["slack"], alpha)
    diff, se, z_crit, excess = t["diff"], t["se"], t["z_critical"], t["excess"]
    out = bundle.run(x)
    report = {
        "inputs": int(len(x)),
        "draws_bundle": int(len(b_samples)),
        "draws_keras": int(len(k_samples)),
        "max_abs_mean_diff": float(np.max(np.abs(diff))),
        "z_critical": z_crit,
        "max_excess": float(np.max(excess)),
        "argmax_agreement": float(np.mean(b_samples.mean(0).argmax(-1) == k_samples.mean(0).argmax(-1))),
        "head_max_diff": _head_check(out),
    }
    failures = []
    if np.any(excess > 0):
        i, c = np.unravel_index(np.argmax(excess), excess.shape)
        failures.append(f"sample mean differs from Keras Monte Carlo at input {i}, class {c}: "
                        f"|Δ|={abs(diff[i, c]):.4f} > {z_crit:.2f}·SE({se[i, c]:.4f}) + slack {tol['slack']}")
    return report, failures


def verify_bundle(bundle, posterior, x, precision: str) -> dict:
    """Compare ``bundle`` with ``posterior`` on inputs ``x``; raise :class:`VerificationError` on failure."""
    tol = TOLERANCES[precision]
    if bundle.mode == "stochastic":
        report, failures = _verify_stochastic(bundle, posterior, x, tol)
    else:
        report, failures = _verify_deterministic(bundle, posterior, x, tol)
    if report["head_max_diff"] > HEAD_TOLERANCE:
        failures.append(f"uncertainty head differs from decompose by {report['head_max_diff']:.3g} nats")
    report["tolerances"] = {**tol, "head": HEAD_TOLERANCE}
    report["passed"] = not failures
    if failures:
        raise VerificationError(
            f"Verification of the {bundle.mode}/{precision} bundle failed: " + "; ".join(failures)
            + ". Nothing was written."
        )
    return report
