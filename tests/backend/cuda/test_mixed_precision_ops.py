"""Mixed-precision backend ops: CastOps (casts, unscale, non-finite check, round_tf32), half and TF32
matrix products, and the 16-bit routing of im2col / col2im / max-pool and the generic conv.

Each op runs on the NumPy backend (the generic references) and the emulated CUDA backend (kernels on
and off); the kernel path is compared with the generic NumPy op, and a Spy checks which kernels ran.

Tolerances, from the formats' unit roundoff u (half the spacing at 1): fp16 u = 2^-11, bf16 u = 2^-8,
TF32 u = 2^-11 (10 explicit mantissa bits, like fp16), float32 u = 2^-24. Two paths that both form a
K-term float32 sum of the same exact products (products of fp16 / bf16 / TF32 values are exact in
float32) differ by at most about 2 * K * 2^-24 * (|a| @ |b|) (each path's accumulation error is
bounded by K * u32 * sum |a_ik b_kj|); when each then rounds to a half dtype, the two roundings may
land on neighbouring values: at most 2 u_half |y| more. So
    |y_kernel - y_generic| <= 2 u_half |y_generic| + 2 K 2^-24 (|a| @ |b|)        (elementwise).
Against the exact (float64) product of the unrounded float32 operands, TF32 adds the operand
roundings: |y_tf32 - a @ b| <= (2 u_tf32 + u_tf32^2 + K 2^-24) (|a| @ |b|).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from gpunn.backend.cpu.backend import NumpyBackend
from tests.kernel_support import Spy, get_kernel_backend, reference
from tests.reference import tf32_ref

F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
U = {F16: 2.0 ** -11, BF16: 2.0 ** -8}
U_TF32 = 2.0 ** -11
U_F32 = 2.0 ** -24
HALVES = [pytest.param(F16, id="f16"), pytest.param(BF16, id="bf16")]

BACKENDS = [pytest.param("numpy", id="numpy"), pytest.param(("emulated", True), id="emulated-kernels"),
            pytest.param(("emulated", False), id="emulated-generic")]


def _backend(param):
    return reference() if param == "numpy" else get_kernel_backend(*param)


@pytest.fixture(params=BACKENDS)
def be(request):
    return _backend(request.param)


@pytest.fixture
def emu():
    return get_kernel_backend("emulated", True)


@pytest.fixture
def emu_off():
    return get_kernel_backend("emulated", False)


class spying:
    """Swap a backend's kernel cache for a Spy for the body; `names` lists the kernels asked for."""

    def __init__(self, be):
        self.be = be

    def __enter__(self):
        self.saved = self.be.kernels
        self.spy = Spy(self.saved)
        self.be.kernels = self.spy
        return self.spy.names

    def __exit__(self, *exc):
        self.be.kernels = self.saved


def _h(be, a):
    """`a` on the backend, as a host array again for comparison."""
    return np.asarray(be.to_numpy(a))


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


def _rng(seed=0):
    return np.random.default_rng(seed)


# -- round_tf32 ---------------------------------------------------------------------------------
def _tf32_inputs():
    rng = _rng(1)
    bits = rng.integers(0, 2 ** 32, size=4000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2 ** 19, size=500, dtype=np.uint64).astype(np.uint32) << np.uint32(13)) | np.uint32(0x1000)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F7FFFFF, 0xFF7FFFFF,
                        0x00000001, 0x00001000, 0x00000FFF, 0x3F800FFF, 0x3F801000, 0x3F803000], dtype=np.uint32)
    return np.concatenate([bits, ties, special]).view(np.float32)


def test_round_tf32_bit_exact(be):
    x = _tf32_inputs()
    got = _h(be, be.round_tf32(be.asarray(x)))
    want = tf32_ref(x)
    assert got.dtype == F32 and got.shape == x.shape
    np.testing.assert_array_equal(_bits(got), _bits(want))
    x2 = x[:600].reshape(20, 30)[:, ::2]  # a strided 2-D view keeps its shape
    np.testing.assert_array_equal(_bits(_h(be, be.round_tf32(be.asarray(x2)))), _bits(tf32_ref(x2)))


