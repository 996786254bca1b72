"""Golden vectors for the device uncertainty libraries (C99 ``tflbayes_uq``, the Android Java library).

``python -m tflbayes.uncertainty.golden [--out tests/golden/uncertainty_golden.json]`` writes one
JSON object computed from the numpy reference (:func:`tflbayes.uncertainty.decompose`,
:func:`tflbayes.uncertainty.dirichlet_decompose`, ``scipy.special.digamma``) and the reference PRNG
(:mod:`tflbayes.uncertainty.prng`). Every device implementation is tested against the same file;
``tests/test_micro_c.py`` checks the committed file equals a fresh generation, so it cannot drift.

Sections (all values nats; numbers are JSON floats written with ``repr`` precision):

- ``decompose``: ``probs`` ``[S][C]`` -> ``mean_probs``, ``total``, ``aleatoric``, ``epistemic``
  (exact zeros, one-hots, S = 1, identical rows, C = 2..10).
- ``decompose_logits``: ``logits`` ``[S][C]`` (softmax per row first; includes logits of +-80).
- ``dirichlet``: ``alpha`` ``[C]`` over ``[1e-3, 1e4]`` -> the closed-form decomposition.
- ``digamma``: ``x`` over ``[1e-3, 1e4]`` (log-spaced plus awkward values) -> ``psi``.
- ``decide``: ``mean_probs``, ``score``, ``threshold`` -> ``class_index`` (the first argmax, or -1
  when ``score > threshold``).
- ``dequantize``: int8 ``q``, ``scale``, ``zero_point`` -> ``values = scale * (q - zero_point)``.
- ``quantize``: float ``x`` -> int8 ``q = clamp(round_half_away(x / scale) + zero_point, -128, 127)``
  (TFLite's rounding).
- ``crc32``: ``bytes_hex`` -> ``crc32`` (IEEE 802.3, zlib's; the model-array checksum).
- ``rng``: ``algorithm``, ``seed`` and the first 64 ``uniform`` and (after reseeding) 64 ``normal``
  values, plus a second seed's values.
"""
from __future__ import annotations

import argparse
import json
import math
import zlib
from pathlib import Path

import numpy as np

from tflbayes.uncertainty.decompose import decompose, dirichlet_decompose
from tflbayes.uncertainty.prng import ALGORITHM, Xoshiro128

__all__ = ["generate", "write", "DEFAULT_PATH", "FORMAT", "VERSION"]

FORMAT = "tflbayes-golden"
VERSION = 1
DEFAULT_PATH = Path("tests/golden/uncertainty_golden.json")
RNG_SEED = 12345


def _f(v) -> float:
    return float(v) + 0.0  # no -0.0 in the file


def _normalize(rows) -> np.ndarray:
    r = np.asarray(rows, dtype=np.float64)
    return r / r.sum(axis=-1, keepdims=True)


