"""``tflbayes report``: a Markdown report of bench results with tables and plots."""
from __future__ import annotations

import json
from pathlib import Path

from tflbayes.bench.pareto import pareto_plot
from tflbayes.errors import InvalidInputError

__all__ = ["write_report", "results_table", "COST_KEYS", "FACETS"]

COST_KEYS = ("latency_ms", "bytes")
FACETS = ("accuracy", "nll", "ece", "ood_auroc_epistemic")
_COLUMNS = [("mode", "mode"), ("precision", "prec."), ("num_samples", "S"), ("latency_ms", "ms/input"),
            ("latency_ratio", "× base"), ("cold_load_ms", "cold ms"), ("bytes", "KB"), ("gzip_bytes", "gz KB"),
            ("peak_rss_mb", "RSS MB"), ("accuracy", "acc"), ("nll", "NLL"), ("brier", "Brier"), ("ece", "ECE"),
            ("misclassification_auroc", "misc AUROC"), ("ood_auroc_total", "OOD AUROC tot"),
            ("ood_auroc_epistemic", "OOD AUROC epi")]


def _fmt(key, v):
    if v is None:
        return "–"
    if key in ("bytes", "gzip_bytes"):
        return f"{v / 1024:.1f}"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def results_table(configs: dict, front=()) -> str:
    """A Markdown table of every configuration; names on a Pareto frontier are bold."""
    head = "| config | " + " | ".join(h for _, h in _COLUMNS) + " |"
    sep = "|" + "---|" * (len(_COLUMNS) + 1)
    rows = [head, sep]
    for name, r in configs.items():
        label = f"**{name}**" if name in front else name
        rows.append(f"| {label} | " + " | ".join(_fmt(k, r.get(k)) for k, _ in _COLUMNS) + " |")
    return "\n".join(rows)


def write_report(results, out_dir) -> Path:
    """Write ``report.md`` with the table, Pareto frontiers (each facet vs latency and vs size),
    and links to the reliability diagrams and uncertainty histograms ``measure_bundles`` wrote."""
    if isinstance(results, (str, Path)):
        p = Path(results)
        if not p.is_file():
            raise InvalidInputError(f"Results file {p} does not exist (run `tflbayes bench` first).")
        try:
            results = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{p} is not valid JSON: {e}") from None
    if "configs" not in results:
        raise InvalidInputError("results have no `configs`: not the output of tflbayes bench.")
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    configs = results["configs"]
    lines = [f"# tflbayes bench report: {results.get('title', '')}".rstrip(": "), ""]
    env = results.get("environment", {})
    if env:
        lines += ["Measured " + ", ".join(f"{k} {v}" for k, v in env.items() if v is not None) + ".", ""]
    lines += [f"Baseline for ratios: `{results.get('baseline')}`. Latency: batch 1, 1 thread, median of "
              f"{results.get('rounds', '?')} interleaved invokes. **Bold**: on the NLL-vs-latency Pareto frontier.", ""]
    fronts = {}
    plots = []
    for cost in COST_KEYS:
        for facet in FACETS:
            path, front = pareto_plot(configs, cost, facet, out / "plots" / f"pareto_{facet}_vs_{cost}.png")
            fronts[(cost, facet)] = front
            plots.append(path)
    lines += [results_table(configs, fronts[("latency_ms", "nll")]), ""]
    if results.get("targets"):
        lines += ["## Targets", "", "| ratio | measured | target | met |", "|---|---|---|---|"]
        for t in results["targets"]:
            got = "–" if t.get("measured") is None else f"{t['measured']:.3f}"
            met = {True: "yes", False: "**no**", None: "–"}[t.get("met")]
            lines.append(f"| {t['name']} | {got} | {t['target']} | {met} |")
        lines.append("")
    lines += ["## Pareto frontiers", ""]
    for p in plots:
        lines.append(f"![{p.stem}](plots/{p.name})")
    lines.append("")
    extra = sorted((out / "plots").glob("reliability_*.png")) + sorted((out / "plots").glob("epistemic_*.png"))
    if extra:
        lines += ["## Reliability diagrams and uncertainty histograms", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in extra]
    path = out / "report.md"
    from tflbayes._io import write_text

    write_text(path, "\n".join(lines) + "\n")
    return path