def test_round_tf32_rejects_other_dtypes(be):
    with pytest.raises(TypeError, match="round_tf32: argument 'x' must have dtype float32"):
        be.round_tf32(be.asarray(np.zeros(3, np.float64)))


# -- casts ------------------------------------------------------------------------------------
def _cast_inputs():
    rng = _rng(2)
    x = (rng.standard_normal(3000) * np.exp2(rng.integers(-30, 30, size=3000))).astype(np.float32)
    return np.concatenate([x, np.array([0.0, -0.0, np.inf, -np.inf, 1e-8, -6e-8, 70000.0, 3e38], np.float32)])


@pytest.mark.parametrize("dtype", HALVES)
def test_cast_round_trip_matches_astype(be, dtype):
    x = _cast_inputs().reshape(2, -1)
    with np.errstate(over="ignore"):
        want = x.astype(dtype)
    y = be.cast_to_half(be.asarray(x), dtype)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(_bits(_h(be, y)), _bits(want))
    out = be.asarray(np.zeros(x.shape, dtype))
    assert be.cast_to_half(be.asarray(x), dtype, out=out) is out
    np.testing.assert_array_equal(_bits(_h(be, out)), _bits(want))
    back = be.cast_to_float(y)
    assert back.dtype == F32
    np.testing.assert_array_equal(_bits(_h(be, back)), _bits(want.astype(np.float32)))
    out32 = be.asarray(np.zeros(x.shape, np.float32))
    assert be.cast_to_float(y, out=out32) is out32
    np.testing.assert_array_equal(_bits(_h(be, out32)), _bits(want.astype(np.float32)))


@pytest.mark.parametrize("dtype", HALVES)
def test_cast_kernels_launch(emu, dtype):
    sfx = "f16" if dtype == F16 else "bf16"
    x = emu.asarray(_rng(3).standard_normal((4, 5)).astype(np.float32))
    with spying(emu) as names:
        y = emu.cast_to_half(x, dtype)
        emu.cast_to_float(y)
        emu.cast_to_half(x[:, ::2], dtype)  # strided: the generic op
    assert names == [f"cast_f32_to_{sfx}", f"cast_{sfx}_to_f32"]


def test_casts_generic_when_switched_off(emu_off):
    x = emu_off.asarray(np.ones((3, 3), np.float32))
    with spying(emu_off) as names:
        y = emu_off.cast_to_half(x, BF16)
        emu_off.cast_to_float(y)
        emu_off.unscale_into(y, emu_off.asarray(np.ones(1, np.float32)), emu_off.asarray(np.zeros(1, np.int32)))
        emu_off.nonfinite_check(y, emu_off.asarray(np.ones(1, np.float32)), emu_off.asarray(np.zeros(1, np.int32)))
    assert names == []


# -- unscale_into / nonfinite_check ----------------------------------------------------------------
def _grads(dtype, bad):
    g = (_rng(4).standard_normal((6, 50)) * 1000).astype(dtype)
    if bad == "inf":
        g[2, 7] = np.inf
    elif bad == "nan":
        g[5, 49] = np.nan
    elif bad == "overflow":  # finite in the half dtype, inf once multiplied by inv_scale
        g[0, 0] = dtype.type(60000.0) if dtype == F16 else dtype.type(3e38)
    return g


@pytest.mark.parametrize("dtype", HALVES + [pytest.param(F32, id="f32")])
@pytest.mark.parametrize("bad", ["none", "inf", "nan", "overflow"])
def test_unscale_into_and_nonfinite_check(be, dtype, bad):
    g = _grads(dtype, bad)
    inv = np.array([2.0 ** 10 if bad == "overflow" else 0.125], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        want = g.astype(np.float32) * inv[0]
    expect_bad = int(not np.all(np.isfinite(want)))
    gd, invd = be.asarray(g), be.asarray(inv)
    found = be.asarray(np.zeros(1, np.int32))
    out = be.unscale_into(gd, invd, found)
    assert out.dtype == F32 and out.shape == g.shape
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(_h(be, out)), nan)
    np.testing.assert_array_equal(_bits(_h(be, out))[~nan], _bits(want)[~nan])
    assert _h(be, found).tolist() == [expect_bad]
    out2 = be.asarray(np.zeros(g.shape, np.float32))
    assert be.unscale_into(gd, invd, found, out=out2) is out2
    np.testing.assert_array_equal(_bits(_h(be, out2))[~nan], _bits(want)[~nan])

    found2 = be.asarray(np.zeros(1, np.int32))
    assert be.nonfinite_check(gd, invd, found2) is None
    assert _h(be, found2).tolist() == [expect_bad]
    np.testing.assert_array_equal(_bits(_h(be, gd)), _bits(g))  # g untouched
    # never cleared: a clean buffer after a bad one leaves the flag set
    clean = be.asarray(np.ones((3, 3), dtype))
    be.nonfinite_check(clean, invd, be.asarray(np.zeros(1, np.int32)))
    flag = be.asarray(np.ones(1, np.int32))
    be.nonfinite_check(clean, invd, flag)
    be.unscale_into(clean, invd, flag)
    assert _h(be, flag).tolist() == [1]


