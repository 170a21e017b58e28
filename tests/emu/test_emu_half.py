"""Half precision in the emulator: __half / __nv_bfloat16 conversions and arithmetic bit for bit
against NumPy float16 and ml_dtypes.bfloat16, TF32 rounding (cvt.rna: ties away from zero), WMMA
GEMMs in half, bf16 and tf32, and WMMA misuse reported instead of hanging.

NaN is the one deliberate difference from NumPy: like CUDA, float->half/bf16 of any NaN gives the
canonical 0x7fff and half->float of a NaN gives 0x7fffffff (NumPy keeps sign and payload bits)."""
from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from gpunn.emu import EmuLaunchError, RawModule
from tests.reference import gemm_f32_in_k_order, tf32_ref

KERNELS = Path(__file__).with_name("half_kernels.cu")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


@pytest.fixture(autouse=True)
def _quiet_float_casts():
    # overflow to inf and NaN are what these tests feed in on purpose
    with np.errstate(all="ignore"):
        yield


@pytest.fixture(scope="module")
def mod():
    m = RawModule(KERNELS.read_text(), filename=KERNELS.name)
    m.compile()
    return m


def _grid(n, threads=256):
    return ((n + threads - 1) // threads,), (threads,)


# ---------------------------------------------------------------------------------------------
# references

def to16_ref(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """NumPy's / ml_dtypes' rounding, with CUDA's canonical NaN."""
    bits = np.asarray(x, np.float32).astype(dtype).view(np.uint16).copy()
    bits[np.isnan(x)] = 0x7FFF
    return bits


def _finite_table(dtype):
    bits = np.arange(0x10000, dtype=np.uint32).astype(np.uint16)
    v = bits.view(dtype).astype(np.float64)
    ok = np.isfinite(v)
    order = np.argsort(v[ok], kind="stable")
    return v[ok][order], bits[ok][order]


def round_exact(values: list[Fraction], dtype) -> np.ndarray:
    """Correct round-to-nearest-even of exact values to a 16-bit format (bit patterns)."""
    table, tbits = _finite_table(dtype)
    fmax = Fraction(float(table[-1]))
    below = Fraction(float(table[-2]))
    overflow = fmax + (fmax - below) / 2  # a tie at the top rounds to even: inf (max has an odd mantissa)
    inf_bits = int(np.array(np.inf, np.float32).astype(dtype).view(np.uint16))
    out = np.empty(len(values), np.uint16)
    for n, v in enumerate(values):
        if abs(v) >= overflow:
            out[n] = inf_bits | (0x8000 if v < 0 else 0)
            continue
        i = int(np.searchsorted(table, float(v)))
        best = None
        for j in range(max(0, i - 2), min(len(table), i + 3)):
            d = abs(Fraction(float(table[j])) - v)
            key = (d, int(tbits[j]) & 1)  # nearest, then even mantissa
            if best is None or key < best[0]:
                best = (key, j)
        b = int(tbits[best[1]])
        if v == 0:  # exact zero: +0 unless the zero came out negative (handled by the caller)
            b = 0
        out[n] = b
    return out


def _special_floats() -> np.ndarray:
    """Values near half and bf16 rounding ties, subnormals, overflow, NaN, signed zeros, infinities."""
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 65504.0, 65519.99, 65520.0, -65520.0, 65536.0, 1e30,
            2.0**-24, 2.0**-25, -(2.0**-25), 2.0**-25 * 1.0000001, 2.0**-26, 2.0**-14, 2.0**-14 * (1 - 2**-11),
            3.0e38, 3.4028235e38, 1e-40, -1e-45, 1.401298464324817e-45, 2.0**-126, 2.0**-133, 2.0**-134,
            2.0**-134 * 1.5]
    out = [np.float32(v) for v in vals]
    out.append(np.uint32(0x7FA00001).view(np.float32))  # signalling NaN with a payload
    out.append(np.uint32(0xFFC12345).view(np.float32))
    # every half/bf16 value, the midpoints between neighbours (ties) and one float32 ulp either side
    for dtype in (F16, BF16):
        bits = np.arange(0x10000, dtype=np.uint32).astype(np.uint16)
        v = bits.view(dtype).astype(np.float32)
        v = np.sort(v[np.isfinite(v)])
        mid = ((v[:-1].astype(np.float64) + v[1:].astype(np.float64)) / 2).astype(np.float32)
        out += [v, mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))]
    return np.concatenate([np.atleast_1d(np.asarray(o, np.float32)) for o in out])


