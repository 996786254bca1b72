"""Pareto frontiers: which configurations are not beaten on both cost and quality."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

__all__ = ["LOWER_IS_BETTER", "pareto_front", "pareto_plot"]

# quality facets where smaller is better; the others (accuracy, AUROCs) are larger-is-better
LOWER_IS_BETTER = {"nll", "brier", "ece"}


def pareto_front(cost, quality, lower_quality_is_better: bool) -> List[int]:
    """Indices of the non-dominated points (lower cost and better quality), sorted by cost.

    A point is dominated when another is no worse on both axes and strictly better on one.
    """
    c = np.asarray(cost, float)
    q = np.asarray(quality, float)
    q = q if lower_quality_is_better else -q
    keep = []
    for i in range(len(c)):
        if not np.isfinite(c[i]) or not np.isfinite(q[i]):
            continue
        dominated = np.any((c <= c[i]) & (q <= q[i]) & ((c < c[i]) | (q < q[i])))
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: c[i])


def pareto_plot(configs: Dict[str, dict], cost_key: str, quality_key: str, path, title=None):
    """Scatter every configuration on (cost, quality), join and label the non-dominated ones."""
    from tflbayes.metrics.plots import new_figure, save_figure

    names = [n for n, r in configs.items() if r.get(quality_key) is not None and r.get(cost_key) is not None]
    cost = [configs[n][cost_key] for n in names]
    qual = [configs[n][quality_key] for n in names]
    front = pareto_front(cost, qual, quality_key in LOWER_IS_BETTER)
    fig, ax = new_figure(height=4.2)
    ax.scatter(cost, qual, color="0.6", s=22, label="configuration")
    if front:
        ax.plot([cost[i] for i in front], [qual[i] for i in front], "-o", color="C3", ms=5, label="Pareto frontier")
    for i, n in enumerate(names):
        ax.annotate(n, (cost[i], qual[i]), fontsize=6, xytext=(3, 3), textcoords="offset points",
                    color="C3" if i in front else "0.35")
    ax.set_xscale("log")
    ax.set_xlabel(cost_key.replace("_", " "))
    ax.set_ylabel(quality_key.replace("_", " ") + (" (lower is better)" if quality_key in LOWER_IS_BETTER else ""))
    ax.set_title(title or f"{quality_key} vs {cost_key}", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path), [names[i] for i in front]
