"""The bench machinery on a tiny configuration (structure and arithmetic, not timings)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import tflbayes as tb
from tflbayes.bench.measure import measure_bundles, save_results
from tflbayes.bench.pareto import pareto_front
from tflbayes.bench.report import write_report
from tflbayes.bench.timing import interleaved


def test_pareto_front_by_hand():
    cost = [1, 2, 3, 4, 2.5]
    nll = [0.5, 0.3, 0.3, 0.1, 0.6]
    assert pareto_front(cost, nll, lower_quality_is_better=True) == [0, 1, 3]
    auroc = [0.5, 0.7, 0.9, 0.9, 0.95]
    assert pareto_front(cost, auroc, lower_quality_is_better=False) == [0, 1, 4]
    assert pareto_front([1, np.nan], [0.1, 0.0], True) == [0]


def test_interleaved_times_every_callable_in_turn():
    calls = []
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b"] * 4 and t["a"].shape == (3,) and np.all(t["b"] >= 0)


@pytest.fixture(scope="module")
def two_bundles(ensemble, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    tb.convert(ensemble, root / "batched", mode="batched")
    tb.convert(ensemble, root / "members", mode="members")
    return {"batched": root / "batched", "members": root / "members"}


def test_measure_bundles_reports_every_facet(two_bundles, digits, x_noise, ensemble, tmp_path):
    res = measure_bundles(two_bundles, digits.x_test[:50], digits.y_test[:50], x_noise[:50], baseline="members",
                          rounds=5, warmup=1, cold_repeats=1, plots_dir=tmp_path / "plots")
    rows = res["configs"]
    assert set(rows) == {"batched", "members"} and res["baseline"] == "members"
    for row in rows.values():
        for key in ("latency_ms", "cold_load_ms", "bytes", "gzip_bytes", "peak_rss_mb", "accuracy", "nll", "brier",
                    "ece", "misclassification_auroc", "ood_auroc_total", "ood_auroc_epistemic"):
            assert row[key] is not None, key
        assert 0 < row["gzip_bytes"] <= row["bytes"] * 1.01 and row["peak_rss_mb"] > 10
    assert rows["members"]["latency_ratio"] == 1.0 and rows["members"]["size_ratio"] == 1.0
    # the quality facets are those of the Keras ensemble (float32 bundles are exact to 1e-4)
    want = tb.metrics.evaluate(ensemble, digits.x_test[:50], digits.y_test[:50], x_ood=x_noise[:50])
    assert abs(rows["batched"]["nll"] - want["nll"]) < 1e-3
    assert abs(rows["batched"]["ood_auroc_epistemic"] - want["ood_auroc_epistemic"]) < 1e-2
    assert any(p.name.startswith("reliability_batched") for p in (tmp_path / "plots").iterdir())

    path = save_results(res, tmp_path / "r.json")
    saved = json.loads(path.read_text())
    assert saved["environment"]["tensorflow"] and saved["environment"]["cpus"] >= 1
    report = write_report(path, tmp_path / "report")
    text = report.read_text()
    assert "| batched |" in text or "| **batched** |" in text
    assert (tmp_path / "report" / "plots" / "pareto_nll_vs_latency_ms.png").stat().st_size > 1000


def test_bench_and_report_cli(two_bundles, tmp_path):
    from tflbayes.cli.main import cli

    out = tmp_path / "res.json"
    r = CliRunner().invoke(cli, ["bench", str(two_bundles["batched"]), str(two_bundles["members"]), "--rounds", "3",
                                 "--no-memory", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output.splitlines()[-1] and out.is_file()
    r = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and (tmp_path / "rep" / "report.md").is_file()
    r = CliRunner().invoke(cli, ["bench"])
    assert r.exit_code == 2 and r.output.startswith("error:")
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_readme_section_is_regenerated(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "update_readme.py"  # not in the wheel
    spec = importlib.util.spec_from_file_location("update_readme", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    update_readme = module.update_readme

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nstale text\n<!-- bench:end -->\nafter\n")
    res = {"digits": {"title": "digits", "configs": {"single-float32": {"mode": "batched", "nll": 0.1}},
                      "targets": [{"name": "r", "measured": 0.4, "target": "≤ 0.5", "met": True}]}}
    update_readme(readme, res, tmp_path)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "stale text" not in text
    assert "single-float32" in text and "| r | 0.400 | ≤ 0.5 | yes |" in text


def test_interleaved_shuffles_each_round_and_takes_self_timed_seconds():
    from tflbayes.bench.timing import SelfTimed

    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abcd"}
    fns["e"] = SelfTimed(lambda: calls.append("e") or 0.25)
    t = interleaved(fns, rounds=20, warmup=2, shuffle_seed=0)
    rounds = [calls[i : i + 5] for i in range(0, len(calls), 5)]
    assert len(rounds) == 22 and all(sorted(r) == list("abcde") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 5  # the order changes from round to round ...
    again = []
    interleaved({k: (lambda k=k: again.append(k)) for k in "abcde"}, rounds=20, warmup=2, shuffle_seed=0)
    assert again == calls  # ... reproducibly for one seed
    np.testing.assert_array_equal(t["e"], 0.25)
    assert t["a"].shape == (20,) and np.all(t["a"] >= 0)
