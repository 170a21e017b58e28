"""16-bit kernels: kernels/cast.cu, and the float16 / bfloat16 variants of im2col.cu and maxpool.cu.

The casts must match NumPy's float16 / ml_dtypes.bfloat16 `astype` bit for bit (random values,
exact ties, subnormals, overflow to inf, signed zeros); a NaN only has to stay a NaN (CUDA gives the
canonical NaN). unscale_check is one float32 multiply, so exact. im2col and the max-pool forward
only copy and compare: on half-representable values the 16-bit kernels give the float32 kernels'
result bit for bit. col2im and the max-pool backward sum in float and round once: their result is
the float32 kernel's (same values, same order) rounded to the 16-bit type, i.e. within half an ulp
of the float32 result, and in fact equal to its rounding.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gpunn.backend.cuda import cast_launch, launchers
from gpunn.backend.ops import cast as cast_ref
from gpunn.backend.ops.geometry import conv_output_size
from tests.kernel_support import KERNEL_SETTINGS, device_backend, to_host  # noqa: F401

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALVES = [pytest.param(F16, id="f16"), pytest.param(BF16, id="bf16")]


def _dev(be, a):
    """`a` on the backend's device, or a skip where its array module has no such dtype (CuPy, bfloat16)."""
    try:
        return be.asarray(np.ascontiguousarray(a).copy())
    except Exception as exc:  # pragma: no cover - only on a backend without the dtype
        pytest.skip(f"{type(be).__name__} cannot hold {a.dtype} arrays: {exc}")


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint16 if a.dtype.itemsize == 2 else np.uint32)