@pytest.mark.parametrize("dtype", HALVES)
def test_unscale_kernels_launch(emu, dtype):
    sfx = "f16" if dtype == F16 else "bf16"
    g = emu.asarray(np.ones((300,), dtype))  # over one block: several blocks reduce
    inv, found = emu.asarray(np.ones(1, np.float32)), emu.asarray(np.zeros(1, np.int32))
    with spying(emu) as names:
        emu.unscale_into(g, inv, found)
        emu.nonfinite_check(g, inv, found)
        emu.nonfinite_check(emu.asarray(np.ones(4, np.float32)), inv, found)  # float32 g: generic
    assert names == [f"unscale_check_{sfx}_to_f32", f"check_finite_{sfx}"]
    assert _h(emu, found).tolist() == [0]
    bad = np.ones(700, dtype)
    bad[650] = np.inf  # in the third block
    emu.nonfinite_check(emu.asarray(bad), inv, found)
    assert _h(emu, found).tolist() == [1]


def test_cast_ops_bad_inputs(be):
    a = be.asarray
    x32 = a(np.zeros((2, 3), np.float32))
    h = a(np.zeros((2, 3), F16))
    inv, found = a(np.ones(1, np.float32)), a(np.zeros(1, np.int32))
    with pytest.raises(TypeError, match="cast_to_half: argument 'x' must have dtype float32"):
        be.cast_to_half(a(np.zeros(3, np.float64)), F16)
    with pytest.raises(TypeError, match="cast_to_half: argument 'dtype' must be float16 or bfloat16"):
        be.cast_to_half(x32, np.float32)
    with pytest.raises(ValueError, match="argument 'out' must have shape"):
        be.cast_to_half(x32, F16, out=a(np.zeros((3, 2), F16)))
    with pytest.raises(TypeError, match="argument 'out' must have dtype"):
        be.cast_to_half(x32, F16, out=a(np.zeros((2, 3), BF16)))
    with pytest.raises(TypeError, match="cast_to_float: argument 'x' must be float16 or bfloat16"):
        be.cast_to_float(x32)
    with pytest.raises(TypeError, match="unscale_into: argument 'g' must be float16, bfloat16"):
        be.unscale_into(a(np.zeros(3, np.int32)), inv, found)
    with pytest.raises(ValueError, match="unscale_into: argument 'inv_scale' must have shape \\(1,\\)"):
        be.unscale_into(h, a(np.ones(2, np.float32)), found)
    with pytest.raises(TypeError, match="unscale_into: argument 'inv_scale' must have dtype float32"):
        be.unscale_into(h, a(np.ones(1, np.float64)), found)
    with pytest.raises(TypeError, match="nonfinite_check: argument 'found_inf' must have dtype int32"):
        be.nonfinite_check(h, inv, a(np.zeros(1, np.float32)))
    with pytest.raises(ValueError, match="unscale_into: argument 'out' must have shape"):
        be.unscale_into(h, inv, found, out=a(np.zeros(6, np.float32)))


