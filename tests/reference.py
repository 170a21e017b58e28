"""Naive loop implementations: slow, obviously correct references for the vectorized ops."""
from __future__ import annotations

import numpy as np


def conv2d_naive(x, w, b, stride, padding, dilation):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, f, oh, ow), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        y += b[None, :, None, None]
    return y


def pool_naive(x, kh, kw, stride, padding, mode):
    n, c, h, w = x.shape
    (sh, sw), (ph, pw) = stride, padding
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else win.mean(axis=(2, 3))
    return y


# -- tensor-core references (the emulator's TF32 rounding and mma_sync order) -----------------
def tf32_ref(x: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32: round to 10 explicit mantissa bits, to nearest, ties away from zero; NaN -> 0x7fffffff."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    mag = u & np.uint32(0x7FFFFFFF)
    r = ((u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).astype(np.uint32)
    r = np.where(mag == 0x7F800000, u, r)
    r = np.where(mag > 0x7F800000, np.uint32(0x7FFFFFFF), r)
    return r.astype(np.uint32).view(np.float32)


def gemm_f32_in_k_order(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The emulator's mma_sync order: acc = c; for k in 0..K-1: acc = fl32(acc + a[:, k] * b[k, :]). The
    products of half/bf16/tf32 values are exact in float32, so this equals its fmaf per step."""
    acc = c.astype(np.float32).copy()
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    for k in range(a.shape[1]):
        acc = acc + np.outer(a32[:, k], b32[k, :])  # float32 add of an exact float32 product
    return acc