def assert_same_bits(got, expected, name=""):
    """Bit-equal where not NaN; NaN exactly where expected is NaN (CUDA canonicalises NaNs)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (name, got.dtype, got.shape)
    nan = np.isnan(expected.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan, err_msg=f"{name}: NaN positions")
    np.testing.assert_array_equal(_bits(got)[~nan], _bits(expected)[~nan], err_msg=f"{name}: bits")


# -- inputs for the float32 -> 16-bit casts ------------------------------------------------------
def _ties(dtype, rng, count=2000):
    """float32 values exactly halfway between two neighbouring finite values of `dtype` (both signs,
    normal and subnormal): round-to-nearest-even must pick the even one."""
    bits = rng.integers(0, 0x7C00 if dtype == F16 else 0x7F80, size=count, dtype=np.uint16)
    lo = bits.view(dtype).astype(np.float32)
    hi = (bits + 1).view(dtype).astype(np.float32)  # the next value up (may be inf: then no tie)
    mid = (lo.astype(np.float64) + hi.astype(np.float64)) / 2
    mid = mid[np.isfinite(mid)].astype(np.float32)
    assert np.all(mid.astype(np.float64) == (lo.astype(np.float64) + hi.astype(np.float64))[np.isfinite(mid)] / 2)
    sign = np.where(rng.random(mid.size) < 0.5, -1, 1).astype(np.float32)
    return mid * sign


def _cast_inputs(dtype):
    rng = np.random.default_rng(7)
    parts = [
        (rng.standard_normal(3000) * 2.0 ** rng.integers(-30, 30, 3000)).astype(np.float32),
        rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # every exponent
        _ties(dtype, rng),
    ]
    if dtype == F16:
        special = [65504.0, 65519.0, 65520.0, 65536.0, 1e5, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-26,
                   2.0**-14, 2.0**-14 - 2.0**-25, 6e-8, 1e-9]
    else:
        special = [3.3895313892515355e38, 3.3961776e38, 3.4028235e38, 2.0**-133, 2.0**-134, 3 * 2.0**-135,
                   1.1754944e-38, 9.2e-41, 1e-45, 2.0**-126 - 2.0**-134]
    special += [0.0, 1.0, 1.0 + 2.0**-11, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, np.inf]
    s = np.array(special, np.float32)
    parts += [s, -s, np.array([np.nan, -np.nan], np.float32)]
    return np.concatenate(parts)


@pytest.mark.parametrize("dtype", HALVES)
def test_cast_f32_to_half_is_astype_bit_for_bit(device_backend, dtype):
    be = device_backend
    x = _cast_inputs(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = x.astype(dtype)
    assert np.isinf(expected.astype(np.float32)).sum() > 2 and (expected == 0).sum() > 2  # overflow and underflow
    got = cast_launch.cast_f32_to_half(be.kernels, be.xp, _dev(be, x), dtype)
    assert_same_bits(to_host(be, got), expected, "cast")
    assert_same_bits(cast_ref.cast_to_half(x, dtype), expected, "reference")


@pytest.mark.parametrize("dtype", HALVES)
def test_cast_half_to_f32_every_bit_pattern(device_backend, dtype):
    be = device_backend
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype).reshape(256, 256)  # any shape
    got = to_host(be, cast_launch.cast_half_to_f32(be.kernels, be.xp, _dev(be, h)))
    assert got.shape == (256, 256)
    with np.errstate(invalid="ignore"):
        assert_same_bits(got, h.astype(np.float32), "cast back")
    assert_same_bits(cast_ref.cast_to_float(h), h.astype(np.float32), "reference")


@pytest.mark.parametrize("dtype", HALVES)
def test_casts_round_trip_into_given_out_and_grid_stride(device_backend, dtype, monkeypatch):
    """`out` is written in place (the half copy of the master weights is reused); 3 blocks of 256
    threads cover ~5k elements only through the grid-stride loop."""
    be = device_backend
    monkeypatch.setattr(launchers, "MAX_GRID", 3)
    master = np.random.default_rng(3).standard_normal((17, 301)).astype(np.float32)
    out = _dev(be, np.zeros(master.shape, dtype))
    got = cast_launch.cast_f32_to_half(be.kernels, be.xp, _dev(be, master), dtype, out=out)
    assert got is out
    assert_same_bits(to_host(be, out), master.astype(dtype), "cast into out")
    back = cast_launch.cast_half_to_f32(be.kernels, be.xp, out)
    assert_same_bits(to_host(be, back), master.astype(dtype).astype(np.float32), "back")


def test_empty_buffers_launch_nothing(device_backend):
    be = device_backend
    got = cast_launch.cast_f32_to_half(be.kernels, be.xp, _dev(be, np.zeros((0, 3), np.float32)), np.float16)
    assert got.shape == (0, 3) and got.dtype == F16


# -- unscale_check --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", HALVES)
def test_unscale_check_exact_and_found_inf(device_backend, dtype, monkeypatch):
    be = device_backend
    monkeypatch.setattr(launchers, "MAX_GRID", 2)  # the flag must be set by a grid-stride iteration too
    rng = np.random.default_rng(11)
    g = (rng.standard_normal(4099) * 300).astype(dtype)
    gd = _dev(be, g)
    found = _dev(be, np.zeros(1, np.int32))
    for inv in (1 / 1024, 3.0, 1 / 3):  # a power of two and two that round
        inv_scale = np.array([inv], np.float32)
        out = to_host(be, cast_launch.unscale_check(be.kernels, be.xp, gd, _dev(be, inv_scale), found))
        expected = g.astype(np.float32) * inv_scale[0]
        assert out.dtype == np.float32
        assert_same_bits(out, expected, f"unscale by {inv}")
        ref_found = np.zeros(1, np.int32)
        assert_same_bits(cast_ref.unscale_check(g, inv_scale, ref_found), expected, "reference")
        assert int(to_host(be, found)[0]) == 0 and ref_found[0] == 0
    # one inf / NaN late in the buffer, or a finite value whose product overflows: the flag is set
    for where, value, inv in ((4098, np.inf, 1.0), (3000, np.nan, 1.0), (0, -np.inf, 0.5), (2222, 60000.0, 1e35)):
        bad = g.copy()
        bad[where] = value
        found = _dev(be, np.zeros(1, np.int32))
        inv_scale = np.array([inv], np.float32)
        out = to_host(be, cast_launch.unscale_check(be.kernels, be.xp, _dev(be, bad), _dev(be, inv_scale), found))
        assert int(to_host(be, found)[0]) == 1, (where, value)
        with np.errstate(over="ignore", invalid="ignore"):
            assert_same_bits(out, bad.astype(np.float32) * inv_scale[0], "with a non-finite value")
        ref_found = np.zeros(1, np.int32)
        cast_ref.unscale_check(bad, inv_scale, ref_found)
        assert ref_found[0] == 1
        # a clean buffer afterwards leaves the flag at 1: only the caller zeroes it
        cast_launch.unscale_check(be.kernels, be.xp, gd, _dev(be, inv_scale), found)
        assert int(to_host(be, found)[0]) == 1
        cast_ref.unscale_check(g, inv_scale, ref_found)
        assert ref_found[0] == 1


def test_unscale_reads_the_scale_from_device_memory(device_backend):
    """The same arguments, a new value in the inv_scale buffer: a replayed graph sees the new scale."""
    be = device_backend
    g = np.array([1.0, -2.0, 4.0], np.float16)
    gd, inv, found = _dev(be, g), _dev(be, np.array([0.5], np.float32)), _dev(be, np.zeros(1, np.int32))
    out = _dev(be, np.zeros(3, np.float32))
    cast_launch.unscale_check(be.kernels, be.xp, gd, inv, found, out=out)
    np.testing.assert_array_equal(to_host(be, out), [0.5, -1.0, 2.0])
    inv[...] = np.float32(0.25)
    cast_launch.unscale_check(be.kernels, be.xp, gd, inv, found, out=out)
    np.testing.assert_array_equal(to_host(be, out), [0.25, -0.5, 1.0])


# -- im2col / col2im ------------------------------------------------------------------------------
@st.composite
def conv_case(draw):
    n = draw(st.sampled_from([1, 2]))
    c = draw(st.sampled_from([1, 3, 5]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    assume(oh >= 1 and ow >= 1)
    dtype = draw(st.sampled_from([F16, BF16]))
    return (n, c, h, w), kh, kw, stride, padding, dilation, dtype, oh, ow


def _half_values(shape, dtype, seed, ties=False):
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(-2, 3, size=shape).astype(dtype)
    return (rng.standard_normal(shape) * 4).astype(dtype)


@KERNEL_SETTINGS
@given(case=conv_case())
def test_im2col_and_col2im_half_match_float32_kernels(device_backend, case):
    be = device_backend
    shape, kh, kw, stride, padding, dilation, dtype, oh, ow = case
    geo = (kh, kw, stride, padding, dilation)
    x = _half_values(shape, dtype, 0)
    cols = launchers.im2col(be.kernels, be.xp, _dev(be, x), *geo)
    cols32 = launchers.im2col(be.kernels, be.xp, _dev(be, x.astype(np.float32)), *geo)
    assert cols.dtype == dtype
    assert_same_bits(to_host(be, cols), to_host(be, cols32).astype(dtype), "im2col")

    c = _half_values((shape[0], shape[1] * kh * kw, oh * ow), dtype, 1)
    back = to_host(be, launchers.col2im(be.kernels, be.xp, _dev(be, c), shape, *geo))
    back32 = to_host(be, launchers.col2im(be.kernels, be.xp, _dev(be, c.astype(np.float32)), shape, *geo))
    assert back.dtype == dtype and back.shape == shape
    # the float sum rounded once: within half an ulp of the float32 result, and equal to its rounding
    err = np.abs(back.astype(np.float64) - back32.astype(np.float64))
    ulp = np.abs(np.spacing(np.abs(back32).astype(dtype)).astype(np.float64)) if dtype == F16 else \
        np.abs(back32.astype(dtype).astype(np.float64)) * 2.0**-7 + 2.0**-133
    assert np.all(err <= ulp / 2 + 1e-30)
    assert_same_bits(back, back32.astype(dtype), "col2im")


def test_col2im_rounds_once_not_per_add(device_backend):
    """1 + 8 * 2^-11 in half: summing in half would round 1 + 2^-11 back to 1 at every step (ties
    to even) and give 1; the float sum rounded once gives 1 + 2^-8."""
    be = device_backend
    # a 3x3 image, kernel 3x3, padding 1: the centre pixel gathers one cols entry from each of the
    # 9 offsets (i, j), cols[0, i*3 + j, (2-i)*3 + (2-j)], and offset (0, 0) comes first
    c = np.full((1, 9, 9), 2.0**-11, np.float16)
    c[0, 0, 8] = 1.0
    got = to_host(be, launchers.col2im(be.kernels, be.xp, _dev(be, c), (1, 1, 3, 3), 3, 3, (1, 1), (1, 1), (1, 1)))
    assert got.dtype == F16 and float(got[0, 0, 1, 1]) == 1.0 + 2.0**-8
    half_sum = np.float16(1.0)
    for _ in range(8):
        half_sum = np.float16(half_sum + np.float16(2.0**-11))
    assert half_sum == 1.0  # what per-add rounding would have given


# -- max pool -------------------------------------------------------------------------------------
@st.composite
def pool_case(draw):
    n = draw(st.sampled_from([1, 2]))
    c = draw(st.sampled_from([1, 3, 5]))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    oh, ow = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(w, kw, stride[1], padding[1])
    assume(oh >= 1 and ow >= 1)
    return (n, c, h, w), kh, kw, stride, padding, draw(st.sampled_from([F16, BF16])), draw(st.booleans())


@KERNEL_SETTINGS
@given(case=pool_case())
def test_maxpool_half_matches_float32_kernels(device_backend, case):
    be = device_backend
    shape, kh, kw, stride, padding, dtype, ties = case
    geo = (kh, kw, stride, padding)
    x = _half_values(shape, dtype, 2, ties)
    y, arg = launchers.maxpool2d_forward(be.kernels, be.xp, _dev(be, x), *geo)
    y32, arg32 = launchers.maxpool2d_forward(be.kernels, be.xp, _dev(be, x.astype(np.float32)), *geo)
    assert y.dtype == dtype and arg.dtype == np.int32
    assert_same_bits(to_host(be, y), to_host(be, y32).astype(dtype), "maxpool forward")
    np.testing.assert_array_equal(to_host(be, arg), to_host(be, arg32))

    dy = _half_values(y.shape, dtype, 3)
    dx = to_host(be, launchers.maxpool2d_backward(be.kernels, be.xp, _dev(be, dy), arg, shape, *geo))
    dx32 = to_host(be, launchers.maxpool2d_backward(be.kernels, be.xp, _dev(be, dy.astype(np.float32)), arg32,
                                                    shape, *geo))
    assert dx.dtype == dtype
    assert_same_bits(dx, dx32.astype(dtype), "maxpool backward")


@pytest.mark.parametrize("dtype", HALVES)
def test_maxpool_half_padding_is_minus_inf_and_nan_sticks(device_backend, dtype):
    be = device_backend
    x = np.full((1, 1, 2, 2), -np.inf, dtype)
    x[0, 0, 1, 1] = -60000.0 if dtype == F16 else -3e38
    y, arg = launchers.maxpool2d_forward(be.kernels, be.xp, _dev(be, x), 2, 2, (2, 2), (1, 1))
    y, arg = to_host(be, y), to_host(be, arg)
    # window (0, 0) holds padding and x[0, 0] = -inf only: -inf, the first (padding) offset's index
    assert np.isneginf(y[0, 0, 0, 0].astype(np.float32)) and arg[0, 0, 0, 0] == -3
    assert y[0, 0, 1, 1] == x[0, 0, 1, 1] and arg[0, 0, 1, 1] == 3
    x = np.array([[[[np.nan, 5.0], [7.0, 1.0]]]], dtype)
    y, arg = launchers.maxpool2d_forward(be.kernels, be.xp, _dev(be, x), 2, 2, (2, 2), (0, 0))
    assert np.isnan(to_host(be, y).astype(np.float32)).all() and int(to_host(be, arg)[0, 0, 0, 0]) == 0


# -- bad inputs -----------------------------------------------------------------------------------
def test_cast_launchers_reject_bad_inputs(device_backend):
    be, xp, k = device_backend, device_backend.xp, device_backend.kernels
    x32 = _dev(be, np.zeros((4, 5), np.float32))
    h16 = _dev(be, np.zeros((4, 5), np.float16))
    with pytest.raises(TypeError, match="cast_f32_to_half: argument 'x' must have dtype float32, got float64"):
        cast_launch.cast_f32_to_half(k, xp, x32.astype(np.float64), np.float16)
    with pytest.raises(TypeError, match="cast_f32_to_half: argument 'dtype' must be float16 or bfloat16"):
        cast_launch.cast_f32_to_half(k, xp, x32, np.float64)
    with pytest.raises(TypeError, match="argument 'dtype' must be float16 or bfloat16"):
        cast_launch.cast_f32_to_half(k, xp, x32, "not a dtype")
    with pytest.raises(ValueError, match="argument 'out' must have shape \\(4, 5\\)"):
        cast_launch.cast_f32_to_half(k, xp, x32, np.float16, out=_dev(be, np.zeros(20, np.float16)))
    with pytest.raises(TypeError, match="argument 'out' must have dtype bfloat16, got float16"):
        cast_launch.cast_f32_to_half(k, xp, x32, ml_dtypes.bfloat16, out=h16)
    with pytest.raises(ValueError, match="'x' must be C-contiguous"):
        cast_launch.cast_f32_to_half(k, xp, x32[:, ::2], np.float16)
    with pytest.raises(TypeError, match="'x' must be a .*ndarray"):
        cast_launch.cast_f32_to_half(k, xp, [1.0], np.float16)
    with pytest.raises(TypeError, match="cast_half_to_f32: argument 'x' must be float16 or bfloat16.*float32"):
        cast_launch.cast_half_to_f32(k, xp, x32)
    with pytest.raises(TypeError, match="argument 'out' must have dtype float32"):
        cast_launch.cast_half_to_f32(k, xp, h16, out=h16)


def test_unscale_check_rejects_bad_inputs(device_backend):
    be, xp, k = device_backend, device_backend.xp, device_backend.kernels
    g = _dev(be, np.zeros(8, np.float16))
    inv = _dev(be, np.ones(1, np.float32))
    found = _dev(be, np.zeros(1, np.int32))
    with pytest.raises(TypeError, match="unscale_check: argument 'g' must be float16 or bfloat16.*float32"):
        cast_launch.unscale_check(k, xp, g.astype(np.float32), inv, found)
    with pytest.raises(TypeError, match="argument 'inv_scale' must have dtype float32, got float64"):
        cast_launch.unscale_check(k, xp, g, inv.astype(np.float64), found)
    with pytest.raises(ValueError, match="argument 'inv_scale' must have shape \\(1,\\)"):
        cast_launch.unscale_check(k, xp, g, _dev(be, np.ones(2, np.float32)), found)
    with pytest.raises(TypeError, match="argument 'inv_scale' must be a"):
        cast_launch.unscale_check(k, xp, g, 0.5, found)
    with pytest.raises(TypeError, match="argument 'found_inf' must have dtype int32, got bool"):
        cast_launch.unscale_check(k, xp, g, inv, found.astype(bool))
    with pytest.raises(ValueError, match="argument 'found_inf' must have shape \\(1,\\)"):
        cast_launch.unscale_check(k, xp, g, inv, _dev(be, np.zeros((1, 1), np.int32)))
    with pytest.raises(ValueError, match="argument 'out' must have shape \\(8,\\)"):
        cast_launch.unscale_check(k, xp, g, inv, found, out=_dev(be, np.zeros(4, np.float32)))
    if isinstance(found, np.ndarray):  # read-only flags exist on NumPy (emulated) arrays
        found.flags.writeable = False
        with pytest.raises(ValueError, match="'found_inf' is updated in place and must be writable"):
            cast_launch.unscale_check(k, xp, g, inv, found)


def test_half_im2col_maxpool_launchers_reject_bad_inputs(device_backend):
    be, xp, k = device_backend, device_backend.xp, device_backend.kernels
    geo = ((1, 1), (0, 0), (1, 1))
    x = _dev(be, np.zeros((1, 2, 5, 5), np.float16))
    with pytest.raises(TypeError, match="im2col: argument 'x' must be float32 or float64 \\(or float16 / bfloat16"):
        launchers.im2col(k, xp, x.astype(np.int16), 3, 3, *geo)
    with pytest.raises(ValueError, match="'cols' must have shape"):
        launchers.col2im(k, xp, _dev(be, np.zeros((1, 18, 10), ml_dtypes.bfloat16)), (1, 2, 5, 5), 3, 3, *geo)
    with pytest.raises(ValueError, match="maxpool2d_forward: argument 'x' must have 4 dimensions"):
        launchers.maxpool2d_forward(k, xp, x[0], 2, 2, (2, 2), (0, 0))
    y, arg = launchers.maxpool2d_forward(k, xp, x, 2, 2, (2, 2), (0, 0))
    with pytest.raises(TypeError, match="maxpool2d_backward: argument 'argmax' must have dtype int32"):
        launchers.maxpool2d_backward(k, xp, y, arg.astype(np.int64), x.shape, 2, 2, (2, 2), (0, 0))
    with pytest.raises(TypeError, match="maxpool2d_backward: argument 'dy' must be float32 or float64"):
        launchers.maxpool2d_backward(k, xp, arg, arg, x.shape, 2, 2, (2, 2), (0, 0))


def test_other_families_still_refuse_16_bit_arrays():
    """The shared dtype check stays float32 / float64 unless a launcher asks for half=True (im2col /
    col2im / max-pool here; batch norm, test_launchers_batchnorm_half.py): dropout, adam, gemm, conv."""
    for dtype in (F16, BF16):
        with pytest.raises(TypeError, match="'x' must be float32 or float64 for the CUDA kernels"):
            launchers._suffix(np.zeros(1, dtype), "x", "dropout_forward")
        assert launchers._suffix(np.zeros(1, dtype), "x", "im2col", half=True) in ("f16", "bf16")
        assert dtype not in launchers.SUPPORTED_DTYPES and dtype in launchers.HALF_DTYPES


def test_reference_rejects_non_half_dtypes():
    with pytest.raises(TypeError, match="cast_to_half: argument 'dtype' must be float16 or bfloat16"):
        cast_ref.cast_to_half(np.zeros(2, np.float32), np.float64)
    with pytest.raises(TypeError, match="cast_to_half: argument 'x' must have dtype float32"):
        cast_ref.cast_to_half(np.zeros(2, np.float64), np.float16)
    with pytest.raises(TypeError, match="unscale_check: argument 'g' must be float16 or bfloat16"):
        cast_ref.unscale_check(np.zeros(2, np.float32), np.ones(1, np.float32), np.zeros(1, np.int32))