# -- matmul precision -------------------------------------------------------------------------------
def test_matmul_precision_attribute_and_scope(be):
    assert be.matmul_precision == "highest"
    with be.matmul_precision_scope("tf32"):
        assert be.matmul_precision == "tf32"
        with be.matmul_precision_scope("highest"):
            assert be.matmul_precision == "highest"
        assert be.matmul_precision == "tf32"
    assert be.matmul_precision == "highest"
    with pytest.raises(RuntimeError), be.matmul_precision_scope("tf32"):
        raise RuntimeError("body fails")
    assert be.matmul_precision == "highest"  # restored on an exception
    with pytest.raises(ValueError, match="argument 'matmul_precision' must be one of \\('highest', 'tf32'\\)"):
        with be.matmul_precision_scope("high"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="argument 'matmul_precision'"):
        be.matmul_precision = "medium"
    assert be.matmul_precision == "highest"


def _bound(a, b, y_ref, u_half=0.0):
    """The module docstring's bound between two float32-accumulated products (rounded to a half dtype
    when u_half > 0)."""
    k = a.shape[-1]
    mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    return 2 * u_half * np.abs(y_ref.astype(np.float64)) + 2 * k * U_F32 * mag


def _operands(dtype, m=33, k=40, n=21, seed=5):
    rng = _rng(seed)
    return rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)


@pytest.mark.parametrize("dtype", HALVES)
def test_half_matmul_parity(be, dtype):
    a, b = _operands(dtype)
    ref = (a.astype(np.float32) @ b.astype(np.float32)).astype(dtype)  # float32 compute, one rounding
    for aa, bb in ((a, b), (np.ascontiguousarray(a.T).T, b), (a, np.ascontiguousarray(b.T).T)):  # nn, tn, nt
        y = be.matmul(be.asarray(aa), be.asarray(bb))
        assert y.dtype == dtype and y.shape == (33, 21)
        err = np.abs(_h(be, y).astype(np.float64) - ref.astype(np.float64))
        assert np.all(err <= _bound(a, b, ref, U[dtype]))


@pytest.mark.parametrize("dtype", HALVES)
def test_half_matmul_acc(be, dtype):
    a, b = _operands(dtype, seed=6)
    c0 = _rng(7).standard_normal((33, 21)).astype(dtype)
    out = be.asarray(c0.copy())
    assert be.matmul_acc(out, be.asarray(a), be.asarray(b)) is None
    want = (c0.astype(np.float32) + a.astype(np.float32) @ b.astype(np.float32)).astype(dtype)
    mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)) + np.abs(c0.astype(np.float64))
    bound = 2 * U[dtype] * np.abs(want.astype(np.float64)) + 2 * (a.shape[1] + 1) * U_F32 * mag
    assert out.dtype == dtype
    assert np.all(np.abs(_h(be, out).astype(np.float64) - want.astype(np.float64)) <= bound)
    # a float32 out accumulates the float32 product, no rounding to the half dtype
    c32 = c0.astype(np.float32)
    out32 = be.asarray(c32.copy())
    be.matmul_acc(out32, be.asarray(a), be.asarray(b))
    want32 = c32 + a.astype(np.float32) @ b.astype(np.float32)
    assert np.all(np.abs(_h(be, out32).astype(np.float64) - want32) <= 2 * (a.shape[1] + 1) * U_F32 * mag)


@pytest.mark.parametrize("dtype", HALVES)
def test_half_matmul_kernels_launch(emu, dtype):
    sfx = "f16" if dtype == F16 else "bf16"
    a, b = (emu.asarray(v) for v in _operands(dtype, 8, 16, 8))
    with spying(emu) as names:
        emu.matmul(a, b)
        emu.matmul(a.T.copy().T, b)
        emu.matmul_acc(emu.asarray(np.zeros((8, 8), np.float32)), a, b)
        emu.matmul_acc(emu.asarray(np.zeros((8, 8), dtype)), a, b)
        emu.matmul(emu.asarray(np.ones((2, 8, 16), dtype)), b)  # batched: the generic op
    assert names == [f"gemm_tc_nn_{sfx}", f"cast_f32_to_{sfx}", f"gemm_tc_tn_{sfx}", f"cast_f32_to_{sfx}",
                     f"gemm_tc_nn_{sfx}",
                     f"cast_{sfx}_to_f32", f"gemm_tc_nn_{sfx}", f"cast_f32_to_{sfx}"]


