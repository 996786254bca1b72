"""The smallest TFLite Micro tensor arena a graph needs, measured by bisection in a child process.

An arena is enough when TFLite Micro's interpreter allocates the graph *and* invokes it once (on
zero inputs). The probes run in a separate Python process because TFLite Micro may crash the
process (not raise) when an arena is smaller than its first allocation; a crashed probe counts as
"too small" and the search goes on in a fresh child. The result is measured with 64-bit host
pointers: a 32-bit Cortex-M needs at most as much (its interpreter structs are smaller).

Child protocol: ``python -m tflbayes.converters.micro.arena MODEL LO HI`` prints ``ok N`` /
``fail N <message>`` per probe and ``min N`` at the end (``LO`` known too small, ``HI`` to try).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tflbayes.errors import ConversionError

__all__ = ["measure_arena", "MAX_ARENA", "GRANULARITY"]

MAX_ARENA = 64 << 20
GRANULARITY = 16  # TFLite Micro aligns arena allocations to 16 bytes
_START = 4096


def _probe(model: bytes, size: int):
    """``None`` if ``size`` bytes allocate and invoke, else the TFLite Micro message."""
    from tflbayes.errors import BundleError
    from tflbayes.runtime.tflm import captured_stderr, make_interpreter

    try:
        it = make_interpreter(model, size, "graph")
    except BundleError as e:
        return str(e).split("): ", 1)[-1]
    with captured_stderr() as err:
        try:
            i = 0
            while True:  # zero inputs of the right dtype at every position
                try:
                    det = it.get_input_details(i)
                except (RuntimeError, ValueError, IndexError):
                    break
                it.set_input(np.zeros(det["shape"], dtype=det["dtype"]), i)
                i += 1
            it.invoke()
            return None
        except (RuntimeError, ValueError) as e:
            exc = e
    return ("; ".join(l for l in "".join(err).splitlines() if l.strip())[-500:]) or str(exc)


def _report(model: bytes, size: int) -> bool:
    print("try %d" % size, flush=True)  # a crash leaves this line without its result
    msg = _probe(model, size)
    print(("ok %d" % size) if msg is None else ("fail %d %s" % (size, msg.replace("\n", "; "))), flush=True)
    return msg is None


def _child(path: str, lo: int, hi: int) -> None:
    """Search (lo, hi]: ``lo`` is known too small; ``hi`` is a first guess (or known to work if ``ok`` first)."""
    model = Path(path).read_bytes()
    while not _report(model, hi):  # grow hi until it works
        lo = hi
        if hi >= MAX_ARENA:
            print("min none", flush=True)
            return
        hi = min(hi * 2, MAX_ARENA)
    while hi - lo > GRANULARITY:
        mid = max(lo + GRANULARITY, (lo + hi) // 2 // GRANULARITY * GRANULARITY)
        if _report(model, mid):
            hi = mid
        else:
            lo = mid
    print("min %d" % hi, flush=True)


def measure_arena(path, start: int = _START, timeout: int = 300) -> int:
    """The smallest arena (bytes, a multiple of 16) with which ``path`` allocates and invokes in TFLite Micro.

    Raises:
        ConversionError: the graph does not run in TFLite Micro with any arena up to 64 MiB
            (the message is TFLite Micro's own, e.g. a missing op or an unsupported tensor type).
    """
    lo, hi, ok, last, r = 0, int(start), None, "", None
    for _ in range(12):  # a fresh child after each crashed probe
        try:
            r = subprocess.run([sys.executable, "-m", "tflbayes.converters.micro.arena", str(path), str(lo), str(hi)],
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"{Path(path).name}: measuring the TFLite Micro arena ran past {timeout} s.") from None
        pending = None
        for line in r.stdout.splitlines():
            word, _, rest = line.partition(" ")
            if word == "min":
                if rest == "none":
                    raise ConversionError(f"{Path(path).name} does not run in TFLite Micro with any arena up to "
                                          f"{MAX_ARENA} bytes: {last}")
                return int(rest)
            size, _, msg = rest.partition(" ")
            if word == "try":
                pending = int(size)
            elif word == "ok":
                ok, pending = int(size), None
            elif word == "fail":
                lo, last, pending = max(lo, int(size)), msg, None
        if pending is None:  # the child ended without an answer and without a crash in a probe
            break
        lo = max(lo, pending)  # it crashed in this probe: too small
        last = last or f"the process crashed (exit {r.returncode}) at an arena of {pending} bytes"
        hi = ok if ok is not None else min(max(2 * lo, _START), MAX_ARENA)
        if ok is not None and hi - lo <= GRANULARITY:
            return ok
    detail = last or (r.stderr or "").strip()[-500:] if r is not None else last
    raise ConversionError(f"{Path(path).name}: TFLite Micro could not run the graph: {detail}")


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
