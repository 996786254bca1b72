"""Test helpers that tamper with posterior folders and bundles the way an attacker who knows the format would."""
from __future__ import annotations

import json
from pathlib import Path

from tflbayes._io import digest_json, sha256_file

FILES = ("architecture.json", "weights.npz")


def meta(path) -> dict:
    return json.loads((Path(path) / "posterior.json").read_text())


def write_meta(path, m: dict, resign: bool = False) -> None:
    """Write posterior.json; with ``resign`` first recompute every checksum, size and field digest."""
    path = Path(path)
    if resign:
        m = resigned(path, m)
    (path / "posterior.json").write_text(json.dumps(m))


def resigned(path, m: dict) -> dict:
    """``m`` with checksums, sizes and field digests that match the folder's files as they are now."""
    path = Path(path)
    m = dict(m)
    m["sha256"] = {f: sha256_file(path / f) for f in FILES}
    m["sizes"] = {f: (path / f).stat().st_size for f in FILES}
    m.pop("fields_sha256", None)
    m["fields_sha256"] = {k: digest_json(v) for k, v in m.items()}
    return m


def edit_architecture(path, edit, resign: bool = True) -> None:
    """Rewrite architecture.json through ``edit(config)`` and (by default) re-sign the folder."""
    path = Path(path)
    config = json.loads((path / "architecture.json").read_text())
    edit(config)
    (path / "architecture.json").write_text(json.dumps(config))
    if resign:
        write_meta(path, meta(path), resign=True)


def manifest(path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def write_manifest(path, m: dict, reseal: bool = True) -> None:
    """Write manifest.json; with ``reseal`` (default) recompute its seal, as an attacker who knows the
    format would, so the checks behind the seal are what the edit meets."""
    from tflbayes.runtime.manifest import SEAL, seal

    if reseal and SEAL in m:
        m = seal(m)
    (Path(path) / "manifest.json").write_text(json.dumps(m))
