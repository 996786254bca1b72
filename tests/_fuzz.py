"""A seeded mutation fuzzer for posterior folders and bundles (used by tests/test_fuzz.py).

Each case copies a valid artifact, applies ONE mutation, then loads and predicts in-process under a
SIGALRM time bound, and classifies what happened:

- ``refused``: a :class:`~tflbayes.errors.TflbayesError` (typed, the wanted answer to a bad file);
- ``same``: loaded, and every output and metadata fact is what the original gives;
- ``changed``: loaded, and something differs (for an unsigned edit: a *silent change*);
- ``untyped``: any other exception (a bug); ``hang``: the time bound passed (a bug).

Mutations are ``signed=False`` (an edit, as a disk error or a careless user makes) or, for
posterior folders, ``signed=True`` (an attacker who also recomputes every checksum, size and field
digest): signed edits may legitimately load, but must never be untyped, hang, or load garbage.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import warnings
from pathlib import Path

import numpy as np

import _tamper as T

EVIL = [[], {}, "ensemble", "", None, True, False, 0, -1, 1, 2, 3, 1e12, 10 ** 12, 2 ** 64, 1.5, float("nan"),
        float("inf"), -1e308, "abstain", [1, 2], [[["x"]]], "x" * 5000, {"a": {"b": []}}, "../../../etc/passwd",
        "Lambda", "stochastic", "dirichlet", "distilled", "members", "batched", "float16", "int8", "edgetpu",
        "tflbayes>MCDropout", "keras.layers", "os", [None], [0.5] * 3]
OUTCOMES = ("refused", "same", "changed", "untyped", "hang")


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_bound(seconds: int):
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------- JSON mutations


def _nodes(obj, path=()):
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, (*path, i))


def _parent(obj, path):
    for p in path[:-1]:
        obj = obj[p]
    return obj


def _variant(value, rng):
    """A value of the same JSON type as ``value`` (what a relabelling edit writes)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return int(rng.choice([value + 1, value - 1, value * 1000, -value, 0]))
    if isinstance(value, float):
        return float(rng.choice([value * 2, -value, value + 1e-3, 0.0]))
    if isinstance(value, str):
        return str(rng.choice([*[e for e in EVIL if isinstance(e, str)][:6], value + "x", value.upper(), value[::-1]]))
    if isinstance(value, list) and value:
        out = list(value)
        op = rng.integers(3)
        if op == 0:
            rng.shuffle(out)
        elif op == 1:
            out.append(out[0])
        else:
            out.pop()
        return out
    return rng_choice(EVIL, rng)


def rng_choice(seq, rng):
    return seq[int(rng.integers(len(seq)))]


def mutate_json(obj, rng):
    """``(mutated copy, description)``: one node replaced, deleted, added to, or nested deeply."""
    obj = json.loads(json.dumps(obj))
    nodes = [p for p, _ in _nodes(obj) if p]
    path = nodes[int(rng.integers(len(nodes)))]
    parent, key = _parent(obj, path), path[-1]
    op = rng_choice(["evil", "evil", "variant", "variant", "delete", "add", "deep"], rng)
    where = "/".join(map(str, path))
    if op == "evil":
        parent[key] = rng_choice(EVIL, rng)
    elif op == "variant":
        parent[key] = _variant(parent[key], rng)
    elif op == "delete":
        del parent[key]
    elif op == "add":
        target = parent[key] if isinstance(parent[key], (dict, list)) else parent
        if isinstance(target, dict):
            target["fuzz"] = rng_choice(EVIL, rng)
        else:
            target.append(rng_choice(EVIL, rng))
    else:
        deep = []
        for _ in range(int(rng.choice([300, 900]))):  # deeper is written as raw text (mutate_text)
            deep = [deep]
        parent[key] = deep
    return obj, f"{op} {where}"


def mutate_text(text: str, rng):
    op = rng_choice(["truncate", "flip", "digits", "nest"], rng)
    if op == "truncate":
        return text[: int(rng.integers(len(text)))], op
    if op == "flip":
        i = int(rng.integers(len(text)))
        return text[:i] + chr((ord(text[i]) + int(rng.integers(1, 90))) % 0x7F or 1) + text[i + 1:], op
    if op == "digits":
        i = text.find(": ", int(rng.integers(len(text))))
        i = text.find(": ") if i < 0 else i
        return text[: i + 2] + "9" * 5000 + ", \"_\": " + text[i + 2:], op
    return "[" * 100_000 + text + "]" * 100_000, op


def _dumps(obj) -> str:
    return json.dumps(obj, allow_nan=True)


