"""Atomic, pickle-free file helpers shared by posterior folders and LiteRT bundles (no TensorFlow)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_dir", "sha256_file", "read_json", "require_field", "write_json", "write_text", "load_npz"]


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder that replaces ``path`` only if the block succeeds.

    The folder is built next to ``path`` (same file system) and moved into place with renames,
    so a reader never sees a half-written folder, and a failure leaves no trace and keeps
    whatever was at ``path`` before.
    """
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        from tflbayes.errors import InvalidInputError

        raise InvalidInputError(f"{path} exists and is not a folder; refusing to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path, text: str) -> None:
    """Write a text file atomically (temp file, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Write JSON atomically (temp file, then rename)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path, error_cls, what: str = "file") -> dict:
    """Read a JSON object, raising ``error_cls`` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise error_cls(f"{what} {path} is missing.")
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error_cls(f"{what} {path} is not valid JSON ({e}); it may be truncated or edited.") from None
    if not isinstance(obj, dict):
        raise error_cls(f"{what} {path} must hold a JSON object, found {type(obj).__name__}.")
    return obj


def require_field(obj: dict, key: str, types, where, error_cls):
    """``obj[key]`` if present and of ``types``; else ``error_cls`` naming ``where`` and the field."""
    if key not in obj:
        raise error_cls(f"{where}: field `{key}` is missing.")
    if not isinstance(obj[key], types):
        raise error_cls(f"{where}: field `{key}` has the wrong type ({type(obj[key]).__name__}).")
    return obj[key]


def load_npz(path, error_cls) -> dict:
    """Load every array of an ``.npz`` with ``allow_pickle=False``; errors name the file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise error_cls(f"{path} is missing.")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        raise error_cls(f"{path} holds object arrays, which would need unpickling; refused ({e}).") from None
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError on truncated files
        raise error_cls(f"{path} cannot be read as .npz ({type(e).__name__}: {e}); it may be truncated.") from None
