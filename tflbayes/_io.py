"""Atomic, pickle-free, bounded file helpers shared by posterior folders and LiteRT bundles (no TensorFlow).

What they guarantee:

- :func:`atomic_dir` replaces a folder in ONE ``renameat2(RENAME_EXCHANGE)`` on Linux (the old
  and the new folder swap places atomically, so ``path`` always names a complete folder), with a
  two-rename fallback elsewhere. Its temporaries are named ``.<name>.tmp-<pid>-<random>``; the
  next write to the same place removes those whose process is dead (a ``kill -9`` mid-save).
- Files and folders get the permissions the umask gives (not 0700 / 0600).
- :func:`read_json` reads at most ``max_bytes``, and turns every decoding problem (truncation,
  5,000-digit integers, nesting deep enough for ``RecursionError``) into the caller's error type.
- :func:`check_member` refuses symlinks that leave a folder and anything that is not a regular file.
- :func:`load_npz` never unpickles and refuses members larger than the caller's bound (zip bombs).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tflbayes._checks import check_path

__all__ = ["atomic_dir", "sha256_file", "read_json", "require_field", "write_json", "write_text", "load_npz",
           "check_member", "digest_json", "clean_stale_temporaries", "MAX_JSON_BYTES", "MAX_JSON_DEPTH",
           "ARTIFACT_MARKERS"]

ARTIFACT_MARKERS = ("posterior.json", "manifest.json")  # what atomic_dir may replace: its own artifacts
MAX_JSON_BYTES = 64 << 20  # metadata files are kilobytes; an architecture JSON a few megabytes at most
MAX_JSON_DEPTH = 200  # a Keras architecture nests ~15 deep
_STALE_AGE_S = 24 * 3600  # a temporary this old is stale even if its PID was reused


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_json(obj) -> str:
    """sha256 of ``obj``'s canonical JSON (sorted keys, no spaces): what a metadata field's digest is."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- permissions


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _respect_umask(path, folder: bool) -> None:
    """``mkdtemp`` / ``mkstemp`` create 0700 / 0600; give what a plain ``mkdir`` / ``open`` would."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


# --------------------------------------------------------------------------- atomic folder replacement

_TMP_TAG, _OLD_TAG = "tmp", "old"


def _temp_prefix(name: str, tag: str) -> str:
    return f".{name}.{tag}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process (or a number we cannot test): leave it alone
    return True


def clean_stale_temporaries(path) -> list:
    """Remove ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` next to ``path`` left by dead writers.

    A temporary belongs to a dead writer when its PID no longer runs, or when it is older than a
    day (the PID was reused). Returns the removed paths. Only names this module makes are touched.
    """
    path = Path(path).absolute()
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        for tag in (_TMP_TAG, _OLD_TAG):
            head = f".{path.name}.{tag}-"
            if not p.name.startswith(head):
                continue
            pid_text = p.name[len(head):].split("-", 1)[0]
            if not pid_text.isdigit():
                continue
            pid = int(pid_text)
            try:
                age = time.time() - p.lstat().st_mtime
            except OSError:
                continue
            if pid == os.getpid() or (_pid_alive(pid) and age < _STALE_AGE_S):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder that replaces ``path`` only if the block succeeds.

    The folder is built next to ``path`` (same file system). On success it takes ``path``'s
    place in one atomic exchange where the OS has one (Linux), so ``path`` names the complete
    old folder until it names the complete new one; elsewhere two renames leave a moment in
    which ``path`` is absent (never half-written). A failure leaves no trace and keeps whatever
    was at ``path``. Stale temporaries of earlier, killed writes to ``path`` are removed first.
    """
    from tflbayes.errors import InvalidInputError

    path = check_path("path", path).absolute()
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InvalidInputError(f"{path} exists and is not a folder; refusing to replace it.")
    if path.is_dir() and any(path.iterdir()) and not any((path / m).exists() for m in ARTIFACT_MARKERS):
        raise InvalidInputError(f"{path} is a non-empty folder that is not a tflbayes posterior or bundle; "
                                "refusing to replace it (give a new path).")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidInputError(f"Cannot create {path}: {path.parent} is not a folder.") from None
    except PermissionError:
        raise InvalidInputError(f"Cannot create {path}: no permission to create {path.parent}.") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"Cannot write {path}: the folder {path.parent} is not writable.")
    clean_stale_temporaries(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name, _TMP_TAG), dir=path.parent))
    except OSError as e:  # read-only file system, quota
        raise InvalidInputError(f"Cannot write {path}: {e.strerror or e}.") from None
    try:
        _respect_umask(tmp, folder=True)
        yield tmp
        if path.exists():
            if _exchange(tmp, path):  # tmp now holds the old folder
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name, _OLD_TAG), dir=path.parent))
            os.replace(path, old)  # a rename onto an empty folder
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- files


def write_text(path, text: str) -> None:
    """Write a text file atomically (temp file, then rename), with the umask's permissions."""
    path = Path(path)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name, _TMP_TAG), dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        _respect_umask(tmp, folder=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Write JSON atomically (temp file, then rename)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def check_member(root, name, error_cls, what: str = "file") -> Path:
    """``root / name`` if it is a regular file inside ``root`` (after following symlinks).

    Raises ``error_cls`` for names that leave the folder (``..``, absolute paths, symlinks to
    elsewhere) and for anything that is not a regular file (FIFOs, devices, folders).
    """
    root = Path(root)
    if not isinstance(name, str) or not name or "\x00" in name or Path(name).is_absolute() \
            or ".." in Path(name).parts:
        raise error_cls(f"{root}: {what} name {name!r:.100} must be a relative path inside the folder.")
    p = root / name
    try:
        real_root, real = root.resolve(), p.resolve()
    except (OSError, RuntimeError) as e:  # symlink loops
        raise error_cls(f"{p} cannot be resolved ({e}).") from None
    if real_root != real and real_root not in real.parents:
        raise error_cls(f"{p} is a symlink to {real}, outside the folder {root}; refused.")
    if not p.exists():
        raise error_cls(f"{p} is missing.")
    if not p.is_file():
        raise error_cls(f"{p} is not a regular file.")
    return p


def read_json(path, error_cls, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> dict:
    """Read a JSON object of at most ``max_bytes``, raising ``error_cls`` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise error_cls(f"{what} {path} does not exist (or is not a regular file).")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error_cls(f"{what} {path} is {size} bytes, more than the {max_bytes} a tflbayes file may hold.")
        with open(path, "rb") as f:
            obj = json.loads(f.read(max_bytes + 1).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error_cls(f"{what} {path} is not valid JSON ({e}); it may be truncated or edited.") from None
    except RecursionError:
        raise error_cls(f"{what} {path} nests JSON too deeply to read; it was edited.") from None
    except ValueError as e:  # integers beyond sys.get_int_max_str_digits()
        raise error_cls(f"{what} {path} holds a value JSON cannot hold here ({str(e)[:120]}).") from None
    if not isinstance(obj, dict):
        raise error_cls(f"{what} {path} must hold a JSON object, found {type(obj).__name__}.")
    if _depth(obj) > MAX_JSON_DEPTH:
        raise error_cls(f"{what} {path} nests JSON more than {MAX_JSON_DEPTH} levels deep; it was edited.")
    return obj


def _depth(obj) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion limit)."""
    best, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            o = list(o.values())
        if isinstance(o, list):
            best = max(best, d)
            if d <= MAX_JSON_DEPTH:
                stack.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return best


def require_field(obj: dict, key: str, types, where, error_cls):
    """``obj[key]`` if present and of ``types`` (``bool`` is never an ``int``); else ``error_cls``."""
    if not isinstance(obj, dict):
        raise error_cls(f"{where}: must be a JSON object, found {type(obj).__name__}.")
    if key not in obj:
        raise error_cls(f"{where}: field `{key}` is missing.")
    value = obj[key]
    types_t = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types_t):
        raise error_cls(f"{where}: field `{key}` has the wrong type ({type(value).__name__}).")
    return value


def load_npz(path, error_cls, max_bytes: int | None = None) -> dict:
    """Load every array of an ``.npz`` with ``allow_pickle=False``; errors name the file.

    ``max_bytes`` bounds the uncompressed size of all members together (checked from the zip
    directory before anything is decompressed).
    """
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise error_cls(f"{path} is missing.")
    try:
        if max_bytes is not None:
            with zipfile.ZipFile(path) as zf:
                total = sum(i.file_size for i in zf.infolist())
            if total > max_bytes:
                raise error_cls(f"{path} unpacks to {total} bytes, more than the {max_bytes} its metadata declares.")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        raise error_cls(f"{path} holds object arrays, which would need unpickling, or a corrupt array header; "
                        f"refused ({str(e)[:200]}).") from None
    except error_cls:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, AttributeError on crafted headers
        raise error_cls(f"{path} cannot be read as .npz ({type(e).__name__}: {str(e)[:200]}); it may be truncated.") from None
