"""Seeded fuzzing of posterior folders and bundles (tests/_fuzz.py): zero untyped exceptions, zero
hangs, zero silent output changes.

The fast tests run a few hundred mutations per artifact kind in-process; ``@pytest.mark.slow`` runs
the full campaign (several thousand per kind, more kinds). Every case is one mutation of a valid
artifact, loaded and predicted under a time bound. Unsigned edits must be refused or change
nothing; signed edits (checksums, sizes and field digests recomputed, as an attacker would) may
load, but only as a sane posterior. Bundle manifests are sealed (a digest of every field), so an
unsigned edit of the abstention thresholds' values or of class-name text is refused too: the
``decision_edits`` count must stay 0.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import _fuzz as F
from tflbayes.posterior import StochasticPosterior, load

from conftest import make_mlp


@pytest.fixture(scope="module")
def x(digits):
    return digits.x_test[:4]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, untrained_ensemble):
    from tflbayes.methods.transform import to_mc_dropout

    root = tmp_path_factory.mktemp("fuzz_src")
    untrained_ensemble.save(root / "ensemble")
    StochasticPosterior(to_mc_dropout(make_mlp(hidden=(16,))), "mc_dropout", {"num_samples": 4}).save(
        root / "stochastic")
    return root


def _report(name, counts):
    shown = {k: v for k, v in counts.items() if k != "bad"}
    print(f"\nFUZZ {name}: {json.dumps(shown)}")
    return shown


def _check(counts):
    bad = counts["bad"]
    assert counts["untyped"] == 0 and counts["hang"] == 0 and not bad, bad[:10]


def _posterior_campaign(folders, kind, x, tmp_path, n, seed):
    src = folders / kind
    reference = F.posterior_facts(load(src), x)
    counts = F.campaign("posterior", src, tmp_path, n, seed, x, reference, load, F.posterior_facts)
    _report(f"posterior/{kind} n={n} seed={seed}", counts)
    return counts


@pytest.mark.parametrize("kind, n", [("ensemble", 200), ("stochastic", 120)])
def test_fuzz_posterior_folders(folders, kind, n, x, tmp_path):
    counts = _posterior_campaign(folders, kind, x, tmp_path, n, seed=13)
    _check(counts)
    assert counts["refused"] > n // 2  # the mutations do reach the checks


def test_fuzz_bundles(tiny_bundle, x, tmp_path):
    from tflbayes.runtime import load_bundle

    reference = F.bundle_facts(load_bundle(tiny_bundle), x)
    counts = F.campaign("bundle", tiny_bundle, tmp_path, 300, 13, x, reference, load_bundle, F.bundle_facts)
    _report("bundle/batched-float32 n=300 seed=13", counts)
    _check(counts)
    assert counts["refused"] > 100
    assert counts["decision_edits"] == 0  # the manifest seal catches threshold / class-name edits


def test_the_fuzzer_detects_what_it_should(tmp_path, untrained_ensemble, x):
    """The harness itself: a hang, an untyped error and a silent change are each reported."""
    import time

    untrained_ensemble.save(tmp_path / "p")
    reference = F.posterior_facts(load(tmp_path / "p"), x)

    def hang(path):
        time.sleep(5)

    assert F.classify(hang, F.posterior_facts, tmp_path / "p", x, reference, seconds=1)[0] == "hang"
    assert F.classify(lambda p: {}["x"], F.posterior_facts, tmp_path / "p", x, reference)[0] == "untyped"

    def shifted(path):
        post = load(path)
        post.class_names = post.class_names[::-1]
        return post

    assert F.classify(shifted, F.posterior_facts, tmp_path / "p", x, reference)[0] == "changed"
    assert F.classify(load, F.posterior_facts, tmp_path / "p", x, reference)[0] == "same"


# --------------------------------------------------------------------------- the full campaign


@pytest.fixture(scope="module")
def more_bundles(tmp_path_factory, untrained_ensemble, digits):
    import tflbayes as tb

    root = tmp_path_factory.mktemp("fuzz_bundles")
    cal = (digits.x_test[:60], digits.y_test[:60])
    tb.convert(untrained_ensemble, root / "members", mode="members", calibration=cal)
    tb.convert(untrained_ensemble, root / "int8", mode="batched", precision="int8",  # random weights: the int8
               representative_data=digits.x_train[:100], calibration=cal, verify=False)  # argmax check is moot
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ensemble", "stochastic"])
def test_full_posterior_campaign(folders, kind, x, tmp_path):
    for seed in range(3):
        _check(_posterior_campaign(folders, kind, x, tmp_path, 1000, seed=100 + seed))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "members", "int8"])
def test_full_bundle_campaign(tiny_bundle, request, name, x, tmp_path):
    from tflbayes.runtime import load_bundle

    src = tiny_bundle if name == "tiny" else request.getfixturevalue("more_bundles") / name
    reference = F.bundle_facts(load_bundle(src), x)
    for seed in range(2):
        counts = F.campaign("bundle", src, tmp_path, 1000, 200 + seed, x, reference, load_bundle, F.bundle_facts)
        _report(f"bundle/{name} n=1000 seed={200 + seed}", counts)
        _check(counts)


def test_fuzz_inputs_are_deterministic():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    obj = {"a": [1, 2, {"b": "c"}], "d": 1.5}
    assert F.mutate_json(obj, a) == F.mutate_json(obj, b)