def test_tf32_matmul(be):
    a, b = _operands(np.float32, seed=8)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    tf32_ref_product = tf32_ref(a) @ tf32_ref(b)  # float32 products of TF32 values
    with be.matmul_precision_scope("tf32"):
        y = _h(be, be.matmul(be.asarray(a), be.asarray(b)))
        out = be.asarray(np.ones((33, 21), np.float32))
        be.matmul_acc(out, be.asarray(a), be.asarray(b))
        y64 = _h(be, be.matmul(be.asarray(a.astype(np.float64)), be.asarray(b.astype(np.float64))))
    assert y.dtype == F32
    assert np.all(np.abs(y - tf32_ref_product) <= _bound(a, b, tf32_ref_product))
    k = a.shape[1]
    assert np.all(np.abs(y - exact) <= (2 * U_TF32 + U_TF32 ** 2 + k * U_F32) * mag)
    assert np.all(np.abs(_h(be, out) - (1 + tf32_ref_product)) <= _bound(a, b, tf32_ref_product) + 2 * U_F32 * 2)
    assert np.max(np.abs(y - exact)) > 50 * k * U_F32 * np.max(mag) / k  # really rounded, not float32
    np.testing.assert_allclose(y64, exact, rtol=1e-12, atol=1e-12)  # float64 is never rounded
    y_hi = _h(be, be.matmul(be.asarray(a), be.asarray(b)))  # back to "highest": float32
    assert np.all(np.abs(y_hi - exact) <= 2 * k * U_F32 * mag)


def test_tf32_kernels_launch(emu, emu_off):
    a, b = (emu.asarray(v) for v in _operands(np.float32, 8, 16, 8))
    with spying(emu) as names:
        with emu.matmul_precision_scope("tf32"):
            emu.matmul(a, b)
            emu.matmul_acc(emu.asarray(np.zeros((8, 8), np.float32)), a, b)
        emu.matmul(a, b)  # highest: the float32 SIMT GEMM
    assert names[:2] == ["gemm_tc_nn_tf32", "gemm_tc_nn_tf32"]
    assert len(names) == 3 and names[2].startswith("gemm_") and "tc" not in names[2]
    with spying(emu_off) as off_names, emu_off.matmul_precision_scope("tf32"):
        emu_off.matmul(a, b)
        emu_off.matmul(emu.asarray(np.ones((4, 4), F16)), emu.asarray(np.ones((4, 4), F16)))
    assert off_names == []


def test_mixed_dtype_matmul(be):
    a = np.ones((4, 6), F16)
    for other in (BF16, F32):
        b = np.full((6, 3), 0.5, other)
        y = be.matmul(be.asarray(a), be.asarray(b))
        assert y.dtype == F32
        np.testing.assert_array_equal(_h(be, y), np.full((4, 3), 3.0, np.float32))
        y2 = be.matmul(be.asarray(b.T.copy()), be.asarray(a.T.copy()))
        assert y2.dtype == F32
    y = be.matmul(be.asarray(a), be.asarray(np.ones((6, 2), np.float64)))
    assert y.dtype == np.float64


@pytest.mark.parametrize("dtype", HALVES)
def test_batched_half_matmul(be, dtype):
    a = _rng(9).standard_normal((2, 5, 7)).astype(dtype)
    b = _rng(10).standard_normal((7, 3)).astype(dtype)
    y = be.matmul(be.asarray(a), be.asarray(b))
    ref = (a.astype(np.float32) @ b.astype(np.float32)).astype(dtype)
    assert y.dtype == dtype
    assert np.all(np.abs(_h(be, y).astype(np.float64) - ref.astype(np.float64)) <= _bound(a, b, ref, U[dtype]))


def test_matmul_bad_shapes(be):
    with pytest.raises(ValueError, match="matmul: argument 'b' must have 4 rows"):
        be.matmul(be.asarray(np.ones((2, 4), F16)), be.asarray(np.ones((3, 2), F16)))
    with pytest.raises(ValueError, match="matmul: argument 'a' must have at least 2 dimensions"):
        be.matmul(be.asarray(np.ones(4, BF16)), be.asarray(np.ones((4, 2), BF16)))