# --------------------------------------------------------------------------- posterior folders


def mutate_posterior(path: Path, rng, outside: Path) -> tuple:
    """Apply one mutation to the folder ``path``; returns ``(description, signed)``."""
    kind = rng_choice(["meta", "meta", "meta", "meta-text", "arch", "arch", "arch-text", "npz", "npz-bytes", "file"], rng)
    signed = bool(rng.random() < 0.5) and kind in ("meta", "arch", "npz", "npz-bytes")
    if kind == "meta":
        m, what = mutate_json(T.meta(path), rng)
        if not isinstance(m, dict):
            m = {"not": m}
        (path / "posterior.json").write_text(_dumps(T.resigned(path, m) if signed and _resignable(m) else m))
        return f"posterior.json {what}", signed and _resignable(m)
    if kind == "meta-text":
        text, what = mutate_text((path / "posterior.json").read_text(), rng)
        (path / "posterior.json").write_text(text)
        return f"posterior.json text {what}", False
    if kind in ("arch", "arch-text"):
        f = path / "architecture.json"
        if kind == "arch":
            cfg, what = mutate_json(json.loads(f.read_text()), rng)
            f.write_text(_dumps(cfg))
        else:
            text, what = mutate_text(f.read_text(), rng)
            f.write_text(text)
    elif kind == "npz":
        with np.load(path / "weights.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        key = rng_choice(sorted(arrays), rng)
        a = arrays[key]
        op = rng_choice(["shape", "dtype", "nan", "drop", "extra", "object", "scale"], rng)
        if op == "shape":
            arrays[key] = a.reshape(-1)[:-1] if a.size > 1 else np.zeros(3, np.float32)
        elif op == "dtype":
            arrays[key] = a.astype(rng_choice([np.float64, np.int32, np.float16], rng))
        elif op == "nan":
            b = a.copy()
            b.reshape(-1)[0] = np.nan
            arrays[key] = b
        elif op == "drop":
            arrays.pop(key)
        elif op == "extra":
            arrays["zz_extra"] = np.zeros(4, np.float32)
        elif op == "object":
            o = np.empty(1, dtype=object)
            o[0] = {"x": 1}
            arrays[key] = o
        else:
            arrays[key] = (a * 2).astype(a.dtype)
        np.savez(path / "weights.npz", **arrays)
        what = f"{op} {key}"
    elif kind == "npz-bytes":
        f = path / "weights.npz"
        data = bytearray(f.read_bytes())
        op = rng_choice(["flip", "truncate", "append"], rng)
        if op == "flip":
            i = int(rng.integers(len(data)))
            data[i] ^= 1 << int(rng.integers(8))
        elif op == "truncate":
            data = data[: int(rng.integers(len(data)))]
        else:
            data += b"\0" * 100
        f.write_bytes(bytes(data))
        what = op
    else:
        name = rng_choice(["posterior.json", "architecture.json", "weights.npz"], rng)
        op = rng_choice(["delete", "symlink-out", "directory", "empty", "fifo"], rng)
        f = path / name
        if op == "symlink-out":
            shutil.copy(f, outside)
        f.unlink()
        if op == "symlink-out":
            f.symlink_to(outside)
        elif op == "directory":
            f.mkdir()
        elif op == "empty":
            f.write_bytes(b"")
        elif op == "fifo":
            os.mkfifo(f)
        return f"{name} {op}", False
    if signed:
        T.write_meta(path, T.meta(path), resign=True)
    return f"{kind} {what}", signed


def _resignable(m) -> bool:
    return isinstance(m, dict)


def posterior_facts(post, x) -> dict:
    from tflbayes._keras import tf

    tf.random.set_seed(0)
    p = post.predict(x)
    return {"kind": post.kind, "method": post.method, "options": json.dumps(post.options, sort_keys=True, default=str),
            "class_names": list(post.class_names), "num_samples": post.num_samples,
            **{k: None if getattr(p, k) is None else np.asarray(getattr(p, k)) for k in
               ("probs", "total", "aleatoric", "epistemic")}}


def bundle_facts(b, x) -> dict:
    p = b.predict(x)
    thr = b.thresholds
    return {"mode": b.mode, "precision": b.precision, "num_samples": b.num_samples,
            "class_names": list(b.class_names), "decide": b.decide(x) if thr else None,
            **{k: None if getattr(p, k) is None else np.asarray(getattr(p, k)) for k in
               ("probs", "total", "aleatoric", "epistemic")}}


def same(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    for k in a:
        u, v = a[k], b[k]
        if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
            if u is None or v is None or np.shape(u) != np.shape(v) or not np.allclose(u, v, atol=1e-6, equal_nan=True):
                return False
        elif u != v:
            return False
    return True


def sane(facts: dict) -> bool:
    """What any loaded artifact must give, signed or not: finite probabilities that sum to 1."""
    p = facts["probs"]
    return bool(np.all(np.isfinite(p)) and np.allclose(p.sum(-1), 1, atol=1e-4)
                and all(isinstance(c, str) and c and c != "abstain" for c in facts["class_names"])
                and len(set(facts["class_names"])) == len(facts["class_names"]))


def classify(load, facts_fn, path, x, reference, seconds: int = 30) -> tuple:
    """``(outcome, detail, facts)`` of loading and predicting ``path``."""
    from tflbayes.errors import TflbayesError

    try:
        with time_bound(seconds), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            facts = facts_fn(load(path), x)
    except Hang as e:
        return "hang", str(e), None
    except TflbayesError as e:
        return "refused", str(e)[:200], None
    except Exception as e:  # noqa: BLE001 (what the fuzzer looks for)
        return "untyped", f"{type(e).__name__}: {str(e)[:200]}", None
    return ("same" if same(facts, reference) else "changed"), "", facts


# --------------------------------------------------------------------------- bundles


def mutate_bundle(path: Path, rng, outside: Path) -> str:
    kind = rng_choice(["manifest", "manifest", "manifest", "manifest-text", "graph", "file"], rng)
    if kind == "manifest":
        m, what = mutate_json(T.manifest(path), rng)
        (path / "manifest.json").write_text(_dumps(m))
        return f"manifest.json {what}"
    if kind == "manifest-text":
        text, what = mutate_text((path / "manifest.json").read_text(), rng)
        (path / "manifest.json").write_text(text)
        return f"manifest.json text {what}"
    graphs = sorted(p.name for p in path.glob("*.tflite"))
    name = rng_choice(graphs, rng)
    f = path / name
    if kind == "graph":  # unsigned: the checksum must catch it (a signed flatbuffer edit may crash LiteRT)
        data = bytearray(f.read_bytes())
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
        f.write_bytes(bytes(data))
        return f"{name} bit flip"
    op = rng_choice(["delete", "symlink-out", "directory", "empty", "manifest-symlink-out"], rng)
    if op == "manifest-symlink-out":
        f = path / "manifest.json"
    if op in ("symlink-out", "manifest-symlink-out"):
        shutil.copy(f, outside)
    f.unlink()
    if op in ("symlink-out", "manifest-symlink-out"):
        f.symlink_to(outside)
    elif op == "directory":
        f.mkdir()
    elif op == "empty":
        f.write_bytes(b"")
    return f"{name} {op}"


def campaign(kind: str, src: Path, work: Path, n: int, seed: int, x, reference, load, facts_fn) -> dict:
    """Run ``n`` mutations of ``src``; return counts per outcome and the bad cases."""
    rng = np.random.default_rng(seed)
    counts = {o: 0 for o in OUTCOMES}
    counts.update(signed_loaded=0, signed_changed=0, decision_edits=0)
    bad = []
    for i in range(n):
        case = work / f"case{i}"
        shutil.copytree(src, case, symlinks=True)
        outside = work / f"outside{i}"
        if kind == "posterior":
            what, signed = mutate_posterior(case, rng, outside)
        else:
            what, signed = mutate_bundle(case, rng, outside), False
        outcome, detail, facts = classify(load, facts_fn, case, x, reference)
        counts[outcome] += 1
        if signed and outcome in ("same", "changed"):
            counts["signed_loaded"] += 1
            counts["signed_changed"] += outcome == "changed"
            if not sane(facts):
                bad.append((what, "signed edit loaded garbage"))
        elif outcome == "changed" and kind == "bundle" and _only_decisions(facts, reference):
            counts["decision_edits"] += 1  # threshold value / class-name text: needs a manifest seal
        elif outcome in ("untyped", "hang", "changed"):
            bad.append((what, f"{outcome}: {detail}"))
        shutil.rmtree(case, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(outside)
    counts["bad"] = bad
    return counts


def _only_decisions(facts, reference) -> bool:
    """Everything the graphs compute is unchanged; only decide()'s inputs (names, thresholds) differ."""
    keys = ("probs", "total", "aleatoric", "epistemic", "mode", "precision", "num_samples")
    same_core = same({k: facts[k] for k in keys}, {k: reference[k] for k in keys})
    names_ok = len(facts["class_names"]) == len(reference["class_names"]) and math.isfinite(len(facts["class_names"]))
    return same_core and names_ok
