"""``epochs="auto"`` (:mod:`tflbayes.methods.budget`) and the one knob for S (``num_samples``).

The small tabular problem of issue 13: wine (scikit-learn's copy, no download), classes 0 and 1,
80 standardized training rows, the other rows of those classes as the test set and class 2 as
out-of-distribution inputs. With the default budget MC dropout and VI must reach accuracy >= 0.95
and an epistemic OOD AUROC >= 0.75 (slow test: three seeds; fast test: one seed, one method).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.errors import InvalidInputError
from tflbayes.methods import budget as B
from tflbayes.methods.registry import TrainConfig


def small_tabular(seed=0, n_train=80):
    """``(x_train, y_train, x_test, y_test, x_ood)``: wine classes 0/1 (80 training rows), class 2 as OOD."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    x, y = load_wine(return_X_y=True)
    rng = np.random.default_rng(seed)
    ind = rng.permutation(np.flatnonzero(y < 2))
    tr, te = ind[:n_train], ind[n_train:]
    scale = StandardScaler().fit(x[tr])

    def f(a):
        return scale.transform(a).astype(np.float32)

    return f(x[tr]), y[tr].astype(np.int64), f(x[te]), y[te].astype(np.int64), f(x[y == 2])


def small_builder():
    from tflbayes.architectures import builder

    return builder("mlp", (13,), 2)


def ood_auroc(post, x_in, x_ood):
    from sklearn.metrics import roc_auc_score

    u_in, u_out = post.predict(x_in).epistemic, post.predict(x_ood).epistemic
    return float(roc_auc_score(np.r_[np.zeros(len(u_in)), np.ones(len(u_out))], np.r_[u_in, u_out]))


# --------------------------------------------------------------------------- the pieces


def test_check_epochs():
    assert B.check_epochs("auto") == "auto" and B.check_epochs(3) == 3
    for bad in (0, -1, 2.5, "10", "Auto", True, None):
        with pytest.raises(InvalidInputError, match="`epochs`"):
            B.check_epochs(bad)
    with pytest.raises(InvalidInputError, match="`epochs`"):
        tb.fit(small_builder(), small_tabular()[:2], method="mc_dropout", epochs="long", verbose=0)


def test_holdout_split_is_stratified_and_disjoint():
    y = np.array([0] * 40 + [1] * 7 + [2] * 2 + [3])
    tr, he = B.holdout_split(y, 0.15, seed=0)
    assert len(np.intersect1d(tr, he)) == 0 and len(tr) + len(he) == len(y)
    counts = {c: int((y[he] == c).sum()) for c in range(4)}
    assert counts == {0: 6, 1: 1, 2: 1, 3: 0}  # round(15 %), at least 1, never a class's last row
    assert np.array_equal(B.holdout_split(y, 0.15, seed=0)[1], he)  # seeded