# -- 16-bit im2col / col2im / max-pool and the generic conv ------------------------------------------
@pytest.mark.parametrize("dtype", HALVES)
def test_half_unfold_and_pool_kernels(emu, dtype):
    sfx = "f16" if dtype == F16 else "bf16"
    ref = reference()
    x = _rng(11).standard_normal((2, 3, 6, 6)).astype(dtype)
    xd = emu.asarray(x)
    geo = ((1, 1), (1, 1), (1, 1))
    with spying(emu) as names:
        cols = emu.im2col(xd, 3, 3, *geo)
        back = emu.col2im(cols, x.shape, 3, 3, *geo)
        y, arg = emu.maxpool2d_forward(xd, 3, 3, (2, 2), (1, 1))
        dx = emu.maxpool2d_backward(y, arg, x.shape, 3, 3, (2, 2), (1, 1))
    assert names == [f"im2col_{sfx}", f"col2im_{sfx}", f"maxpool2d_fwd_{sfx}", f"maxpool2d_bwd_{sfx}"]
    cols_ref = ref.im2col(x, 3, 3, *geo)
    np.testing.assert_array_equal(_bits(_h(emu, cols)), _bits(cols_ref))  # a copy: exact
    back_ref = ref.col2im(cols_ref, x.shape, 3, 3, *geo)
    # both sum at most 9 half values in float32 (exact for these: 9 terms of 11 / 8 bits fit in 24 bits
    # when of like magnitude; allow one rounding step each way) and round once
    assert back.dtype == dtype
    assert np.all(np.abs(_h(emu, back).astype(np.float64) - back_ref.astype(np.float64))
                  <= 2 * U[dtype] * np.abs(back_ref.astype(np.float64)) + 1e-30)
    y_ref, arg_ref = ref.maxpool2d_forward(x, 3, 3, (2, 2), (1, 1))
    np.testing.assert_array_equal(_bits(_h(emu, y)), _bits(y_ref))
    np.testing.assert_array_equal(_h(emu, arg), arg_ref)
    dx_ref = ref.maxpool2d_backward(y_ref, arg_ref, x.shape, 3, 3, (2, 2), (1, 1))
    assert np.all(np.abs(_h(emu, dx).astype(np.float64) - dx_ref.astype(np.float64))
                  <= 2 * U[dtype] * np.abs(dx_ref.astype(np.float64)))


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("geo", [((3, 3), (1, 1), (1, 1)), ((1, 1), (1, 1), (0, 0)), ((3, 3), (2, 2), (0, 0))],
                         ids=["3x3-pad", "1x1", "3x3-stride2"])
def test_half_conv_parity(be, dtype, geo):
    (kh, kw), stride, padding = geo
    rng = _rng(12)
    x = rng.standard_normal((2, 3, 7, 7)).astype(dtype)
    w = rng.standard_normal((4, 3, kh, kw)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype)
    args = (stride, padding, (1, 1))
    y, cols = be.conv2d_forward(be.asarray(x), be.asarray(w), be.asarray(bias), *args)
    # the reference: float32 conv of the same half values (generic NumPy float32 path), rounded once
    ref = NumpyBackend(fast_paths=False)
    y32, cols32 = ref.conv2d_forward(x.astype(np.float32), w.astype(np.float32), bias.astype(np.float32), *args)
    assert y.dtype == dtype
    k = 3 * kh * kw + 1  # the reduction length, with the bias term
    mag, _ = ref.conv2d_forward(np.abs(x.astype(np.float32)), np.abs(w.astype(np.float32)),
                                np.abs(bias.astype(np.float32)), *args)
    tol = 2 * U[dtype] * np.abs(y32.astype(np.float64)) + 2 * k * U_F32 * mag
    assert np.all(np.abs(_h(be, y).astype(np.float64) - y32.astype(np.float64)) <= tol)

    dy = rng.standard_normal(y32.shape).astype(dtype)
    dx, dw, db = be.conv2d_backward(be.asarray(dy), x.shape, be.asarray(w), cols, *args)
    dx32, dw32, db32 = ref.conv2d_backward(dy.astype(np.float32), x.shape, w.astype(np.float32), cols32, *args)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    npos = 2 * y32.shape[2] * y32.shape[3]  # dweight / dbias sum over N * OH * OW terms
    adw = np.abs(ref.conv2d_backward(np.abs(dy.astype(np.float32)), x.shape, np.abs(w.astype(np.float32)),
                                     np.abs(cols32), *args)[1])
    assert np.all(np.abs(_h(be, dw).astype(np.float64) - dw32) <= 2 * U[dtype] * np.abs(dw32) + 2 * npos * U_F32 * adw)
    adb = np.abs(dy.astype(np.float64)).sum(axis=(0, 2, 3))
    assert np.all(np.abs(_h(be, db).astype(np.float64) - db32) <= 2 * U[dtype] * np.abs(db32) + 2 * npos * U_F32 * adb)
    # dx: dcols rounded once to the half dtype (F = 4 terms), then col2im sums kh*kw of them, rounded once
    adx = np.abs(ref.conv2d_backward(np.abs(dy.astype(np.float32)), x.shape, np.abs(w.astype(np.float32)),
                                     np.abs(cols32), *args)[0])
    assert np.all(np.abs(_h(be, dx).astype(np.float64) - dx32) <= 4 * U[dtype] * adx + 1e-30)


