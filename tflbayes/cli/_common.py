"""CLI plumbing: one-line errors with exit code 2, tables, option parsing."""
from __future__ import annotations

import functools
import json
import sys

import click

from tflbayes.errors import TflbayesError

__all__ = ["friendly_errors", "fail", "print_table", "parse_options"]


def fail(message: str):
    """Print one clear line and exit 2 (the CLI's answer to bad input)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def friendly_errors(fn):
    """Turn tflbayes's typed errors (and ValueError from bad options) into one line, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (TflbayesError, ValueError, FileNotFoundError) as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)

    return wrapper


def parse_options(pairs) -> dict:
    """``key=value`` pairs; values parsed as JSON where possible (numbers, true, null, lists)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--option")
        k, v = pair.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def print_table(rows: list, columns: list, title: str | None = None) -> str:
    """Print ``rows`` (dicts) as a fixed-width table with the given columns; returns the text."""
    head = [c if isinstance(c, str) else c[1] for c in columns]
    keys = [c if isinstance(c, str) else c[0] for c in columns]
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    text = "\n".join(lines)
    click.echo(text)
    return text