def test_heldout_stopping_floor_patience_and_restore():
    """A scripted score: falls until evaluation 6, then rises; floor 3, patience 4."""
    class FakeModel:
        stop_training = False

        def __init__(self):
            self.w = 0

        def get_weights(self):
            return [self.w]

        def set_weights(self, ws):
            self.w = ws[0]

    scores = [5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    model = FakeModel()
    stop = B.HeldOutStopping(lambda m: scores[m.w], min_evals=3, max_evals=12, patience=4, min_improvement=0.01)
    stop.set_model(model)
    for e in range(12):
        model.w = e
        stop.on_epoch_end(e, {})
        if model.stop_training:
            break
    assert stop.stopped_by == "early_stopping" and len(stop.history) == 10  # best at eval 6, +4
    stop.restore()
    assert model.w == 5 and stop.best == 1.0
    assert stop.still_falling() is None


def test_auto_budget_floor_and_record_on_small_data():
    x, y, xt, yt, _ = small_tabular(0)
    post = tb.fit(small_builder(), (x, y), method="deep_ensemble", num_samples=2, verbose=0, seed=0)
    o = post.options
    assert o["epochs"] == "auto" and o["members"] == 2 and o["num_samples"] == 2
    assert len(o["steps_run"]) == 2 and all(s >= B.DEFAULT_BUDGET.min_steps for s in o["steps_run"])
    assert all(s <= B.DEFAULT_BUDGET.max_steps for s in o["steps_run"])
    assert set(o["stopped_by"]) <= {"early_stopping", "ceiling"}
    assert o["heldout_rows"] == [12, 12]  # 15 % of each class (80 rows -> 68 trained on)
    assert all(b >= B.DEFAULT_BUDGET.min_steps for b in o["best_step"])  # the floor holds for the restored weights
    assert float((post.predict(xt).label == yt).mean()) >= 0.9
    explicit = tb.fit(small_builder(), (x, y), method="deep_ensemble", members=1, epochs=2, verbose=0)
    assert "steps_run" not in explicit.options  # integer epochs: as before


def test_auto_budget_uses_validation_data_and_ceiling_warns():
    x, y, xt, yt, _ = small_tabular(0)
    cfg = TrainConfig(epochs="auto", batch_size=16, verbose=0, seed=0, validation_data=(xt, yt))
    from tflbayes.methods import training

    training.set_seed(0)
    model = small_builder()()
    training.compile_classifier(model, 1e-4)  # slow learning: still falling at a tiny ceiling
    tiny = B.AutoBudget(min_steps=25, max_steps=100, patience_steps=50, min_patience_evals=2, eval_steps=25)
    with pytest.warns(UserWarning, match=r"ceiling of epochs='auto'.*integer `epochs`"):
        _, rec = B.fit_auto(model, x, y, cfg, budget=tiny, what="test model", warn_state=cfg.warn_state)
    assert rec["stopped_by"] == "ceiling" and rec["steps_run"] == 100 and rec["heldout_rows"] == "validation_data"
    with warnings.catch_warnings():  # once per run
        warnings.simplefilter("error")
        B.fit_auto(model, x, y, cfg, budget=tiny, what="test model", warn_state=cfg.warn_state)


# --------------------------------------------------------------------------- one knob for S


def test_num_samples_is_the_one_knob_for_s():
    x, y, *_ = small_tabular(0)
    build = small_builder()
    ens = tb.fit(build, (x[:32], y[:32]), method="deep_ensemble", num_samples=2, epochs=1, verbose=0)
    assert ens.num_samples == 2
    snap = tb.fit(build, (x[:32], y[:32]), method="snapshot", num_samples=2, epochs=2, batch_size=8, verbose=0)
    assert snap.num_samples == 2 and snap.options["cycles"] == 2
    assert tb.fit(build, (x[:32], y[:32]), method="snapshot", cycles=2, num_samples=2, epochs=2, batch_size=8,
                  verbose=0).num_samples == 2  # agreeing is fine
    for method, alias in (("deep_ensemble", "members"), ("snapshot", "cycles")):
        with pytest.raises(InvalidInputError, match=f"`num_samples` and `{alias}`"):
            tb.fit(build, (x, y), method=method, num_samples=3, epochs=1, verbose=0, **{alias: 2})
    with pytest.raises(InvalidInputError, match="`num_samples`"):
        tb.fit(build, (x, y), method="deep_ensemble", num_samples=0, epochs=1, verbose=0)
    for method in ("deep_ensemble", "snapshot", "sgld", "sghmc", "csgmcmc", "subspace", "mc_dropout", "variational"):
        assert "num_samples" in tb.METHODS[method].defaults, method  # every method that makes S weight sets


# --------------------------------------------------------------------------- acceptance


def test_small_tabular_mc_dropout_default_budget():
    x, y, xt, yt, xo = small_tabular(0)
    post = tb.fit(small_builder(), (x, y), method="mc_dropout", verbose=0, seed=0)
    assert float((post.predict(xt).label == yt).mean()) >= 0.95
    assert ood_auroc(post, xt, xo) >= 0.75
    assert post.options["steps_run"] >= B.DEFAULT_BUDGET.min_steps


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mc_dropout", "variational"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_tabular_default_budget_accuracy_and_ood(method, seed):
    x, y, xt, yt, xo = small_tabular(seed)
    post = tb.fit(small_builder(), (x, y), method=method, verbose=0, seed=seed)
    acc, auroc = float((post.predict(xt).label == yt).mean()), ood_auroc(post, xt, xo)
    print(f"{method} seed {seed}: accuracy {acc:.3f}, epistemic OOD AUROC {auroc:.3f}, "
          f"{post.options['steps_run']} steps ({post.options['stopped_by']})")
    assert acc >= 0.95 and auroc >= 0.75
