"""Max-pool kernels (kernels/maxpool.cu) against the NumPy backend.

Forward (values and int32 argmax) must match bit for bit, ties included: inputs are drawn from a
few integers so that ties are common. Backward sums dy over overlapping windows; it is held to the
stated tolerance (1e-5 relative in float32, 1e-12 in float64).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gpunn.backend.cuda import launchers
from gpunn.backend.ops.geometry import conv_output_size
from tests.kernel_support import (KERNEL_SETTINGS, assert_close, device_backend, kernel_backend,  # noqa: F401
                                  reference, to_device, to_host)


@st.composite
def pool_case(draw):
    n = draw(st.sampled_from([1, 1, 2, 3]))
    c = draw(st.sampled_from([1, 3, 5, 33]))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))  # overlapping, tiling and gapped windows
    padding = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))  # every window keeps a real pixel
    oh, ow = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(w, kw, stride[1], padding[1])
    assume(oh >= 1 and ow >= 1)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    ties = draw(st.booleans())
    return (n, c, h, w), kh, kw, stride, padding, dtype, ties


def _input(shape, dtype, ties, seed=0):
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(-2, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@KERNEL_SETTINGS
@given(case=pool_case())
def test_maxpool_forward_and_backward_match_numpy(kernel_backend, case):
    shape, kh, kw, stride, padding, dtype, ties = case
    x = _input(shape, dtype, ties)
    y_ref, arg_ref = reference().maxpool2d_forward(x, kh, kw, stride, padding)
    (xd,) = to_device(kernel_backend, x)
    y, arg = kernel_backend.maxpool2d_forward(xd, kh, kw, stride, padding)
    y, arg_host = to_host(kernel_backend, (y, arg))
    assert arg_host.dtype == np.int32
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg_host, arg_ref)

    dy = np.random.default_rng(1).standard_normal(y_ref.shape).astype(dtype)
    dx_ref = np.ascontiguousarray(reference().maxpool2d_backward(dy, arg_ref, shape, kh, kw, stride, padding))
    dx = kernel_backend.maxpool2d_backward(kernel_backend.asarray(dy), arg, shape, kh, kw, stride, padding)
    assert_close(to_host(kernel_backend, dx), dx_ref, "dx")


def test_overlapping_3x3_stride_2_routes_every_gradient_once(device_backend):
    """3x3 at stride 2: a pixel that wins two windows receives both gradients (gather, no race)."""
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 9.0  # the centre pixel lies in all four windows and wins them all
    (xd,) = to_device(device_backend, x)
    y, arg = device_backend.maxpool2d_forward(xd, 3, 3, (2, 2), (0, 0))
    np.testing.assert_array_equal(to_host(device_backend, arg), np.full((1, 1, 2, 2), 12, np.int32))
    dy = device_backend.asarray(np.array([[[[1.0, 2.0], [4.0, 8.0]]]], np.float32))
    dx = to_host(device_backend, device_backend.maxpool2d_backward(dy, arg, x.shape, 3, 3, (2, 2), (0, 0)))
    assert dx[0, 0, 2, 2] == 15.0 and np.count_nonzero(dx) == 1


def test_many_blocks_and_grid_stride(device_backend, monkeypatch):
    monkeypatch.setattr(launchers, "MAX_GRID", 2)
    x = _input((3, 5, 17, 19), np.float32, ties=True, seed=5)
    y_ref, arg_ref = reference().maxpool2d_forward(x, 3, 3, (2, 2), (1, 1))
    (xd,) = to_device(device_backend, x)
    y, arg = device_backend.maxpool2d_forward(xd, 3, 3, (2, 2), (1, 1))
    np.testing.assert_array_equal(to_host(device_backend, arg), arg_ref)
    np.testing.assert_array_equal(to_host(device_backend, y), y_ref)
    dy = np.random.default_rng(6).standard_normal(y_ref.shape).astype(np.float32)
    dx = device_backend.maxpool2d_backward(device_backend.asarray(dy), arg, x.shape, 3, 3, (2, 2), (1, 1))
    assert x.size > 2 * launchers.BLOCK * 4
    assert_close(to_host(device_backend, dx),
                 np.ascontiguousarray(reference().maxpool2d_backward(dy, arg_ref, x.shape, 3, 3, (2, 2), (1, 1))))


def test_first_slot_nan_sticks_like_the_reference(device_backend):
    x = np.array([[[[np.nan, 5.0], [1.0, 2.0]]]], np.float32)
    y_ref, arg_ref = reference().maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
    y, arg = device_backend.maxpool2d_forward(device_backend.asarray(x), 2, 2, (2, 2), (0, 0))
    assert np.isnan(to_host(device_backend, y)[0, 0, 0, 0]) and np.isnan(y_ref[0, 0, 0, 0])
    np.testing.assert_array_equal(to_host(device_backend, arg), arg_ref)


def test_launcher_rejects_bad_inputs(device_backend):
    be, xp = device_backend, device_backend.xp
    x = be.asarray(np.zeros((1, 2, 6, 6), np.float32))
    with pytest.raises(TypeError, match="'x'.*float32 or float64"):  # float16 / bfloat16 have kernels too
        launchers.maxpool2d_forward(be.kernels, xp, x.astype(np.int32), 2, 2, (2, 2), (0, 0))
    with pytest.raises(ValueError, match="'x'.*C-contiguous"):
        launchers.maxpool2d_forward(be.kernels, xp, x[:, :, ::2], 2, 2, (2, 2), (0, 0))
    dy = be.asarray(np.zeros((1, 2, 3, 3), np.float32))
    arg = be.asarray(np.zeros((1, 2, 3, 3), np.int32))
    with pytest.raises(TypeError, match="'argmax'.*int32"):
        launchers.maxpool2d_backward(be.kernels, xp, dy, arg.astype(np.int64), (1, 2, 6, 6), 2, 2, (2, 2), (0, 0))
    with pytest.raises(ValueError, match="'dy' must have shape"):
        launchers.maxpool2d_backward(be.kernels, xp, dy, arg, (1, 2, 8, 8), 2, 2, (2, 2), (0, 0))
    with pytest.raises(ValueError, match="'argmax' must have shape"):
        launchers.maxpool2d_backward(be.kernels, xp, dy, arg[:, :1].copy(), (1, 2, 6, 6), 2, 2, (2, 2), (0, 0))
    with pytest.raises(ValueError, match="'padding'"):
        launchers.maxpool2d_forward(be.kernels, xp, x, 2, 2, (2, 2), (-1, 0))
