"""The emulator runs CUDA kernels right: results match NumPy for reductions, shuffles, atomics,
math, and multi-dimensional grids."""
from __future__ import annotations

import time

import numpy as np
import pytest

from gpunn.emu import RawKernel


def test_vec_add_matches_numpy(selftest_module):
    rng = np.random.default_rng(0)
    n = 1000  # not a multiple of the block size: the tail guard matters
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    out = np.full(n, np.nan, np.float32)
    selftest_module.get_function("vec_add")(((n + 127) // 128,), (128,), (a, b, out, np.int32(n)))
    np.testing.assert_array_equal(out, a + b)


@pytest.mark.parametrize("threads", [32, 64, 256, 1024])
def test_block_sum_with_shared_memory_and_shuffles(selftest_module, threads):
    rng = np.random.default_rng(threads)
    n = 3 * threads + 5
    blocks = (n + threads - 1) // threads
    x = rng.standard_normal(n).astype(np.float32)
    out = np.full(blocks, np.nan, np.float32)
    selftest_module.get_function("block_sum")(blocks, threads, (x, out, np.int32(n)), shared_mem=4 * threads)
    ref = np.pad(x, (0, blocks * threads - n)).reshape(blocks, threads).astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_templated_helper_gets_separate_static_shared_per_instantiation(selftest_module):
    rng = np.random.default_rng(1)
    blocks, threads = 3, 128
    x = rng.standard_normal(blocks * threads)
    k = rng.integers(-50, 50, blocks * threads, dtype=np.int32)
    out_d = np.zeros(blocks)
    out_i = np.zeros(blocks, np.int32)
    selftest_module.get_function("two_sums")(blocks, threads, (x, k, out_d, out_i))
    np.testing.assert_allclose(out_d, x.reshape(blocks, threads).sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(out_i, k.reshape(blocks, threads).sum(axis=1))


def _shfl_reference(v: np.ndarray) -> np.ndarray:
    lane = np.arange(32)
    out = np.empty((32, 6), np.float32)
    out[:, 0] = v[3]
    out[:, 1] = np.where(lane < 2, v, v[np.maximum(lane - 2, 0)])
    out[:, 2] = np.where(lane + 5 >= 32, v, v[np.minimum(lane + 5, 31)])
    out[:, 3] = v[lane ^ 1]
    out[:, 4] = np.where(lane % 8 + 1 >= 8, v, v[np.minimum(lane + 1, 31)])
    out[:, 5] = v[(lane & ~15) + (lane + 1) % 16]
    return out


def test_warp_shuffles_and_votes(selftest_module):
    rng = np.random.default_rng(2)
    warps = 3
    x = rng.standard_normal(32 * warps).astype(np.float32)
    x[32:64] = np.abs(x[32:64]) + 1  # warp 1: all positive
    x[70] = 1000.0  # warp 2: one large value
    out = np.full(6 * 32 * warps, np.nan, np.float32)
    votes = np.zeros(3 * warps, np.uint32)
    # three warps in one block, so the lane/warp split inside a block is exercised too
    selftest_module.get_function("warp_ops")(1, 32 * warps, (x, out, votes))
    out = out.reshape(warps, 32, 6)
    for w in range(warps):
        v = x[32 * w:32 * (w + 1)]
        np.testing.assert_array_equal(out[w], _shfl_reference(v), err_msg=f"warp {w}")
        ballot = sum(1 << i for i in range(32) if v[i] > 0)
        assert votes[3 * w] == ballot
        assert votes[3 * w + 1] == int((v > 100).any())
        assert votes[3 * w + 2] == 1


@pytest.mark.parametrize("grid,block", [((7,), (5,)), ((3, 4), (8, 2)), ((2, 3, 4), (4, 2, 3)),
                                        ((2, 1, 3), (1, 1, 2))])
def test_multidimensional_grids_and_blocks(selftest_module, grid, block):
    g = grid + (1,) * (3 - len(grid))
    b = block + (1,) * (3 - len(block))
    # a problem smaller than the launch, so the bounds guard is exercised on every axis
    nx, ny, nz = g[0] * b[0] - 1 or 1, max(g[1] * b[1] - 1, 1), max(g[2] * b[2] - 1, 1)
    out = np.full((nz, ny, nx, 4), -7, np.int32)
    selftest_module.get_function("coords")(grid, block, (out, np.int32(nx), np.int32(ny), np.int32(nz)))
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    np.testing.assert_array_equal(out[..., 0], x)
    np.testing.assert_array_equal(out[..., 1], y)
    np.testing.assert_array_equal(out[..., 2], z)
    assert (out[..., 3] == np.prod(g) * np.prod(b)).all()


def test_many_blocks_is_fast(selftest_module):
    n = 100_000
    a = np.arange(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    kern = selftest_module.get_function("vec_add")
    kern((n + 63) // 64, 64, (a, a, out, np.int32(n)))  # warm-up: load the library
    start = time.perf_counter()
    kern((n + 63) // 64, 64, (a, a, out, np.int32(n)))
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(out, 2 * a)
    assert elapsed < 1.0, f"1e5-thread launch took {elapsed:.3f}s"


def test_atomics(selftest_module):
    rng = np.random.default_rng(3)
    n = 2000
    bins_of = rng.integers(0, 16, n, dtype=np.int32)
    w = rng.random(n).astype(np.float32)
    hist = np.zeros(17, np.int32)
    wsum = np.zeros(16, np.float32)
    imax = np.array([np.iinfo(np.int32).min], np.int32)
    ucount = np.zeros(1, np.uint32)
    selftest_module.get_function("atomics")((n + 255) // 256, 256, (bins_of, w, hist, wsum, imax, ucount, np.int32(n)))
    np.testing.assert_array_equal(hist[:16], np.bincount(bins_of, minlength=16))
    assert hist[16] == -1
    np.testing.assert_allclose(wsum, np.bincount(bins_of, weights=w, minlength=16), rtol=1e-5)
    assert imax[0] == (bins_of * 7 - np.arange(n)).max()
    assert ucount[0] == n


def test_math_intrinsics(selftest_module):
    rng = np.random.default_rng(4)
    n = 50
    x = rng.uniform(0.1, 5.0, n).astype(np.float32)
    xd = x.astype(np.float64)
    out = np.zeros((n, 16), np.float32)
    outd = np.zeros((n, 7))
    selftest_module.get_function("math_fns")(1, 64, (x, xd, out, outd, np.int32(n)))
    expect = np.stack([
        np.exp(x), np.log(x), np.sqrt(x), 1 / np.sqrt(x), np.maximum(x, 1), np.minimum(x, 1), x, x ** 1.5,
        np.tanh(x), np.exp(x) + np.log(x), x / 3, x, np.maximum(x, 2) + 3, np.full(n, 10.0), x, np.ones(n),
    ], axis=1).astype(np.float32)
    np.testing.assert_allclose(out, expect, rtol=2e-6)
    expectd = np.stack([np.exp(xd), np.log(xd), np.sqrt(xd), 1 / np.sqrt(xd), np.maximum(xd, 1),
                        np.minimum(xd, 1), xd], axis=1)
    np.testing.assert_allclose(outd, expectd, rtol=1e-14)


def test_scalar_types_arrive_exactly(selftest_module):
    out = np.zeros(7)
    selftest_module.get_function("scalars")(1, 1, (out, np.int32(-5), np.uint32(4_000_000_000), np.int64(-(2**40)),
                                                   np.float32(0.1), np.float64(0.1), np.bool_(True),
                                                   np.uint64(2**63)))
    np.testing.assert_array_equal(out, [-5, 4_000_000_000, -(2**40), float(np.float32(0.1)), 0.1, 1.0, 2.0**63])


def test_raw_kernel_constructor_and_const_input_may_be_read_only(selftest_source):
    kern = RawKernel(selftest_source, "read_only_ok", filename="selftest_kernels.cu")
    x = np.arange(8, dtype=np.float32)
    x.flags.writeable = False  # const float* accepts a read-only array
    y = np.zeros(8, np.float32)
    kern((1,), (8,), (x, y))
    np.testing.assert_array_equal(y, 2 * x)


def test_runs_are_deterministic(selftest_module):
    rng = np.random.default_rng(5)
    n = 4096
    bins_of = rng.integers(0, 16, n, dtype=np.int32)
    w = rng.standard_normal(n).astype(np.float32)  # float atomics: order-dependent rounding
    results = []
    for _ in range(2):
        wsum = np.zeros(16, np.float32)
        selftest_module.get_function("atomics")(16, 256, (bins_of, w, np.zeros(17, np.int32), wsum,
                                                          np.zeros(1, np.int32), np.zeros(1, np.uint32), np.int32(n)))
        results.append(wsum)
    assert results[0].tobytes() == results[1].tobytes()


def test_partial_mask_shuffle(selftest_module):
    x = np.arange(64, dtype=np.float32)
    out = np.zeros(64, np.float32)
    selftest_module.get_function("half_warp")(1, 64, (x, out))
    lane = np.arange(64) % 32
    np.testing.assert_array_equal(out[lane < 8], x[lane < 8] + 8)
    assert np.isnan(out[(lane >= 8) & (lane < 16)]).all(), "a lane outside the mask must read poison"
    np.testing.assert_array_equal(out[lane >= 16], x[lane >= 16])
