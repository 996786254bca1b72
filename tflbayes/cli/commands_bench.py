"""``tflbayes bench | report``: quality × latency × storage, side by side."""
from __future__ import annotations

from pathlib import Path

import click

from tflbayes.cli._common import check_output_file, check_output_folder, friendly_errors, print_table

__all__ = ["COMMANDS", "bench", "report"]


@click.command()
@click.argument("bundles", nargs=-1, type=click.Path())
@click.option("--suite", type=click.Choice(["standard"]), default=None,
              help="run the standard suite (trains, converts, measures; what `make bench` runs)")
@click.option("--data", default="digits", show_default=True,
              help="data set for the bundles' quality facets; with --suite, a comma-separated list")
@click.option("--ood", "ood_kind", default="noise", show_default=True, help="OOD protocol for the OOD facets")
@click.option("--baseline", default=None, help="bundle name (folder name) the ratios are against (default: the first)")
@click.option("--rounds", type=int, default=200, show_default=True, help="interleaved batch-1 invokes per bundle")
@click.option("--epochs", type=int, default=15, show_default=True, help="--suite: training epochs")
@click.option("--no-memory", is_flag=True, help="skip the peak-memory probe (one subprocess per bundle)")
@click.option("--out", type=click.Path(), default=None,
              help="results JSON (bundles) or folder (--suite; default benchmarks/results)")
@friendly_errors
def bench(bundles, suite, data, ood_kind, baseline, rounds, epochs, no_memory, out):
    """Measure bundles side by side: latency (median, p90; 1 thread and all cores), cold load,
    size (raw, gzip), peak memory, and accuracy / NLL / Brier / ECE / misclassification and OOD AUROC."""
    import tflbayes as tb
    from tflbayes.bench.measure import measure_bundles, save_results
    from tflbayes.errors import InvalidInputError

    if rounds < 1:
        raise InvalidInputError(f"--rounds must be >= 1 (interleaved invokes per bundle), received {rounds}.")
    if epochs < 1:
        raise InvalidInputError(f"--epochs must be >= 1, received {epochs}.")
    if suite:
        from tflbayes.bench.suite import run_suite

        out = out or "benchmarks/results"
        check_output_folder(out, "--out")
        run_suite(out, datasets=tuple(d.strip() for d in data.split(",")), epochs=epochs, rounds=rounds)
        click.echo(f"wrote the standard suite's results, plots and reports to {out}")
        return
    if not bundles:
        raise InvalidInputError("give bundle folders to measure, or --suite standard.")
    out = out or "bench_results.json"
    plots = Path(out).with_suffix("").as_posix() + "_plots"
    check_output_file(out, "--out")
    check_output_folder(plots, "plots folder")
    ds = tb.data.load(data)
    x_ood = tb.data.ood(ds, ood_kind, seed=1)
    named = {Path(b).name: b for b in bundles}
    results = measure_bundles(named, ds.x_test, ds.y_test, x_ood, baseline=baseline, rounds=rounds,
                              memory=not no_memory, plots_dir=plots)
    results["title"] = f"{data} vs {ood_kind}"
    save_results(results, out)
    rows = [{"name": k, **v} for k, v in results["configs"].items()]
    print_table(rows, [("name", "bundle"), ("latency_ms", "ms/input"), ("latency_ratio", "x base"),
                       ("cold_load_ms", "cold ms"), ("bytes", "bytes"), ("accuracy", "acc"), ("nll", "NLL"),
                       ("ece", "ECE"), ("ood_auroc_epistemic", "OOD-AUROC(epist)")])
    click.echo(f"wrote {out} and plots to {plots}")


@click.command()
@click.argument("results", type=click.Path())
@click.option("--out", type=click.Path(), default=None, help="report folder (default: next to the results)")
@friendly_errors
def report(results, out):
    """Write a Markdown report (tables, Pareto frontiers, reliability diagrams) from bench results."""
    from tflbayes._io import read_json
    from tflbayes.bench.report import write_report
    from tflbayes.errors import InvalidInputError

    data = read_json(results, InvalidInputError, "results file")
    _check_results(data, results)
    out = out or Path(results).with_suffix("").as_posix() + "_report"
    check_output_folder(out, "--out")
    path = write_report(data, out)
    click.echo(f"wrote {path}")


def _check_results(data: dict, path) -> None:
    """The structure ``tflbayes bench`` writes: ``configs`` maps bundle names to measured numbers."""
    from tflbayes.bench.report import COST_KEYS, FACETS
    from tflbayes.errors import InvalidInputError

    configs = data.get("configs")
    if not isinstance(configs, dict) or not configs:
        raise InvalidInputError(f"{path}: field `configs` must map bundle names to results (the output of "
                                "`tflbayes bench`).")
    for name, row in configs.items():
        if not isinstance(row, dict):
            raise InvalidInputError(f"{path}: configs[{name!r:.40}] must be an object, found {type(row).__name__}.")
        for k in (*COST_KEYS, *FACETS):
            v = row.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise InvalidInputError(f"{path}: configs[{name!r:.40}].{k} must be a number or null, found {v!r:.40}.")
    for k in ("title", "baseline"):
        if data.get(k) is not None and not isinstance(data[k], str):
            raise InvalidInputError(f"{path}: field `{k}` must be a string.")
    if data.get("environment") is not None and not isinstance(data["environment"], dict):
        raise InvalidInputError(f"{path}: field `environment` must be an object.")


COMMANDS = [bench, report]
