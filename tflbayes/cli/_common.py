"""CLI plumbing: one-line errors with exit code 2, tables, option parsing."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from tflbayes.errors import TflbayesError
from tflbayes.reporting import print_table  # the table printer lives with the reporting code

__all__ = ["friendly_errors", "fail", "print_table", "parse_options", "check_output_dir", "check_output_file",
           "check_output_folder"]


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
        except OSError as e:  # an output path that cannot be written (permissions, read-only, a file in the way)
            fail(f"cannot write {e.filename or ''}: {e.strerror or e}".replace("write : ", "write: "))

    return wrapper


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    anchor = _first_existing(path.parent)
    if not anchor.is_dir():
        fail(f"{what} {path} cannot be created: {anchor} is a file, not a folder.")
    if not os.access(anchor, os.W_OK | os.X_OK):
        fail(f"{what} {path} cannot be created: {anchor} is not writable (permissions or a read-only file system).")


def check_output_dir(path, what: str = "output folder") -> Path:
    """Fail now (before any work) unless ``path`` can become a tflbayes folder.

    Refused: an existing file, a non-empty folder that is not a posterior or bundle (it would be
    replaced), a path under a file, and an unwritable or read-only location.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(f"{what} {path} is an existing file; give a folder path.")
    if path.is_dir():
        if any(path.iterdir()) and not any((path / m).exists() for m in ("posterior.json", "manifest.json")):
            fail(f"{what} {path} is a non-empty folder that is not a tflbayes posterior or bundle; refusing to replace it.")
        if not os.access(path.parent if path.parent.exists() else path, os.W_OK | os.X_OK):
            fail(f"{what} {path} cannot be replaced: {path.parent} is not writable.")
        return path
    _writable_parent(path, what)
    return path


def check_output_file(path, what: str = "output file") -> Path:
    """Fail now unless ``path`` can be written as a file (not a folder, not under a file, writable)."""
    path = Path(path)
    if path.is_dir():
        fail(f"{what} {path} is a folder; give a file path.")
    if path.exists() and not os.access(path, os.W_OK):
        fail(f"{what} {path} is not writable.")
    _writable_parent(path, what)
    return path


def check_output_folder(path, what: str = "output folder") -> Path:
    """Fail now unless ``path`` is, or can be created as, a writable folder (files are added to it)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(f"{what} {path} is an existing file; give a folder path.")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            fail(f"{what} {path} is not writable.")
        return path
    _writable_parent(path, what)
    return path


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
