"""CLI plumbing: one-line errors with exit code 2, tables, option parsing."""
from __future__ import annotations

import functools
import json
import sys

import click

from tflbayes.errors import TflbayesError
from tflbayes.reporting import print_table  # the table printer lives with the reporting code

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
