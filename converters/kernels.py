"""int8 verification on every kernel family a bundle may meet: XNNPACK, LiteRT's reference kernels, TFLite Micro.

Full-integer kernels round differently: LiteRT's default XNNPACK kernels and the reference kernels
(LiteRT's ``BUILTIN_REF``, TFLite Micro, older tflite-runtime builds) differ by one LSB on some
outputs, which moves the uncertainty by up to ~1e-2 nats and can flip an abstain decision. The
conversion verifies the bundle against Keras on each family (the same tolerances) and records how
far the families are from each other on the verification inputs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["KERNEL_RUNTIMES", "verify_kernels"]

# runtime name -> the kernel family it runs
KERNEL_RUNTIMES = {"litert": "xnnpack", "litert-reference": "reference", "tflm": "tflm"}
_SUMMARY_KEYS = ("passed", "argmax_agreement", "max_abs_prob_diff", "max_uncertainty_diff", "max_abs_mean_diff",
                 "max_excess")


def _summary(report: dict) -> dict:
    return {k: report[k] for k in _SUMMARY_KEYS if k in report}


def verify_kernels(folder, posterior, x, precision: str, primary: str, primary_report: dict) -> dict:
    """Verify the bundle in ``folder`` on every kernel family; raise ``VerificationError`` if one fails.

    Args:
        folder: the (temporary) bundle folder.
        posterior: the Keras posterior it was converted from.
        x: the verification inputs.
        precision: the bundle's precision (selects the tolerances).
        primary: the runtime the conversion verified first (``"litert"`` or ``"tflm"``).
        primary_report: that verification's report.

    Returns:
        ``{family: {passed, argmax_agreement, ...}}`` for ``xnnpack``, ``reference`` (and ``tflm``
        for micro bundles), plus ``spread``: per deterministic bundle, the largest difference
        between two families' uncertainties (nats) and the fraction of inputs whose argmax differs.
    """
    from tflbayes.converters.verify import verify_bundle
    from tflbayes.runtime import Bundle

    runtimes = ["litert", "litert-reference"] + (["tflm"] if primary == "tflm" else [])
    out, runs = {}, {}
    for rt in runtimes:
        bundle = Bundle(folder, runtime=rt)
        report = primary_report if rt == primary else verify_bundle(bundle, posterior, x, precision)
        out[KERNEL_RUNTIMES[rt]] = _summary(report)
        if bundle.mode != "stochastic":  # deterministic: compare the families output for output
            runs[KERNEL_RUNTIMES[rt]] = bundle.run(x)
    if runs:
        names = list(runs)
        keys = [k for k in ("total", "aleatoric", "epistemic") if all(k in r for r in runs.values())]
        spread_u, flips = 0.0, 0.0
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for k in keys:
                    spread_u = max(spread_u, float(np.max(np.abs(runs[a][k].astype(np.float64) - runs[b][k]))))
                flips = max(flips, float(np.mean(runs[a]["probs"].argmax(-1) != runs[b]["probs"].argmax(-1))))
        out["spread"] = {"max_uncertainty_diff": spread_u, "argmax_disagreement": flips, "families": names}
    return out
