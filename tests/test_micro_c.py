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


# -- the C library against the golden vectors ------------------------------------------------------
import pytest  # noqa: E402

from tflbayes.converters.micro import toolchain  # noqa: E402
from tflbayes.converters.micro.golden_header import golden_header  # noqa: E402

LIB = [toolchain.SOURCE_DIR / "tflbayes_uq.c"]
TEST_MAIN = toolchain.TEST_DIR / "test_golden.c"


def _header_dir(tmp_path, obj=None) -> Path:
    obj = obj if obj is not None else json.loads(GOLDEN.read_text())
    (tmp_path / "golden_vectors.h").write_text(golden_header(obj))
    return tmp_path


def _build_host(tmp_path, obj=None) -> Path:
    inc = [toolchain.SOURCE_DIR, _header_dir(tmp_path, obj)]
    return toolchain.compile_host([TEST_MAIN, *LIB], tmp_path / "test_golden", include_dirs=inc)


@pytest.mark.skipif(toolchain.tool_missing("gcc") is not None, reason=str(toolchain.tool_missing("gcc")))
def test_c_library_matches_golden_vectors_on_host(tmp_path):
    import subprocess

    r = subprocess.run([str(_build_host(tmp_path))], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    checks = int(r.stdout.split("golden: ")[1].split()[0])
    assert checks > 1000 and " 0 failures" in r.stdout


@pytest.mark.skipif(toolchain.tool_missing("gcc") is not None, reason=str(toolchain.tool_missing("gcc")))
def test_c_golden_test_fails_on_a_wrong_expectation(tmp_path):
    # the harness can fail: move one Dirichlet epistemic value by 1e-4 and one uniform by 1 ulp
    import subprocess

    obj = json.loads(GOLDEN.read_text())
    obj["dirichlet"][3]["epistemic"] += 1e-4
    obj["rng"]["uniform"][5] = float(np.nextafter(np.float32(obj["rng"]["uniform"][5]), np.float32(1)))
    r = subprocess.run([str(_build_host(tmp_path, obj))], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "FAIL dirichlet[3]" in r.stdout and "FAIL rng.uniform (bit-exact)[5]" in r.stdout
    assert " 2 failures" in r.stdout


@pytest.mark.skipif(toolchain.tool_missing("gcc") is not None, reason=str(toolchain.tool_missing("gcc")))
def test_c_library_is_strict_c99_without_warnings(tmp_path):
    extra = ["-pedantic", "-Wconversion", "-Wdouble-promotion", "-Wshadow", "-Wstrict-prototypes"]
    toolchain.compile_host(LIB, tmp_path / "uq.o", extra=extra, link=False)
    text = (toolchain.SOURCE_DIR / "tflbayes_uq.c").read_text()
    includes = {line.split()[1] for line in text.splitlines() if line.startswith("#include")}
    assert includes == {'"tflbayes_uq.h"', "<math.h>"}
    assert "malloc" not in text and "printf" not in text


@pytest.mark.parametrize("cpu", sorted(toolchain.CORTEX))
@pytest.mark.skipif(toolchain.tool_missing("arm-none-eabi-gcc") is not None,
                    reason=str(toolchain.tool_missing("arm-none-eabi-gcc")))
def test_c_library_cross_compiles_small(tmp_path, cpu):
    obj = toolchain.compile_cortex(cpu, LIB, tmp_path / f"uq_{cpu}.o")
    size = toolchain.code_size(obj)
    # the whole library (decompositions, digamma, PRNG, int8 helpers, CRC-32) in a few KB of flash
    assert 500 < size["text"] < 4096 and size["bss"] <= 32, size


@pytest.mark.parametrize("cpu", sorted(toolchain.CORTEX))
@pytest.mark.skipif(toolchain.tool_missing("arm-none-eabi-gcc") is not None or toolchain.tool_missing("qemu-system-arm") is not None,
                    reason=str(toolchain.tool_missing("arm-none-eabi-gcc") or toolchain.tool_missing("qemu-system-arm")))
def test_c_library_matches_golden_vectors_on_cortex_m_in_qemu(tmp_path, cpu):
    image = toolchain.compile_cortex(cpu, [TEST_MAIN, *LIB], tmp_path / f"golden_{cpu}.elf",
                                     include_dirs=[toolchain.SOURCE_DIR, _header_dir(tmp_path)], image=True)
    r = toolchain.run_qemu(cpu, image)
    assert r.returncode == 0 and " 0 failures" in r.stdout, r.stdout + r.stderr