def _convert(mod, x):
    n = x.size
    h = np.zeros(n, F16)
    h_rn = np.zeros(n, np.uint16)
    b = np.zeros(n, BF16)
    b_plain = np.zeros(n, np.uint16)
    tf = np.zeros(n, np.float32)
    mod.get_function("to_half")(*_grid(n), (x, h, h_rn, b, b_plain, tf, np.int32(n)))
    return h.view(np.uint16), h_rn, b.view(np.uint16), b_plain, tf


# ---------------------------------------------------------------------------------------------
# conversions

@pytest.mark.parametrize("kind", ["random", "special"])
def test_float_to_half_and_bf16_bit_exact(mod, kind):
    rng = np.random.default_rng(0)
    if kind == "random":  # random bit patterns cover every exponent, NaNs and subnormals included
        x = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    else:
        x = _special_floats()
    x = np.ascontiguousarray(x)
    h, h_rn, b, b_plain, _ = _convert(mod, x)
    want_h, want_b = to16_ref(x, F16), to16_ref(x, BF16)
    np.testing.assert_array_equal(h, want_h)
    np.testing.assert_array_equal(h_rn, want_h)
    np.testing.assert_array_equal(b, want_b)
    np.testing.assert_array_equal(b_plain, want_b)
    nan = np.isnan(x)
    # away from NaN this is exactly NumPy's / ml_dtypes' rounding; NaN stays NaN (canonical, as CUDA)
    assert (h[~nan] == x[~nan].astype(F16).view(np.uint16)).all()
    assert np.isnan(h.view(F16)[nan]).all() and np.isnan(b.view(BF16)[nan].astype(np.float32)).all()


def test_known_half_bit_patterns(mod):
    x = np.array([1.0, -2.0, 65504.0, 65520.0, 2.0**-24, 2.0**-25, 2.0**-25 * 1.5, -0.0, np.nan, 1 + 2**-11,
                  1 + 3 * 2**-11], np.float32)
    h, _, b, _, _ = _convert(mod, x)
    assert [hex(v) for v in h] == ["0x3c00", "0xc000", "0x7bff", "0x7c00", "0x1", "0x0", "0x1", "0x8000", "0x7fff",
                                   "0x3c00", "0x3c02"]
    assert hex(b[0]) == "0x3f80" and hex(b[8]) == "0x7fff"


def test_all_half_and_bf16_patterns_to_float(mod):
    bits = np.arange(0x10000, dtype=np.uint32).astype(np.uint16)
    n = bits.size
    hf, bf, hf2, bf2 = (np.zeros(n, np.float32) for _ in range(4))
    mod.get_function("from_half")(*_grid(n), (bits.view(F16), bits.view(BF16), bits, hf, bf, hf2, bf2, np.int32(n)))
    want_h = bits.view(F16).astype(np.float32).view(np.uint32).copy()
    want_h[np.isnan(bits.view(F16))] = 0x7FFFFFFF  # CUDA drops the NaN payload and sign
    want_b = bits.view(BF16).astype(np.float32).view(np.uint32)  # a plain shift, NaN payload kept
    np.testing.assert_array_equal(hf.view(np.uint32), want_h)
    np.testing.assert_array_equal(hf2.view(np.uint32), want_h)
    np.testing.assert_array_equal(bf.view(np.uint32), want_b)
    np.testing.assert_array_equal(bf2.view(np.uint32), want_b)
    # and back: every non-NaN pattern round-trips exactly
    h, _, b, _, _ = _convert(mod, hf)
    keep = ~np.isnan(bits.view(F16))
    np.testing.assert_array_equal(h[keep], bits[keep])
    h, _, b, _, _ = _convert(mod, bf)
    keep = ~np.isnan(bits.view(BF16).astype(np.float32))
    np.testing.assert_array_equal(b[keep], bits[keep])


def test_tf32_rounding_ties_away_from_zero(mod):
    rng = np.random.default_rng(1)
    rand = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32)
    # exact ties (low 13 bits 0x1000) with even and odd kept parts, their neighbours, the top of the range
    base = rng.integers(0, 2**19, 2000, dtype=np.uint64).astype(np.uint32) << np.uint32(13)
    ties = np.concatenate([base | 0x1000, base | 0x0FFF, base | 0x1001, base | 0x80001000])
    top = np.array([0x7F7FF000, 0x7F7FEFFF, 0xFF7FF000, 0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00001, 0,
                    0x80000000, 0x00001000, 0x00000FFF, 0x80001000], np.uint32)
    x = np.ascontiguousarray(np.concatenate([rand, ties.astype(np.uint32), top]).view(np.float32))
    *_, tf = _convert(mod, x)
    np.testing.assert_array_equal(tf.view(np.uint32), tf32_ref(x).view(np.uint32))
    # spot checks of the rule itself
    one_tie = np.uint32(0x3F801000).view(np.float32)  # 1 + 2^-11: halfway between 1 and 1 + 2^-10
    assert tf32_ref(np.array([one_tie]))[0] == np.float32(1 + 2**-10)  # away from zero, not to even
    assert tf32_ref(np.array([-one_tie]))[0] == np.float32(-(1 + 2**-10))
    assert np.isinf(tf32_ref(np.array([np.float32(3.4028235e38)]))[0])  # rounds past the largest finite


