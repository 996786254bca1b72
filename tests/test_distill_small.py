"""``tb.distill`` on a small transfer set (issue 13): a budget in optimizer steps with early stopping on
held-out transfer inputs, and the end-of-run check that the student ranks inputs like its teacher.

Acceptance (slow): on the small tabular problem of ``test_budgets`` (80 wine rows, class 2 as OOD), the
EnD² student of a 5-member deep ensemble has an epistemic OOD AUROC within 0.1 of the ensemble's.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.distill.check import agreement, agreement_warning, teacher_epistemic
from tflbayes.errors import InvalidInputError

from test_budgets import ood_auroc, small_builder, small_tabular


@pytest.fixture(scope="module")
def small_teacher():
    x, y, xt, yt, xo = small_tabular(0)
    ens = tb.fit(small_builder(), (x, y), method="deep_ensemble", num_samples=3, epochs=60, batch_size=16,
                 verbose=0, seed=0)
    return ens, (x, y, xt, yt, xo)


def test_teacher_epistemic_is_the_mutual_information():
    agree = np.tile([[0.9, 0.1]], (1, 4, 1))
    disagree = np.array([[[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]])
    mi = teacher_epistemic(np.concatenate([agree, disagree]))
    h = lambda p: -np.sum(p * np.log(p))  # noqa: E731
    assert mi[0] == pytest.approx(0.0, abs=1e-12)
    assert mi[1] == pytest.approx(h(np.array([0.5, 0.5])) - h(np.array([0.9, 0.1])), rel=1e-9)


def test_agreement_numbers_and_the_coin_warning():
    class Pred:
        def __init__(self, e):
            self.epistemic = e

    class Student:
        def __init__(self, e):
            self.e = e

        def predict(self, x):
            return Pred(self.e)

    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1], size=(20, 5))
    ref = teacher_epistemic(p)
    order = np.argsort(ref)
    p = p[order]  # the last 10 inputs ("auxiliary") are the teacher's most uncertain
    ref = ref[order]
    same = agreement(Student(ref * 3 + 0.01), np.zeros((20, 1)), p, num_in=10)
    assert same["epistemic_spearman"] == pytest.approx(1.0) and same["aux_auroc_teacher"] == 1.0
    assert same["aux_auroc_student"] == 1.0 and same["check_aux_inputs"] == 10
    inverted = agreement(Student(-ref), np.zeros((20, 1)), p, num_in=10)
    assert inverted["epistemic_spearman"] == pytest.approx(-1.0) and inverted["aux_auroc_student"] == 0.0
    with pytest.warns(UserWarning, match="worse than a coin"):
        agreement_warning(inverted, "end2", "held-out")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agreement_warning(same, "end2", "held-out")
    assert agreement(Student(None), np.zeros((20, 1)), p, num_in=10) == {}  # BDK: nothing to check


def test_auto_budget_and_check_are_recorded(small_teacher):
    ens, (x, y, xt, yt, xo) = small_teacher
    student = tb.distill(ens, x, method="end2", seed=0)
    o = student.options
    assert o["epochs"] == "auto" and o["stopped_by"] in ("early_stopping", "ceiling")
    assert 1000 <= o["steps_run"] <= 20000 and o["best_step"] >= 1000
    assert o["transfer_inputs"] == 80 and o["check_inputs"] == 12 + 12 and o["check_aux_inputs"] == 12
    assert -1 <= o["epistemic_spearman"] <= 1 and 0 <= o["aux_auroc_student"] <= 1
    assert 0 <= o["aux_auroc_teacher"] <= 1
    assert float((student.predict(xt).label == yt).mean()) >= 0.9
    with pytest.raises(InvalidInputError, match="at least 8 inputs"):
        tb.distill(ens, x[:5], method="end2")
    gped = tb.distill(ens, x, method="gped", epochs=3, seed=0)  # integer epochs: checked on the training inputs
    assert "steps_run" not in gped.options and "aux_auroc_student" in gped.options
    bdk = tb.distill(ens, x, method="bdk", epochs=2, seed=0)
    assert "aux_auroc_student" not in bdk.options  # no epistemic uncertainty


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_end2_student_keeps_the_ensembles_ood_ranking_on_small_data(seed):
    x, y, xt, yt, xo = small_tabular(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = tb.fit(small_builder(), (x, y), method="deep_ensemble", num_samples=5, verbose=0, seed=seed)
        student = tb.distill(ens, x, method="end2", seed=seed)
    a_t, a_s = ood_auroc(ens, xt, xo), ood_auroc(student, xt, xo)
    o = student.options
    print(f"seed {seed}: ensemble OOD AUROC {a_t:.3f}, EnD² student {a_s:.3f}; held-out check: spearman "
          f"{o['epistemic_spearman']}, aux AUROC student {o['aux_auroc_student']} teacher {o['aux_auroc_teacher']}; "
          f"{o['steps_run']} steps ({o['stopped_by']})")
    assert a_s >= a_t - 0.1