def _decompose_case(probs: np.ndarray) -> dict:
    # the device sees float32 inputs: generate from the float32-rounded values
    p = np.asarray(probs, dtype=np.float32).astype(np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    p = np.asarray(p, dtype=np.float32).astype(np.float64)
    t, a, e = decompose(p[:, None, :])
    return {"probs": p.tolist(), "mean_probs": p.mean(axis=0).tolist(),
            "total": _f(t[0]), "aleatoric": _f(a[0]), "epistemic": _f(e[0])}


def _decompose_cases(rng) -> list:
    cases = [
        [[1.0, 0.0]],                                    # S = 1, one-hot
        [[0.5, 0.5]],                                    # S = 1, uniform
        [[1.0, 0.0], [0.0, 1.0]],                        # opposite one-hots: all epistemic
        [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]],  # identical one-hots: zero everything
        [[0.2, 0.3, 0.5]] * 4,                           # identical rows: epistemic 0
        [[0.0, 0.25, 0.75], [0.5, 0.0, 0.5]],            # zeros inside
        [[1.0 / 10] * 10] * 3,                           # maximal entropy, C = 10
        [[1.0] + [0.0] * 9, [0.0] * 9 + [1.0]],          # C = 10 one-hots
        [[1e-7, 1 - 1e-7], [1 - 1e-7, 1e-7]],            # nearly one-hot
    ]
    out = [_decompose_case(np.asarray(c, dtype=np.float64)) for c in cases]
    for c in range(2, 11):                               # random Dirichlet draws, C = 2..10
        for s in (1, 2, 5, 8):
            conc = rng.choice([0.1, 1.0, 10.0])
            p = rng.dirichlet(np.full(c, conc), size=s)
            if c % 3 == 0:
                p[:, 0] = 0.0                                # an exact zero column
                p = _normalize(p)
            out.append(_decompose_case(p))
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _decompose_logits_cases(rng) -> list:
    cases = [np.array([[0.0, 0.0]]), np.array([[80.0, -80.0], [-80.0, 80.0]]),
             np.array([[80.0, 79.0, -80.0]] * 3), np.array([[-80.0, -80.0, -80.0, -80.0]]),
             np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])]
    for c in (2, 3, 5, 10):
        for s in (1, 4, 8):
            cases.append(rng.normal(0.0, rng.choice([0.5, 3.0, 20.0]), size=(s, c)))
    out = []
    for z in cases:
        z = np.asarray(z, dtype=np.float32).astype(np.float64)
        p = _softmax(z)
        t, a, e = decompose(p[:, None, :])
        out.append({"logits": z.tolist(), "mean_probs": p.mean(axis=0).tolist(),
                    "total": _f(t[0]), "aleatoric": _f(a[0]), "epistemic": _f(e[0])})
    return out


def _dirichlet_cases(rng) -> list:
    cases = [[1.0, 1.0], [1e-3, 1e-3], [1e4, 1e4], [1e-3, 1e4], [1e4] + [1e-3] * 9, [1.0] * 10,
             [0.5, 2.0, 7.5], [100.0, 1.0, 1.0, 1.0], [1e-3] * 10, [1e4] * 10]
    for c in range(2, 11):
        for _ in range(3):
            cases.append(np.exp(rng.uniform(math.log(1e-3), math.log(1e4), size=c)).tolist())
    out = []
    for alpha in cases:
        a = np.asarray(alpha, dtype=np.float32).astype(np.float64)
        t, al, e = dirichlet_decompose(a[None, :])
        out.append({"alpha": a.tolist(), "mean_probs": (a / a.sum()).tolist(),
                    "total": _f(t[0]), "aleatoric": _f(al[0]), "epistemic": _f(e[0])})
    return out


def _digamma_cases() -> list:
    from scipy.special import digamma

    xs = list(np.logspace(-3, 4, 57))
    xs += [1.0, 2.0, 0.5, 1.5, 5.999, 6.0, 6.001, 9.999, 10.0, 1e-3, 1e4, 1.4616321449683622, 0.1, 3.0,
           1e4 + 1.0, 1e-3 + 1.0, 123.456]
    xs = sorted({float(np.float32(x)) for x in xs})
    return [{"x": x, "psi": _f(digamma(x))} for x in xs]


def _decide_cases(rng) -> list:
    cases = [([0.7, 0.3], 0.1, 0.2), ([0.7, 0.3], 0.3, 0.2), ([0.3, 0.7], 0.2, 0.2),  # score == threshold accepts
             ([0.5, 0.5], 0.0, 1.0), ([0.2, 0.4, 0.4], 0.5, 0.6),                   # ties: the first argmax
             ([0.1] * 9 + [0.1], 2.3, 2.0), ([0.0, 0.0, 1.0], 0.0, 0.0)]
    for c in (2, 5, 10):
        for _ in range(3):
            p = rng.dirichlet(np.ones(c))
            cases.append((p.tolist(), float(rng.uniform(0, 1)), float(rng.uniform(0, 1))))
    out = []
    for p, score, thr in cases:
        p = np.asarray(p, dtype=np.float32).astype(np.float64)
        k = -1 if np.float32(score) > np.float32(thr) else int(np.argmax(p))
        out.append({"mean_probs": p.tolist(), "score": float(np.float32(score)), "threshold": float(np.float32(thr)),
                    "class_index": k})
    return out