@pytest.mark.parametrize("dtype", HALVES)
def test_half_bias_grad_sums_in_float32(be, dtype):
    # 4096 ones: a float16 running sum would stop at 2048, a bfloat16 one at 256; float32 gets 4096 exactly
    dy = np.ones((4, 1, 32, 32), dtype)
    x_shape = (4, 2, 32, 32)
    w = np.zeros((1, 2, 1, 1), dtype)
    cols = np.zeros((4, 2, 1024), dtype)
    _, _, db = be.conv2d_backward(be.asarray(dy), x_shape, be.asarray(w), be.asarray(cols), (1, 1), (0, 0), (1, 1),
                                  need_dx=False)
    assert db.dtype == dtype and _h(be, db).astype(np.float32).tolist() == [4096.0]


@pytest.mark.parametrize("dtype", HALVES)
def test_half_elementwise_ops(be, dtype):
    x = _rng(13).standard_normal((2, 3, 4, 4)).astype(dtype)
    xd = be.asarray(x)
    y = be.relu_forward(xd)
    assert y.dtype == dtype
    np.testing.assert_array_equal(_bits(_h(be, y)), _bits(np.maximum(x, dtype.type(0))))
    dx = be.relu_backward(xd, y)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(_h(be, dx).astype(np.float32), np.where(x > 0, x, 0).astype(np.float32))
    ya = be.avgpool2d_forward(xd, 2, 2, (2, 2), (0, 0))
    assert ya.dtype == dtype
    np.testing.assert_allclose(_h(be, ya).astype(np.float32),
                               x.astype(np.float32).reshape(2, 3, 2, 2, 2, 2).mean(axis=(3, 5)),
                               rtol=4 * U[dtype], atol=4 * U[dtype])
    assert be.avgpool2d_backward(ya, x.shape, 2, 2, (2, 2), (0, 0)).dtype == dtype
    yd, mask = be.dropout_forward(xd, 0.5)
    assert yd.dtype == dtype and mask.dtype == np.uint8
    m = _h(be, mask).astype(bool)
    np.testing.assert_array_equal(_h(be, yd).astype(np.float32), np.where(m, x.astype(np.float32) * 2, 0))
    ddx = be.dropout_backward(xd, mask, 0.5)
    assert ddx.dtype == dtype
    np.testing.assert_array_equal(_h(be, ddx).astype(np.float32), np.where(m, x.astype(np.float32) * 2, 0))


def test_half_overflow_is_silent_inf(be):
    # 300 * 300 = 90000 > 65504 (float16's largest): +inf, with no warning (the suite makes warnings
    # errors): in fp16 training an overflow is the loss scaler's to catch, as on a GPU
    a = be.asarray(np.full((2, 1), 300.0, F16))
    b = be.asarray(np.full((1, 2), 300.0, F16))
    y = _h(be, be.matmul(a, b))
    assert y.dtype == F16 and np.all(np.isposinf(y))
    out = be.asarray(np.full((2, 2), 60000.0, F16))
    be.matmul_acc(out, be.asarray(np.ones((2, 1), F16)), be.asarray(np.full((1, 2), 10000.0, F16)))
    assert np.all(np.isposinf(_h(be, out)))