# ---------------------------------------------------------------------------------------------
# arithmetic

def _ops(mod, dtype, a, b, c):
    n = a.size
    outs = [np.zeros(n, dtype) for _ in range(4)]
    isinf, isnan = np.zeros(n, np.int32), np.zeros(n, np.int32)
    name = "half_ops" if dtype == F16 else "bf16_ops"
    mod.get_function(name)(*_grid(n), (a, b, c, *outs, isinf, isnan, np.int32(n)))
    return [o.view(np.uint16) for o in outs] + [isinf, isnan]


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["half", "bf16"])
def test_half_arithmetic_is_correctly_rounded(mod, dtype):
    rng = np.random.default_rng(2)
    n = 3000
    bits = rng.integers(0, 0x10000, (3, n)).astype(np.uint16)
    # half of the samples with nearby exponents, so that sums cancel and round at ties often
    near = (rng.normal(size=(3, n // 2)) * 4).astype(np.float32).astype(dtype).view(np.uint16)
    bits[:, : n // 2] = near
    a, b, c = (np.ascontiguousarray(v.view(dtype)) for v in bits)
    add, mul, fma, absv, isinf, isnan = _ops(mod, dtype, a, b, c)
    fa, fb, fc = (v.astype(np.float64) for v in (a, b, c))
    finite = np.isfinite(fa) & np.isfinite(fb) & np.isfinite(fc)

    def exact(f):
        return [f(Fraction(float(x)), Fraction(float(y)), Fraction(float(z)))
                for x, y, z in zip(fa[finite], fb[finite], fc[finite])]

    f64 = {"add": fa + fb, "mul": fa * fb, "fma": fa * fb + fc}  # a*b is exact in float64; so is its sign
    for got, f, name in ((add, lambda x, y, z: x + y, "add"), (mul, lambda x, y, z: x * y, "mul"),
                         (fma, lambda x, y, z: x * y + z, "fma")):
        want = round_exact(exact(f), dtype)
        g = got[finite]
        zero = (want & 0x7FFF) == 0
        np.testing.assert_array_equal(g[~zero], want[~zero], err_msg=name)
        # zeros (exact or underflowed): the sign IEEE gives, which float64 arithmetic shows too
        want_sign = np.signbit(f64[name][finite][zero]).astype(np.uint16) << 15
        np.testing.assert_array_equal(g[zero], want_sign, err_msg=name)
    np.testing.assert_array_equal(absv, bits[0] & 0x7FFF)
    v = a.astype(np.float32)
    np.testing.assert_array_equal(isinf, np.where(np.isposinf(v), 1, np.where(np.isneginf(v), -1, 0)))
    np.testing.assert_array_equal(isnan, np.isnan(v).astype(np.int32))
    # non-finite inputs: NaN/inf propagate as in IEEE arithmetic
    nf = ~finite
    with np.errstate(all="ignore"):
        assert (np.isnan(add.view(dtype)[nf].astype(np.float32)) == np.isnan((fa + fb)[nf])).all()
        assert (np.isnan(fma.view(dtype)[nf].astype(np.float32)) == np.isnan((fa * fb + fc)[nf])).all()


def test_hfma_is_fused(mod):
    # (1 + 2^-10)^2 - 1 - 2^-9 = 2^-20: unfused (rounding the product first) gives 0
    a = np.array([1 + 2**-10], F16)
    c = np.array([-(1 + 2**-9)], F16)
    fma = _ops(mod, F16, a, a.copy(), c)[2]
    assert fma.view(F16)[0] == np.float16(2**-20)
    # bf16: 1.5 * (1 + 2^-7) = 1.5 + 2^-7 + 2^-8 is a tie; c = -2^-100 breaks it downwards. A double sum
    # loses c and rounds the tie to even (1.5 + 2^-6); the single rounding of the exact value does not.
    a = np.array([1.5], BF16)
    b = np.array([1 + 2**-7], BF16)
    c = np.array([-(2.0**-100)], BF16)
    fma = _ops(mod, BF16, a, b, c)[2]
    assert fma.view(BF16)[0].astype(np.float64) == 1.5 + 2**-7


def test_scalar_half_parameters(mod):
    n = 8
    hs, bs = np.zeros(n, F16), np.zeros(n, BF16)
    pair = np.zeros(2 * n, np.float32)
    mod.get_function("half_scalars")(1, 32, (np.float16(1.5), ml_dtypes.bfloat16(3.0), hs, bs, pair, np.int32(n)))
    i = np.arange(n)
    np.testing.assert_array_equal(hs, (1.5 + i).astype(F16))
    np.testing.assert_array_equal(bs.astype(np.float32), (3.0 * i).astype(np.float32))
    np.testing.assert_array_equal(pair, np.repeat((i + 0.5).astype(F16).astype(np.float32), 2))


def test_wrong_dtype_for_half_parameters_is_a_type_error(mod):
    n = 4
    x = np.zeros(n, np.float32)
    bad = np.zeros(n, np.uint16)
    args = (x, bad, np.zeros(n, np.uint16), np.zeros(n, BF16), np.zeros(n, np.uint16), np.zeros(n, np.float32),
            np.int32(n))
    with pytest.raises(TypeError, match=r"argument 1 'h' \(__half\*\) must be a numpy array of dtype float16, "
                                        r"got ndarray\(dtype=uint16"):
        mod.get_function("to_half")(1, 32, args)
    args = (x, np.zeros(n, F16), np.zeros(n, np.uint16), np.zeros(n, F16), np.zeros(n, np.uint16),
            np.zeros(n, np.float32), np.int32(n))
    with pytest.raises(TypeError, match=r"argument 3 'b' \(__nv_bfloat16\*\) must be a numpy array of dtype bfloat16"):
        mod.get_function("to_half")(1, 32, args)
    with pytest.raises(TypeError, match=r"argument 0 's' \(__half\) must be a numpy float16 scalar, got float 1.5.*"
                                        r"np.float16\(1.5\)"):
        mod.get_function("half_scalars")(1, 32, (1.5, ml_dtypes.bfloat16(1), np.zeros(1, F16), np.zeros(1, BF16),
                                                 np.zeros(2, np.float32), np.int32(1)))
    with pytest.raises(TypeError, match=r"argument 1 't' \(__nv_bfloat16\) must be a numpy bfloat16 scalar, got numpy "
                                        r"float16"):
        mod.get_function("half_scalars")(1, 32, (np.float16(1), np.float16(1), np.zeros(1, F16), np.zeros(1, BF16),
                                                 np.zeros(2, np.float32), np.int32(1)))


# ---------------------------------------------------------------------------------------------
# WMMA

def check_gemm(got, a, b, c):
    """Exactly the float32 k-order computation; and within the sequential-summation bound of the
    float64 result: |err| <= gamma_K * (|c| + sum_k |a_ik||b_kj|), gamma_K = K u / (1 - K u), u = 2^-24
    (K products and one accumulator; every product is exact, each of the K additions rounds once)."""
    np.testing.assert_array_equal(got, gemm_f32_in_k_order(a, b, c))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = c.astype(np.float64) + a64 @ b64
    K = a.shape[1]
    u = 2.0**-24
    bound = K * u / (1 - K * u) * (np.abs(c) + np.abs(a64) @ np.abs(b64))
    assert (np.abs(got - exact) <= bound).all()


def _launch_gemm(mod, name, M, N, *args):
    warps = (M // 16) * (N // 16)
    mod.get_function(name)(((warps + 3) // 4,), (128,), args)


SHAPES = [(16, 16, 16), (32, 48, 64), (64, 32, 32), (48, 16, 128)]


@pytest.mark.parametrize("M,N,K", SHAPES)
def test_wmma_gemm_half(mod, M, N, K):
    rng = np.random.default_rng(M * N + K)
    a = rng.normal(size=(M, K)).astype(F16)
    b = rng.normal(size=(K, N)).astype(F16)
    c = np.zeros((M, N), np.float32)
    _launch_gemm(mod, "gemm_half", M, N, a, np.ascontiguousarray(b.T), c, np.int32(M), np.int32(N), np.int32(K))
    check_gemm(c, a, b, np.zeros((M, N), np.float32))


@pytest.mark.parametrize("M,N,K", SHAPES)
def test_wmma_gemm_bf16_accumulates_into_c(mod, M, N, K):
    rng = np.random.default_rng(M + N * K)
    a = rng.normal(size=(M, K)).astype(BF16)
    b = rng.normal(size=(K, N)).astype(BF16)
    c0 = rng.normal(size=(M, N)).astype(np.float32)
    c = c0.copy()
    _launch_gemm(mod, "gemm_bf16", M, N, a, b, c, np.int32(M), np.int32(N), np.int32(K))
    check_gemm(c, a, b, c0)


@pytest.mark.parametrize("M,N,K", [(16, 16, 8), (32, 16, 24), (48, 32, 64)])
def test_wmma_gemm_tf32_column_major(mod, M, N, K):
    rng = np.random.default_rng(K)
    a = rng.normal(size=(M, K)).astype(np.float32)
    b = rng.normal(size=(K, N)).astype(np.float32)
    c0 = rng.normal(size=(M, N)).astype(np.float32)
    c_cm = np.ascontiguousarray(c0.T)  # column-major C
    _launch_gemm(mod, "gemm_tf32", M, N, np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), c_cm, np.int32(M),
                 np.int32(N), np.int32(K))
    check_gemm(c_cm.T, tf32_ref(a), tf32_ref(b), c0)


def test_fragment_sizes_and_elementwise_access(mod):
    c = np.arange(256, dtype=np.float32).reshape(16, 16)
    d = np.zeros((16, 16), np.float32)
    sizes = np.zeros(4, np.int32)
    mod.get_function("frag_elementwise")(1, 32, (c, d, sizes))
    np.testing.assert_array_equal(sizes, [8, 8, 4, 8])  # rows * cols / 32 per lane
    np.testing.assert_array_equal(d, (c * 2 + 1).T)     # stored column-major


def test_wmma_from_part_of_a_warp_is_reported(mod):
    a = np.ones(256, F16)
    with pytest.raises(EmuLaunchError, match=r"deadlock in block \(0,0,0\) of 32 threads: threads 0-15 wait in "
                                             r"wmma::load_matrix_sync with mask 0xffffffff \(half_kernels\.cu:\d+\) "
                                             r"for lanes that never arrive; threads 16-31 have exited"):
        mod.get_function("wmma_partial_warp")(1, 32, (a, np.zeros(32, np.float32)))


def test_wmma_divergence_is_reported(mod):
    a = np.ones(256, F16)
    with pytest.raises(EmuLaunchError, match=r"warp divergence: lane \d+ is at wmma::(load_matrix|mma)_sync .* while "
                                             r"lane \d+ is at wmma::(load_matrix|mma)_sync"):
        mod.get_function("wmma_divergent")(1, 32, (a, np.zeros(256, np.float32)))


def test_wmma_nonuniform_arguments_are_reported(mod):
    a = np.ones(512, F16)
    with pytest.raises(EmuLaunchError, match=r"wmma::load_matrix_sync: all lanes of a warp must pass the same pointer, "
                                             r"ldm and layout.*half_kernels\.cu:\d+"):
        mod.get_function("wmma_nonuniform")(1, 32, (a, np.zeros(32, np.float32)))
    # the module still works afterwards
    test_fragment_sizes_and_elementwise_access(mod)


def test_wmma_incomplete_warp_is_reported(mod):
    # 48 threads: the second warp has only 16 lanes, so a warp-collective call cannot complete
    with pytest.raises(EmuLaunchError, match=r"wmma::load_matrix_sync: mask 0xffffffff names lane 16 of warp 1, "
                                             r"which does not exist \(block has 48 threads\)"):
        mod.get_function("frag_elementwise")(1, 48, (np.zeros(256, np.float32), np.zeros(256, np.float32),
                                                     np.zeros(4, np.int32)))


def test_wmma_under_the_thread_core():
    """The std::thread core (the one ThreadSanitizer runs) has the same warp-collective WMMA."""
    m = RawModule(KERNELS.read_text(), options=("--emu-core=threads",), filename=KERNELS.name)
    rng = np.random.default_rng(5)
    M = N = K = 32
    a = rng.normal(size=(M, K)).astype(F16)
    b = rng.normal(size=(K, N)).astype(F16)
    c = np.zeros((M, N), np.float32)
    m.get_function("gemm_half")((1,), (128,), (a, np.ascontiguousarray(b.T), c, np.int32(M), np.int32(N), np.int32(K)))
    check_gemm(c, a, b, np.zeros((M, N), np.float32))


# ---------------------------------------------------------------------------------------------
# the same file is real CUDA

@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_half_kernels_compile_with_nvcc(arch, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    proc = subprocess.run([nvcc, f"-arch={arch}", "-c", "-o", str(tmp_path / "k.o"), str(KERNELS)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"nvcc rejected {KERNELS.name} for {arch}:\n{proc.stderr}"
