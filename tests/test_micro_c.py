"""The C99 uncertainty library (converters/micro/tflbayes_uq.c) against the shared golden vectors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tflbayes.uncertainty import golden
from tflbayes.uncertainty.prng import Xoshiro128

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "uncertainty_golden.json"


def test_golden_file_is_a_fresh_generation():
    # the committed file is what `python -m tflbayes.uncertainty.golden` writes now (it cannot drift)
    assert GOLDEN.read_text() == golden.dumps(golden.generate())
    obj = json.loads(GOLDEN.read_text())
    assert obj["format"] == "tflbayes-golden" and obj["version"] == 1
    assert {"decompose", "decompose_logits", "dirichlet", "digamma", "decide", "dequantize", "rng"} <= set(obj)


def test_prng_reference_values():
    g = Xoshiro128(0)
    g.s = [1, 2, 3, 4]  # the xoshiro128** authors' reference state
    assert [g.next_u32() for _ in range(6)] == [11520, 0, 5927040, 70819200, 2031721883, 1637235492]
    g.seed(7)
    u = g.uniform(20000)
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / len(u))
    z = g.normal(20001)
    assert len(z) == 20001 and abs(z.mean()) < 4 / np.sqrt(len(z)) and abs(z.std() - 1) < 0.02
