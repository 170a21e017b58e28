"""im2col / col2im kernels (kernels/im2col.cu) against the NumPy backend.

im2col is a pure copy, so it must match bit for bit; col2im sums in the reference's (i, j) order,
and is held to the stated float32 tolerance (1e-5 relative; float64 1e-12).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gpunn.backend.cuda import launchers
from gpunn.backend.ops.geometry import conv_output_size
from tests.kernel_support import (KERNEL_SETTINGS, assert_close, device_backend, get_kernel_backend,  # noqa: F401
                                  kernel_backend, reference, to_device, to_host)


@st.composite
def conv_case(draw):
    n = draw(st.sampled_from([1, 1, 2, 3]))  # batch 1 often
    c = draw(st.sampled_from([1, 3, 5, 33]))  # never a multiple of 32
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))  # odd sizes included
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))  # up to larger than the kernel
    padding = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))  # heavy padding
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    assume(oh >= 1 and ow >= 1)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (n, c, h, w), kh, kw, stride, padding, dilation, dtype


@KERNEL_SETTINGS
@given(case=conv_case())
def test_im2col_matches_numpy_exactly(kernel_backend, case):
    shape, kh, kw, stride, padding, dilation, dtype = case
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    expected = reference().im2col(x, kh, kw, stride, padding, dilation)
    (xd,) = to_device(kernel_backend, x)
    got = to_host(kernel_backend, kernel_backend.im2col(xd, kh, kw, stride, padding, dilation))
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@KERNEL_SETTINGS
@given(case=conv_case())
def test_col2im_matches_numpy(kernel_backend, case):
    shape, kh, kw, stride, padding, dilation, dtype = case
    n, c, h, w = shape
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = np.random.default_rng(1).standard_normal((n, c * kh * kw, oh * ow)).astype(dtype)
    expected = np.ascontiguousarray(reference().col2im(cols, shape, kh, kw, stride, padding, dilation))
    (cd,) = to_device(kernel_backend, cols)
    got = to_host(kernel_backend, kernel_backend.col2im(cd, shape, kh, kw, stride, padding, dilation))
    assert_close(got, expected, "col2im")


def test_many_blocks_and_grid_stride(device_backend, monkeypatch):
    """More elements than the grid has threads: the grid-stride loop must cover the rest."""
    monkeypatch.setattr(launchers, "MAX_GRID", 3)  # 3 blocks x 256 threads for ~12k elements
    x = np.random.default_rng(2).standard_normal((2, 7, 13, 11)).astype(np.float32)
    args = (3, 3, (1, 1), (1, 1), (1, 1))
    expected = reference().im2col(x, *args)
    (xd,) = to_device(device_backend, x)
    cols = device_backend.im2col(xd, *args)
    assert cols.size > 3 * launchers.BLOCK * 4
    np.testing.assert_array_equal(to_host(device_backend, cols), expected)
    back = to_host(device_backend, device_backend.col2im(cols, x.shape, *args))
    assert_close(back, np.ascontiguousarray(reference().col2im(expected, x.shape, *args)), "col2im")


def test_conv2d_uses_the_kernels_and_matches(device_backend):
    """conv2d_forward / backward route through the im2col / col2im overrides."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    wgt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    geo = ((2, 1), (1, 2), (1, 1))
    y_ref, cols_ref = reference().conv2d_forward(x, wgt, b, *geo)
    xd, wd, bd = to_device(device_backend, x, wgt, b)
    y, cols = device_backend.conv2d_forward(xd, wd, bd, *geo)
    assert_close(to_host(device_backend, y), y_ref, "y")
    dy = rng.standard_normal(y_ref.shape).astype(np.float32)
    ref = reference().conv2d_backward(dy, x.shape, wgt, cols_ref, *geo)
    got = to_host(device_backend, device_backend.conv2d_backward(device_backend.asarray(dy), x.shape, wd, cols, *geo))
    for name, g, r in zip(("dx", "dweight", "dbias"), got, ref):
        assert_close(g, np.ascontiguousarray(r), name)


