"""``tflbayes bench | report``: quality × latency × storage, side by side."""
from __future__ import annotations

from pathlib import Path

import click

from tflbayes.cli._common import friendly_errors, print_table

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

    if suite:
        from tflbayes.bench.suite import run_suite

        out = out or "benchmarks/results"
        run_suite(out, datasets=tuple(d.strip() for d in data.split(",")), epochs=epochs, rounds=rounds)
        click.echo(f"wrote the standard suite's results, plots and reports to {out}")
        return
    if not bundles:
        raise InvalidInputError("give bundle folders to measure, or --suite standard.")
    ds = tb.data.load(data)
    x_ood = tb.data.ood(ds, ood_kind, seed=1)
    named = {Path(b).name: b for b in bundles}
    out = out or "bench_results.json"
    plots = Path(out).with_suffix("").as_posix() + "_plots"
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
    from tflbayes.bench.report import write_report

    out = out or Path(results).with_suffix("").as_posix() + "_report"
    path = write_report(results, out)
    click.echo(f"wrote {path}")


COMMANDS = [bench, report]
