"""Compile and run the C99 library with the tools a CI machine has: gcc, arm-none-eabi-gcc, qemu-system-arm.

Debian packages: ``gcc``, ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi`` (newlib and its
semihosting ``rdimon`` specs) and ``qemu-system-arm``. Each function raises
:class:`~tflbayes.errors.ConversionError` with the compiler's own message when a build fails, and
``tool_missing(name)`` says which binary is absent (tests skip with that reason only).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tflbayes.errors import ConversionError

__all__ = ["SOURCE_DIR", "TEST_DIR", "HOST_FLAGS", "CORTEX", "tool_missing", "compile_host", "compile_cortex",
           "code_size", "run_qemu"]

SOURCE_DIR = Path(__file__).resolve().parent
TEST_DIR = SOURCE_DIR / "test"
HOST_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
# cpu flags, qemu machine and linker script of the semihosting test image
CORTEX = {
    "cortex-m4f": {"flags": ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
                   "machine": "mps2-an386", "ld": "mps2_an386.ld"},
    "cortex-m0plus": {"flags": ["-mcpu=cortex-m0plus", "-mthumb"],
                      "machine": "microbit", "ld": "microbit.ld"},  # qemu's Cortex-M0 runs ARMv6-M code
}
ARM_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Os", "-ffunction-sections", "-fdata-sections"]


def tool_missing(name: str):
    """``None`` if ``name`` is on PATH, else the reason a test skips."""
    return None if shutil.which(name) else f"{name} is not installed (Debian: see converters/micro/toolchain.py)"


def _run(cmd, what: str, timeout: int = 120) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ConversionError(f"{what}: {cmd[0]} is not installed.") from None
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{what}: `{' '.join(map(str, cmd))}` ran past {timeout} s.") from None
    if r.returncode != 0:
        raise ConversionError(f"{what} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[:2000]}")
    return r


def compile_host(sources, out, include_dirs=(), extra=(), link=True) -> Path:
    """``gcc -std=c99 -Wall -Wextra -Werror -O2`` the sources into ``out`` (an executable, or objects)."""
    cmd = ["gcc", *HOST_FLAGS, *extra, *[f"-I{d}" for d in include_dirs]]
    cmd += [*sources, "-lm", "-o", out] if link else ["-c", *sources, "-o", out]
    _run(cmd, "host gcc")
    return Path(out)


def compile_cortex(cpu: str, sources, out, include_dirs=(), image: bool = False) -> Path:
    """arm-none-eabi-gcc at -Os for ``cpu``: an object (``image=False``) or a qemu semihosting image."""
    spec = CORTEX[cpu]
    cmd = ["arm-none-eabi-gcc", *ARM_FLAGS, *spec["flags"], *[f"-I{d}" for d in include_dirs]]
    if image:
        cmd += ["--specs=nano.specs", "--specs=rdimon.specs", "-nostartfiles", "-T", TEST_DIR / spec["ld"],
                TEST_DIR / "startup_cortex_m.c", *sources, "-lm", "-o", out]
    else:
        cmd += ["-c", *sources, "-o", out]
    _run(cmd, f"arm-none-eabi-gcc ({cpu})")
    return Path(out)


def code_size(path) -> dict:
    """``arm-none-eabi-size`` of an object or image: ``{"text", "data", "bss"}`` bytes."""
    r = _run(["arm-none-eabi-size", path], "arm-none-eabi-size")
    text, data, bss = (int(v) for v in r.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def run_qemu(cpu: str, image, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run a semihosting image on qemu-system-arm's machine for ``cpu``; returns the finished process."""
    cmd = ["qemu-system-arm", "-M", CORTEX[cpu]["machine"], "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(image)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"qemu-system-arm -M {CORTEX[cpu]['machine']} ran past {timeout} s.") from None
