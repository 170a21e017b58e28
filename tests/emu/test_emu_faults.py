"""Planted kernel bugs are reported: deadlocks and divergent barriers raise instead of hanging,
uninitialised shared memory reads as NaN, and shared-memory and warp-mask misuse is refused."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.emu import EmuLaunchError


def test_syncthreads_inside_a_condition_is_a_reported_deadlock(selftest_module):
    out = np.zeros(32, np.float32)
    with pytest.raises(EmuLaunchError, match=r"deadlock_half.*deadlock in block \(0,0,0\) of 32 threads: "
                                             r"threads 0-15 wait at __syncthreads \(selftest_kernels\.cu:\d+\).*"
                                             r"threads 16-31 have exited"):
        selftest_module.get_function("deadlock_half")(1, 32, (out,))


def test_divergent_barriers_are_reported(selftest_module):
    out = np.zeros(32, np.float32)
    with pytest.raises(EmuLaunchError, match=r"threads 0-15 wait at __syncthreads \(selftest_kernels\.cu:(\d+)\); "
                                             r"threads 16-31 wait at __syncthreads \(selftest_kernels\.cu:\d+\) - "
                                             r"barrier divergence"):
        selftest_module.get_function("divergent_barrier")(1, 32, (out,))


def test_module_still_works_after_a_failed_launch(selftest_module):
    with pytest.raises(EmuLaunchError):
        selftest_module.get_function("deadlock_half")(2, 64, (np.zeros(64, np.float32),))
    # The abandoned fibers must be rebuilt: a correct kernel then runs normally, in every thread.
    n = 256
    x = np.arange(n, dtype=np.float32)
    out = np.zeros(2, np.float32)
    selftest_module.get_function("block_sum")(2, 128, (x, out, np.int32(n)), shared_mem=4 * 128)
    np.testing.assert_allclose(out, x.reshape(2, 128).sum(axis=1))


def test_uninitialised_shared_memory_reads_as_nan(selftest_module):
    threads, blocks = 64, 2
    out_dyn = np.zeros(threads * blocks, np.float32)
    out_static = np.zeros(threads * blocks, np.float32)
    # one extra float of dynamic shared memory: the last thread's neighbour, which nobody writes
    selftest_module.get_function("uninit_shared")(blocks, threads, (out_dyn, out_static),
                                                  shared_mem=4 * (threads + 1))
    i = np.arange(threads * blocks)
    tid = i % threads
    last = tid == threads - 1
    np.testing.assert_array_equal(out_dyn[~last], i[~last] + 1)
    assert np.isnan(out_dyn[last]).all()
    # static shared memory is poisoned before every block, not just once
    np.testing.assert_array_equal(out_static[tid % 2 == 0], i[tid % 2 == 0])
    assert np.isnan(out_static[tid % 2 == 1]).all()


def test_static_plus_dynamic_shared_memory_over_the_limit(selftest_module):
    kern = selftest_module.get_function("big_static")
    out = np.zeros(32, np.float32)
    kern(1, 32, (out,), shared_mem=8 * 1024)  # 40 KiB + 8 KiB fits
    np.testing.assert_array_equal(out, 3.0)
    with pytest.raises(EmuLaunchError, match=r"shared memory exceeds the limit: 40960 bytes static \+ 8196 bytes "
                                             r"dynamic > 49152"):
        kern(1, 32, (out,), shared_mem=8 * 1024 + 4)
    kern.max_dynamic_shared_size_bytes = 64 * 1024  # opting in raises the limit, as on the GPU
    kern(1, 32, (out,), shared_mem=16 * 1024)


def test_full_warp_mask_in_a_partial_warp_is_refused(selftest_module):
    out = np.zeros(48, np.float32)
    with pytest.raises(EmuLaunchError, match=r"mask 0xffffffff names lane 16 of warp 1, which does not exist "
                                             r"\(block has 48 threads\)"):
        selftest_module.get_function("partial_warp")(1, 48, (out,))
    selftest_module.get_function("partial_warp")(1, 64, (np.zeros(64, np.float32),))
