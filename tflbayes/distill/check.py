"""Does the student reproduce the teacher where it matters? (checked at the end of :func:`tflbayes.distill`)

On held-out transfer inputs (in-distribution rows the student did not train on, and auxiliary
inputs), two numbers, recorded in the student's options:

- ``epistemic_spearman``: Spearman's rank correlation of the student's and the teacher's epistemic
  (knowledge) uncertainty over all checked inputs: does the student order inputs like the teacher?
- ``aux_auroc_student`` / ``aux_auroc_teacher``: the AUROC of separating in-distribution from
  auxiliary inputs by epistemic uncertainty (1: every auxiliary input more uncertain; 0.5: a coin).

A student with ``aux_auroc_student < 0.5`` ranks unfamiliar inputs as *more* familiar than the data,
the failure of EnD² on small transfer sets (Malinin et al. 2020 need many auxiliary inputs), and
:func:`agreement_warning` says so. BDK students have no epistemic uncertainty: nothing is checked.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from tflbayes.uncertainty import entropy

__all__ = ["teacher_epistemic", "agreement", "agreement_warning"]


def teacher_epistemic(samples) -> np.ndarray:
    """Mutual information ``H[mean_s p_s] - mean_s H[p_s]`` of ``samples [N, S, C]`` (nats, >= 0)."""
    samples = np.asarray(samples, dtype=np.float64)
    return np.maximum(entropy(samples.mean(axis=1)) - entropy(samples).mean(axis=1), 0.0)


def _auroc(u_in, u_aux) -> Optional[float]:
    from sklearn.metrics import roc_auc_score

    if len(u_in) == 0 or len(u_aux) == 0:
        return None
    labels = np.r_[np.zeros(len(u_in)), np.ones(len(u_aux))]
    return float(roc_auc_score(labels, np.r_[u_in, u_aux]))


def agreement(student, x_check, teacher_samples_check, num_in: int) -> dict:
    """The check's numbers (module docstring) for inputs ``x_check`` whose first ``num_in`` rows are
    in-distribution and the rest auxiliary; ``teacher_samples_check [N, S, C]`` the teacher on them."""
    from scipy.stats import spearmanr

    epi = student.predict(x_check).epistemic
    if epi is None or len(x_check) < 2:
        return {}
    epi = np.asarray(epi, dtype=np.float64)
    ref = teacher_epistemic(teacher_samples_check)
    rho = spearmanr(epi, ref).statistic if np.ptp(epi) > 0 and np.ptp(ref) > 0 else float("nan")
    out = {"check_inputs": int(len(x_check)), "check_aux_inputs": int(len(x_check) - num_in),
           "epistemic_spearman": None if not np.isfinite(rho) else round(float(rho), 4)}
    a_s, a_t = _auroc(epi[:num_in], epi[num_in:]), _auroc(ref[:num_in], ref[num_in:])
    out["aux_auroc_student"] = None if a_s is None else round(a_s, 4)
    out["aux_auroc_teacher"] = None if a_t is None else round(a_t, 4)
    return out


def agreement_warning(check: dict, method: str, where: str) -> None:
    """Warn when the student ranks auxiliary inputs as less uncertain than the data (AUROC < 0.5)."""
    a = check.get("aux_auroc_student")
    if a is not None and a < 0.5:
        warnings.warn(
            f"The {method} student ranks unfamiliar inputs worse than a coin: the AUROC of its epistemic "
            f"uncertainty on {where} in-distribution vs auxiliary inputs is {a:.3f} (teacher: "
            f"{check.get('aux_auroc_teacher')}; rank correlation with the teacher "
            f"{check.get('epistemic_spearman')}). Give it more transfer data (`augment`, `x_aux`) or a longer "
            "budget (`epochs`), and do not rely on its epistemic uncertainty for OOD detection.",
            stacklevel=3,
        )
