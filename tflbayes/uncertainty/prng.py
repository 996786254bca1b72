"""The noise generator of stochastic micro bundles: the numpy twin of ``tb_rng_*`` in ``tflbayes_uq.c``.

A graph converted with its random numbers as inputs (MC dropout masks, VI weight noise) needs the
device to fill those inputs. The C library (``converters/micro/tflbayes_uq.c``), the Java library
and :mod:`tflbayes.runtime.tflm` all use this one generator, defined exactly so that a PC run of a
bundle sees the numbers the microcontroller draws:

- **State**: xoshiro128** (Blackman & Vigna 2018), four 32-bit words ``s0..s3``; only 32-bit
  shifts, xors and multiplications by 5 and 9, so it is fast on a Cortex-M0+.
- **Seeding** ``seed(u64)``: splitmix64 (Steele, Lea & Flood 2014) started at ``seed`` gives two
  64-bit outputs ``a``, ``b``; ``s0 = a & 0xffffffff, s1 = a >> 32, s2 = b & 0xffffffff,
  s3 = b >> 32`` (never all zero in practice; an all-zero state is replaced by ``s0 = 1``).
- **Uniform** ``[0, 1)``: ``(next_u32() >> 8) * 2**-24`` — 24 bits, exactly representable in
  float32, so every implementation returns bit-identical uniforms.
- **Normal**: Box-Muller on consecutive uniform pairs ``(u1, u2)``:
  ``r = sqrt(-2 ln(1 - u1))``, ``z0 = r cos(2 pi u2)``, ``z1 = r sin(2 pi u2)`` (``1 - u1`` is in
  ``(0, 1]``, so the log is finite). A fill of ``n`` values draws ``ceil(n / 2)`` pairs and drops
  the spare ``z1`` of an odd ``n`` (no hidden cache: a fill depends only on the state). The
  reference computes in float64 and rounds to float32; C's ``logf``/``cosf``/``sinf`` agree within
  a few float32 ulps (|z| < 6.3 for 24-bit uniforms).

Example:
    >>> g = Xoshiro128(12345)
    >>> u = g.uniform(4)        # float32 in [0, 1)
    >>> z = g.normal(3)         # float32 standard normal
"""
from __future__ import annotations

import numpy as np

from tflbayes.errors import InvalidInputError

__all__ = ["ALGORITHM", "Xoshiro128", "splitmix64"]

ALGORITHM = "xoshiro128** seeded by splitmix64; uniform=(u32>>8)*2^-24; normal=Box-Muller(1-u1, u2)"
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(state: int):
    """One splitmix64 step: ``(new_state, output)``, both 64-bit unsigned ints."""
    state = (state + 0x9E3779B97F4A7C15) & _M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return state, z ^ (z >> 31)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


class Xoshiro128:
    """xoshiro128** with splitmix64 seeding (see the module docstring for the exact definition)."""

    def __init__(self, seed: int = 0):
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Reset the state from a 64-bit seed (negative or larger values are taken mod 2**64)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InvalidInputError(f"Invalid value received for argument `seed`. Expected an integer. Received: seed={seed!r}")
        st, a = splitmix64(int(seed) & _M64)
        _, b = splitmix64(st)
        self.s = [a & _M32, a >> 32, b & _M32, b >> 32]
        if not any(self.s):
            self.s[0] = 1

    def next_u32(self) -> int:
        """The next 32-bit output."""
        s = self.s
        result = (_rotl((s[1] * 5) & _M32, 7) * 9) & _M32
        t = (s[1] << 9) & _M32
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return result

    def _check_n(self, n) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InvalidInputError(f"Invalid value received for argument `n`. Expected an integer >= 0. Received: n={n!r}")
        return int(n)

    def _u24(self, n: int) -> list:
        # next_u32() >> 8, n times, with the state in locals (the hot loop of noise filling)
        s0, s1, s2, s3 = self.s
        out = [0] * n
        for i in range(n):
            x = (s1 * 5) & _M32
            out[i] = ((((x << 7) | (x >> 25)) & _M32) * 9 & _M32) >> 8
            t = (s1 << 9) & _M32
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 11) | (s3 >> 21)) & _M32
        self.s = [s0, s1, s2, s3]
        return out

    def uniform(self, n: int) -> np.ndarray:
        """``n`` float32 uniforms in ``[0, 1)`` (24-bit resolution)."""
        n = self._check_n(n)
        return (np.array(self._u24(n), dtype=np.float64) * 2.0 ** -24).astype(np.float32)

    def normal(self, n: int) -> np.ndarray:
        """``n`` float32 standard normals (Box-Muller pairs; the spare of an odd ``n`` is dropped)."""
        n = self._check_n(n)
        pairs = (n + 1) // 2
        u = np.array(self._u24(2 * pairs), dtype=np.float64).reshape(pairs, 2) * 2.0 ** -24
        r = np.sqrt(-2.0 * np.log(1.0 - u[:, 0]))
        z = np.stack([r * np.cos(2.0 * np.pi * u[:, 1]), r * np.sin(2.0 * np.pi * u[:, 1])], axis=1).ravel()
        return z[:n].astype(np.float32)

    def fill(self, distribution: str, shape) -> np.ndarray:
        """A float32 array of ``shape`` from ``"uniform"`` or ``"normal"``, filled in C (row-major) order."""
        n = int(np.prod(shape)) if len(shape) else 1
        if distribution == "uniform":
            return self.uniform(n).reshape(shape)
        if distribution == "normal":
            return self.normal(n).reshape(shape)
        raise InvalidInputError(
            f"Invalid value received for argument `distribution`. Expected 'uniform' or 'normal'. Received: {distribution!r}")