def test_non_contiguous_input_is_made_contiguous_by_the_backend(device_backend):
    full = np.random.default_rng(4).standard_normal((2, 3, 8, 10)).astype(np.float32)
    expected = reference().im2col(full[:, :, :, ::2], 2, 2, (1, 1), (0, 0), (1, 1))
    strided = device_backend.asarray(full)[:, :, :, ::2]
    assert not strided.flags.c_contiguous
    got = to_host(device_backend, device_backend.im2col(strided, 2, 2, (1, 1), (0, 0), (1, 1)))
    np.testing.assert_array_equal(got, expected)


# -- launcher bad inputs ------------------------------------------------------------------------
def test_launcher_rejects_bad_inputs(device_backend):
    be, xp = device_backend, device_backend.xp
    x = be.asarray(np.zeros((1, 2, 5, 5), np.float32))
    geo = ((1, 1), (0, 0), (1, 1))
    with pytest.raises(TypeError, match="'x'.*float32 or float64"):
        launchers.im2col(be.kernels, xp, x.astype(np.int32), 3, 3, *geo)
    with pytest.raises(ValueError, match="'x'.*C-contiguous"):
        launchers.im2col(be.kernels, xp, x[:, :, :, ::2], 2, 2, *geo)
    with pytest.raises(ValueError, match="'x'.*4 dimensions"):
        launchers.im2col(be.kernels, xp, x[0], 3, 3, *geo)
    with pytest.raises(TypeError, match="'x'.*ndarray"):
        launchers.im2col(be.kernels, xp, [[1.0]], 3, 3, *geo)
    with pytest.raises(ValueError, match="'stride'"):
        launchers.im2col(be.kernels, xp, x, 3, 3, (0, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="empty output"):
        launchers.im2col(be.kernels, xp, x, 7, 7, *geo)
    with pytest.raises(ValueError, match="'cols' must have shape"):
        launchers.col2im(be.kernels, xp, be.asarray(np.zeros((1, 18, 10), np.float32)), (1, 2, 5, 5), 3, 3, *geo)
    with pytest.raises(ValueError, match="'x_shape'"):
        launchers.col2im(be.kernels, xp, be.asarray(np.zeros((1, 18, 9), np.float32)), (1, 2, 5), 3, 3, *geo)


def test_raw_kernel_refuses_python_int_scalars():
    """The reason launchers wrap every scalar: a Python int where `int` is declared is an error."""
    be = get_kernel_backend("emulated")
    fn = be.kernels.function("im2col", "im2col_f32")
    x = np.zeros((1, 1, 3, 3), np.float32)
    cols = np.zeros((1, 1, 9), np.float32)
    dims = [1, 1, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1, 3, 3]
    fn((1,), (32,), (x, cols, *[np.int32(d) for d in dims]))  # the right types run
    with pytest.raises((TypeError, ValueError)):
        fn((1,), (32,), (x, cols, *dims))
    with pytest.raises((TypeError, ValueError)):
        fn((1,), (32,), (x, cols, *[np.int64(d) for d in dims]))


def test_launch_plans_are_cached_per_shape_and_launch_constants(monkeypatch):
    """Plans are memoized (they cost as much as a small kernel to recompute), but never stale:
    the launch constants are part of the key, lists still work, errors are raised every time."""
    args = ("im2col", 2, 3, 40, 40, 3, 3, (1, 1), (1, 1), (1, 1))
    first = launchers._unfold_plan(*args)
    assert launchers._unfold_plan(*args) is first
    monkeypatch.setattr(launchers, "PLANE_BLOCKS", 4)
    assert launchers._unfold_plan(*args)[2] != first[2]
    assert launchers._unfold_plan("im2col", 2, 3, 40, 40, 3, 3, [1, 1], [1, 1], [1, 1])[:2] == first[:2]
    for _ in range(2):
        with pytest.raises(ValueError, match="im2col: argument 'stride' must be >= 1"):
            launchers._unfold_plan("im2col", 2, 3, 40, 40, 3, 3, (0, 1), (1, 1), (1, 1))


def test_row_counts_past_int32_are_refused():
    """plane_launch's rows and positions are kernel ints: a count past int32 is refused by name."""
    with pytest.raises(ValueError, match="im2col: 'a plane or row count' = 4294967296 does not fit"):
        launchers.plane_launch("im2col", 1 << 32, 100)
    with pytest.raises(ValueError, match="col2im: 'a plane or row count' = 2147483648"):
        launchers.plane_launch("col2im", 4, 1 << 31)
