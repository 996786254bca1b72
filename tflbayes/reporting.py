"""Plain-text tables for the terminal, shared by the CLI and the demo.

Rows are dicts; columns are keys or ``(key, header)`` pairs. Numbers print with four decimals
(large ones as integers), missing values as ``n/a``::

    from tflbayes.reporting import QUALITY_COLUMNS, print_table
    print_table([{"name": "ens", "accuracy": 0.97, "nll": 0.11}], QUALITY_COLUMNS[:3])
"""
from __future__ import annotations

__all__ = ["QUALITY_COLUMNS", "format_value", "format_table", "print_table"]

# the quality facets of tb.metrics.evaluate, in the order the CLI and the demo print them
QUALITY_COLUMNS = [
    ("name", "model"), ("accuracy", "acc"), ("nll", "NLL"), ("brier", "Brier"), ("ece", "ECE"),
    ("misclassification_auroc", "misc-AUROC"), ("ood_auroc_total", "OOD-AUROC(total)"),
    ("ood_auroc_epistemic", "OOD-AUROC(epist)"),
]


def format_value(v) -> str:
    """One cell: ``n/a`` for None, floats with 4 decimals (>= 1000: no decimals), else ``str``."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_table(rows: list, columns: list, title: str | None = None) -> str:
    """``rows`` (dicts) as a fixed-width table with the given columns (keys or ``(key, header)``)."""
    head = [c if isinstance(c, str) else c[1] for c in columns]
    keys = [c if isinstance(c, str) else c[0] for c in columns]
    cells = [[format_value(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def print_table(rows: list, columns: list, title: str | None = None) -> str:
    """Print :func:`format_table` to standard output (through click, as the CLI does); returns the text."""
    import click

    text = format_table(rows, columns, title)
    click.echo(text)
    return text
