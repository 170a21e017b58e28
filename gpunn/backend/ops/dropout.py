"""Inverted dropout (generic, against xp), and the Philox4x32-10 stream the CUDA kernel draws.

Contract (kernels/philox.cu must match it):
- dropout_forward(x, rate) -> (y, mask): `rate` a float in [0, 1); `mask` a uint8 array of x's
  shape, 1 where the element is kept, 0 where it is dropped; y = x * (mask * scale) with
  scale = x.dtype.type(1 / (1 - rate)) computed in float64 on the host and cast once, so a kept
  element is x * scale and a dropped one x * 0 (bit for bit, -0.0 and NaN included).
- dropout_backward(dy, mask, rate) -> dx = dy * (mask * scale), the same scale.

Where the keep decisions come from is the backend's business:
- the generic op here (the NumPy backend, and a CUDA backend with the op switched off) keeps where
  `self.rng.random(x.shape, dtype=x.dtype) >= rate`, exactly what the Dropout layer drew before
  these ops existed;
- the CUDA backends (CuPy, emulated) draw from a counter-based Philox4x32-10 generator whose state
  (seed, offset) lives in device memory (`philox_state`), so that a CUDA graph replay draws fresh
  masks. `philox_uniform` below is the NumPy reference of that stream, and the contract:

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011;
Random123's philox4x32 with 10 rounds): a 128-bit counter (c0, c1, c2, c3) and a 64-bit key
(k0, k1). One round, with mulhilo the full 32x32->64 product split into (hi, lo):
    (hi0, lo0) = mulhilo(M0, c0);  (hi1, lo1) = mulhilo(M1, c2)
    (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
and between rounds the key is bumped: k0 += W0, k1 += W1 (mod 2^32); 10 rounds, 9 bumps.
M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85.

The stream for (seed, offset), element i of a draw of n:
- key = (seed & 0xffffffff, seed >> 32); counter of Philox block b = (lo32(offset + b),
  hi32(offset + b), 0, 0), the 64-bit sum wrapping mod 2^64; its output words r0..r3.
- float32: 4 elements per block, element i takes word i % 4 of block i // 4;
  u = (r >> 8) * 2^-24, a float32 in [0, 1) with 24 random bits (exact).
- float64: 2 elements per block, element i takes words (2j, 2j+1), j = i % 2, of block i // 2;
  u = (((r_{2j+1} << 32) | r_{2j}) >> 11) * 2^-53, a float64 in [0, 1) with 53 random bits (exact).
- kept where u >= rate, the comparison in the dtype (rate cast to it once).
A draw uses `philox_blocks(n, dtype)` blocks (ceil(n/4) or ceil(n/2)) and the offset then advances
by that many, so consecutive draws never reuse a counter. `manual_seed(seed)` sets
(seed mod 2^64, 0).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import real_arg
from gpunn.backend.ops.cast import HALF_DTYPES

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
_MASK32 = np.uint64(0xFFFFFFFF)
_U64 = (1 << 64) - 1

#: elements per Philox block (4 words of 32 bits) for each dtype the kernels take
PER_BLOCK = {np.dtype(np.float32): 4, np.dtype(np.float64): 2}


def dropout_scale(rate: float, dtype: Any) -> Any:
    """1 / (1 - rate) in float64 on the host, cast once to `dtype`: what every path multiplies by."""
    return np.dtype(dtype).type(1.0 / (1.0 - float(rate)))


def check_rate(rate: Any, where: str) -> float:
    return real_arg(rate, "rate", where, 0, 1, hi_open=True, want="a float in [0, 1)")


def philox4x32(counter: Any, key: Any, rounds: int = PHILOX_ROUNDS) -> np.ndarray:
    """Philox4x32-`rounds` of many counters at once: `counter` (..., 4) and `key` (..., 2) of
    32-bit words (any ints, broadcast together); returns the (..., 4) output words as uint32.

    The 32x32->64 products are done in uint64, which holds them exactly."""
    ctr = np.asarray(counter, dtype=np.uint64) & _MASK32
    k = np.asarray(key, dtype=np.uint64) & _MASK32
    c0, c1, c2, c3 = (ctr[..., j] for j in range(4))
    k0, k1 = k[..., 0], k[..., 1]
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    w0, w1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
    for r in range(rounds):
        if r:
            k0 = (k0 + w0) & _MASK32
            k1 = (k1 + w1) & _MASK32
        p0 = m0 * c0
        p1 = m1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK32, (p0 >> np.uint64(32)) ^ c3 ^ k1,
                          p0 & _MASK32)
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3), axis=-1).astype(np.uint32)


def philox_blocks(n: int, dtype: Any) -> int:
    """How many Philox blocks (counters) a draw of n elements of `dtype` uses: the offset advance."""
    per = PER_BLOCK[np.dtype(dtype)]
    return -(-int(n) // per)


def philox_uniform(seed: int, offset: int, n: int, dtype: Any = np.float32) -> np.ndarray:
    """The n uniforms in [0, 1) of the stream (seed, offset), as kernels/philox.cu draws them (see
    the module docstring): the NumPy reference of dropout on the CUDA backends."""
    dtype = np.dtype(dtype)
    if dtype not in PER_BLOCK:
        raise TypeError(f"philox_uniform: argument 'dtype' must be float32 or float64, got {dtype}")
    seed, offset, n = int(seed) & _U64, int(offset) & _U64, int(n)
    nb = philox_blocks(n, dtype)
    b = (np.uint64(offset) + np.arange(nb, dtype=np.uint64))  # wraps mod 2^64
    zeros = np.zeros(nb, dtype=np.uint64)
    counter = np.stack([b & _MASK32, b >> np.uint64(32), zeros, zeros], axis=-1)
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint64)
    words = philox4x32(counter, key).astype(np.uint64)  # (nb, 4)
    if dtype == np.float32:
        u = (words.reshape(-1) >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)
    else:
        pairs = words.reshape(-1, 2)
        bits = ((pairs[:, 1] << np.uint64(32)) | pairs[:, 0]) >> np.uint64(11)
        u = bits.astype(np.float64) * 2.0 ** -53
    return u[:n]


def philox_keep(seed: int, offset: int, n: int, rate: float, dtype: Any = np.float32) -> np.ndarray:
    """The uint8 keep mask (1 kept) of a draw of n from (seed, offset) at `rate`."""
    dtype = np.dtype(dtype)
    return (philox_uniform(seed, offset, n, dtype) >= dtype.type(rate)).astype(np.uint8)


class DropoutOps:
    xp: Any
    rng: Any

    def dropout_forward(self, x: Any, rate: float) -> tuple[Any, Any]:
        """(y, mask) of inverted dropout in training; see the module docstring."""
        rate = check_rate(rate, "dropout_forward")
        # float16 / bfloat16 (which the generator cannot draw): the uniforms are drawn in float32
        draw = np.float32 if np.dtype(x.dtype) in HALF_DTYPES else x.dtype
        keep = self.rng.random(x.shape, dtype=draw) >= rate
        y = x * (keep * dropout_scale(rate, x.dtype))
        return y, keep.astype(self.xp.uint8)

    def dropout_backward(self, dy: Any, mask: Any, rate: float) -> Any:
        """dx = dy * (mask * scale), mask the uint8 array dropout_forward returned."""
        rate = check_rate(rate, "dropout_backward")
        if tuple(mask.shape) != tuple(dy.shape):
            raise ValueError(f"dropout_backward: argument 'mask' must have shape {tuple(dy.shape)} like 'dy', "
                             f"got {tuple(mask.shape)}")
        return dy * (mask * dropout_scale(rate, dy.dtype))
