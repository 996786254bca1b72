"""The standard benchmark suite behind ``make bench`` / ``tflbayes bench --suite standard``.

For each data set (the bundled digits and MNIST sample, CNN): train the posteriors, convert them to
every mode and precision the suite lists, measure them side by side (``measure_bundles``) and the
headline ratios on raw LiteRT calls (``ratios``), write ``<out>/<data>.json``, plots and a report.
The README's headline section is regenerated from those JSON files by ``benchmarks/update_readme.py``
(``make bench`` runs both): the installed package never writes into a checkout.
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from tflbayes.bench.measure import measure_bundles, save_results
from tflbayes.bench.ratios import call_ratio, cold_load_ratio
from tflbayes.bench.report import write_report

__all__ = ["run_suite", "SUITE", "TARGETS"]

PRECISIONS = ("float32", "float16", "dynamic", "int8")

# (config name, posterior key, mode, S, precisions)
SUITE = (
    ("single", "single", "batched", 1, PRECISIONS),
    ("mc_dropout-S8", "mc_dropout", "stochastic", 8, PRECISIONS),
    ("mc_dropout-S32", "mc_dropout", "stochastic", 32, ("float32",)),
    ("mc_dropout_last-S32", "mc_dropout_last", "stochastic", 32, ("float32",)),
    ("vi-S8", "variational", "stochastic", 8, ("float32", "dynamic")),  # no deterministic prefix for int8
    ("ensemble-S5-batched", "ensemble", "batched", 5, PRECISIONS),
    ("ensemble-S10-batched", "ensemble", "batched", 10, PRECISIONS),
    ("ensemble-S10-members", "ensemble", "members", 10, ("float32", "int8")),
    ("csgmcmc-S10-batched", "csgmcmc", "batched", 10, ("float32", "int8")),
    ("end2_student", "end2", "dirichlet", 1, ("float32", "int8")),
    # single-pass posteriors: ensemble-like uncertainty at about one network's cost
    ("mimo-S3", "mimo", "single_pass", None, ("float32", "int8")),
    ("batch_ensemble-S4", "batch_ensemble", "single_pass", None, ("float32", "dynamic")),  # int8: see README
    ("laplace_bridge", "laplace", "single_pass", None, ("float32", "int8")),
)

TARGETS = {
    "batched S=10 latency / 10 sequential member invokes": 0.5,
    "stochastic S=32 in one invoke / 32 invokes, whole-network dropout": 0.6,
    "stochastic S=32 in one invoke / 32 invokes, last-layer dropout": 0.25,
    "batched cold load / 10 member loads": 0.3,
    "int8 ensemble bytes / float32 (S=10 batched)": 0.27,
    "EnD² student latency / one member": 1.1,
}


def _train(ds, epochs, verbose):
    import tflbayes as tb
    from tflbayes.architectures import builder

    build = builder("cnn", ds.input_shape, ds.num_classes)
    specs = {
        "single": ("deep_ensemble", {"members": 1}),
        "mc_dropout": ("mc_dropout", {"rate": 0.25}),
        "mc_dropout_last": ("mc_dropout", {"rate": 0.25, "layers": "last"}),
        "variational": ("variational", {}),
        "ensemble": ("deep_ensemble", {"members": 10}),
        "csgmcmc": ("csgmcmc", {"num_samples": 10, "exploration": 0.5}),
        "mimo": ("mimo", {"num_samples": 3}),
        "batch_ensemble": ("batch_ensemble", {"num_samples": 4}),
        "laplace": ("laplace", {"link": "bridge"}),
    }
    posts, train_s = {}, {}
    for key, (method, opts) in specs.items():
        click.echo(f"   training {key}")
        t0 = time.perf_counter()
        # SG-MCMC runs 3x the epochs of one ensemble member: still a fraction of the 10-member ensemble's
        posts[key] = tb.fit(build, ds, method=method, epochs=3 * epochs if key == "csgmcmc" else epochs,
                            verbose=verbose, **opts)
        train_s[key] = time.perf_counter() - t0
    click.echo("   distilling the ensemble into an EnD² student")
    t0 = time.perf_counter()
    posts["end2"] = tb.distill(posts["ensemble"], ds.x_train, method="end2", epochs=2 * epochs, verbose=verbose)
    train_s["end2"] = time.perf_counter() - t0
    return posts, train_s


def _convert_all(posts, ds, folder):
    import tflbayes as tb

    paths = {}
    for name, key, mode, s, precisions in SUITE:
        for precision in precisions:
            cname = f"{name}-{precision}"
            click.echo(f"   converting {cname}")
            b = tb.convert(posts[key], folder / cname, mode=mode, precision=precision, num_samples=s,
                           representative_data=ds.x_train[:300], calibration=(ds.x_test, ds.y_test))
            paths[cname] = b.path
    # S=1 stochastic graphs for the "S samples in one invoke vs S invokes" ratios
    for key in ("mc_dropout", "mc_dropout_last"):
        b = tb.convert(posts[key], folder / f"{key}-S1-float32", mode="stochastic", num_samples=1, verify=False)
        paths[f"{key}-S1-float32"] = b.path
    return paths


def _targets(paths, configs) -> list:
    ens_b, ens_m = paths["ensemble-S10-batched-float32"], paths["ensemble-S10-members-float32"]
    members = sorted(ens_m.glob("member_*.tflite"))
    rows = []

    def add(name, result, extra=None):
        target = TARGETS[name]
        rows.append({"name": name, "measured": result["ratio"], "target": f"≤ {target}",
                     "met": result["ratio"] <= target, "detail": {**result, **(extra or {})}})

    add("batched S=10 latency / 10 sequential member invokes", call_ratio(ens_b / "model.tflite", members))
    add("stochastic S=32 in one invoke / 32 invokes, whole-network dropout",
        call_ratio(paths["mc_dropout-S32-float32"] / "model.tflite", [paths["mc_dropout-S1-float32"] / "model.tflite"],
                   repeat_many=32))
    add("stochastic S=32 in one invoke / 32 invokes, last-layer dropout",
        call_ratio(paths["mc_dropout_last-S32-float32"] / "model.tflite",
                   [paths["mc_dropout_last-S1-float32"] / "model.tflite"], repeat_many=32))
    add("batched cold load / 10 member loads", cold_load_ratio(ens_b / "model.tflite", members))
    f32, i8 = configs["ensemble-S10-batched-float32"], configs["ensemble-S10-batched-int8"]
    nll_change = i8["nll"] / f32["nll"] - 1
    size = {"ratio": i8["bytes"] / f32["bytes"], "nll_change": nll_change,
            "ood_auroc_change": i8["ood_auroc_epistemic"] - f32["ood_auroc_epistemic"]}
    add("int8 ensemble bytes / float32 (S=10 batched)", size)
    rows[-1]["met"] = rows[-1]["met"] and nll_change <= 0.03
    rows[-1]["target"] += " with NLL ≤ +3 %"
    add("EnD² student latency / one member", call_ratio(paths["end2_student-float32"] / "model.tflite",
                                                         [paths["single-float32"] / "model.tflite"]))
    return rows


def run_suite(out="benchmarks/results", datasets=("digits", "mnist"), epochs=15, rounds=200, verbose=0) -> dict:
    """Run the standard suite; writes ``<out>/<data>.json`` and returns {dataset: results}."""
    import tflbayes as tb

    out = Path(out)
    everything = {}
    for name in datasets:
        click.echo(f"== {name}")
        ds = tb.data.load(name)
        x_ood = tb.data.ood(ds, "noise", seed=1)
        posts, train_s = _train(ds, epochs, verbose)
        work = out / name
        paths = _convert_all(posts, ds, work / "bundles")
        measured = {k: v for k, v in paths.items() if "-S1-" not in k}
        click.echo(f"   measuring {len(measured)} bundles")
        results = measure_bundles(measured, ds.x_test, ds.y_test, x_ood, baseline="single-float32",
                                  rounds=rounds, plots_dir=work / "plots")
        results["title"] = f"{name} (CNN, uniform-noise OOD)"
        results["train_seconds"] = train_s
        results["targets"] = _targets(paths, results["configs"])
        results["command"] = f"make bench  (tflbayes bench --suite standard --data {','.join(datasets)})"
        save_results(results, out / f"{name}.json")
        write_report(results, work)
        everything[name] = results
    return everything