def _dequantize_cases() -> list:
    cases = [(list(range(-128, 128, 17)) + [127], 1.0 / 256.0, -128), ([-128, 0, 127], 0.00390625, 0),
             ([-5, 3, 100], 0.0123456, 7), ([-128, -1, 0, 1, 127], 0.5, 127)]
    out = []
    for q, scale, zp in cases:
        scale = float(np.float32(scale))
        out.append({"q": q, "scale": scale, "zero_point": zp,
                    "values": [float(np.float32(scale * (v - zp))) for v in q]})
    return out


def _round_half_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def _quantize_cases() -> list:
    cases = [([0.0, 0.25, -0.25, 0.75, -0.75, 1000.0, -1000.0, 0.1, 0.49], 0.5, 0),  # ties away from zero
             ([0.0, 0.5, 1.0, -0.2], 1.0 / 255.0, -128), ([0.3, -1.7, 2.2, 12.0], 0.0123456, 7)]
    out = []
    for x, scale, zp in cases:
        scale = float(np.float32(scale))
        q = [max(-128, min(127, _round_half_away(float(np.float32(np.float32(v) / np.float32(scale)))) + zp)) for v in x]
        out.append({"x": [float(np.float32(v)) for v in x], "scale": scale, "zero_point": zp, "q": q})
    return out


def _crc_cases() -> list:
    blobs = [b"", b"a", b"123456789", bytes(range(256)), b"TFL3" * 33]
    return [{"bytes_hex": b.hex(), "crc32": zlib.crc32(b) & 0xFFFFFFFF} for b in blobs]


def _rng_section() -> dict:
    g = Xoshiro128(RNG_SEED)
    u32 = [g.next_u32() for _ in range(8)]
    g.seed(RNG_SEED)
    uniform = g.uniform(64)
    g.seed(RNG_SEED)
    normal = g.normal(64)
    g.seed(0)
    return {"algorithm": ALGORITHM, "seed": RNG_SEED, "u32": u32,
            "uniform": [float(v) for v in uniform], "normal": [float(v) for v in normal],
            "seed_0": {"uniform": [float(v) for v in g.uniform(8)], "normal": [float(v) for v in g.normal(7)]}}


def generate() -> dict:
    """The golden object (deterministic: fixed seeds, no time stamps)."""
    rng = np.random.default_rng(20261202)
    return {
        "format": FORMAT, "version": VERSION, "generated_by": "python -m tflbayes.uncertainty.golden",
        "units": "nats; probabilities and concentrations are float32-representable",
        "decompose": _decompose_cases(rng),
        "decompose_logits": _decompose_logits_cases(rng),
        "dirichlet": _dirichlet_cases(rng),
        "digamma": _digamma_cases(),
        "decide": _decide_cases(rng),
        "dequantize": _dequantize_cases(),
        "quantize": _quantize_cases(),
        "crc32": _crc_cases(),
        "rng": _rng_section(),
    }


def dumps(obj: dict) -> str:
    """The file's text: one case per line, numbers with repr precision."""
    lines = ["{"]
    keys = list(obj)
    for i, k in enumerate(keys):
        v = obj[k]
        end = "," if i + 1 < len(keys) else ""
        if isinstance(v, list):
            body = ",\n    ".join(json.dumps(c) for c in v)
            lines.append(f'  {json.dumps(k)}: [\n    {body}\n  ]{end}')
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}{end}")
    return "\n".join(lines) + "\n}\n"


def write(path=DEFAULT_PATH) -> Path:
    """Write the golden file atomically and return its path."""
    from tflbayes._io import write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, dumps(generate()))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tflbayes.uncertainty.golden", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_PATH), help=f"output JSON (default {DEFAULT_PATH})")
    args = ap.parse_args(argv)
    print(f"wrote {write(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
