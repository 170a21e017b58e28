"""Tensor-core GEMM kernels (kernels/gemm_tc.cu) through gemm_tc_launch.gemm_tc, on the emulated backend.

Reference: the operands as float32 (for tf32 first rounded to TF32 with `tf32_ref`, cvt.rna),
C0 (or 0) plus the products accumulated in float32. Every product of two fp16 / bf16 / TF32 values
is exact in float32 (at most 11 + 11 significant bits), so two checks hold:
* Bound (any accumulation order, so also what a real GPU must meet): against the exact (float64)
  sum of the same products, |got - exact| <= gamma_K * (|C0| + |A| @ |B|), gamma_K = K u / (1 - K u),
  u = 2^-24: K roundings of a sequential float32 sum of K + 1 terms.
* Bit-exact (the emulator only): the kernel accumulates each output in ascending k order, one
  rounding per k (each fragment's accumulator starts from C0 or 0 and takes the K steps in order;
  the emulator's mma_sync is one fmaf per k, k ascending); the zero-filled tail adds +0, which
  leaves every value unchanged (bar -0 -> +0, equal under ==). So the result equals
  `gemm_f32_in_k_order` exactly. On a real GPU the tensor cores' internal order differs: only
  the bound applies there.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from gpunn.backend.cuda import gemm_tc_launch
from gpunn.backend.cuda.gemm_tc_launch import gemm_tc
from tests.kernel_support import Spy, get_kernel_backend
from tests.reference import gemm_f32_in_k_order, tf32_ref

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = {"fp16": np.dtype(np.float16), "bf16": BF16, "tf32": np.dtype(np.float32)}
SUFFIX = {"fp16": "f16", "bf16": "bf16", "tf32": "tf32"}
PRECISIONS = list(DTYPES)
FORMS = ["nn", "nt", "tn"]
# (M, N, K) from {1, 7, 16, 33, 65}: tails in every dimension of the 64 x 64 x 16 tile, one and
# two tiles of C, one to five K steps, vectors (M or N = 1).
SHAPES = [(1, 1, 1), (7, 16, 33), (16, 7, 65), (33, 65, 16), (65, 33, 7), (65, 65, 65)]


@pytest.fixture(scope="module")
def be() -> Any:
    return get_kernel_backend("emulated")





def effective(x: np.ndarray, precision: str) -> np.ndarray:
    """The float32 values the tensor cores multiply."""
    x32 = np.asarray(x).astype(np.float32)
    return tf32_ref(x32) if precision == "tf32" else x32


def check(got: np.ndarray, a: np.ndarray, b: np.ndarray, precision: str, c0: np.ndarray | None = None) -> None:
    m, n = a.shape[0], b.shape[1]
    c0 = np.zeros((m, n), np.float32) if c0 is None else c0
    assert got.dtype == np.float32 and got.shape == (m, n)
    ae, bexp = effective(a, precision), effective(b, precision)
    a64, b64 = ae.astype(np.float64), bexp.astype(np.float64)
    exact = c0.astype(np.float64) + a64 @ b64
    k = a.shape[1]
    u = 2.0**-24
    bound = k * u / (1 - k * u) * (np.abs(c0.astype(np.float64)) + np.abs(a64) @ np.abs(b64))
    err = np.abs(got.astype(np.float64) - exact)
    assert np.all(err <= bound), f"max error {err.max()} over the gamma_K bound (max {bound.max()})"
    np.testing.assert_array_equal(got, gemm_f32_in_k_order(ae, bexp, c0))


def operands(form: str, m: int, n: int, k: int, precision: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """a (M x K) and b (K x N) of the precision's dtype laid out for `form`: a "t" operand is the
    transpose view of a C-contiguous array."""
    rng = np.random.default_rng(seed)
    dt = DTYPES[precision]
    a = rng.standard_normal((k, m) if form[0] == "t" else (m, k)).astype(np.float32).astype(dt)
    b = rng.standard_normal((n, k) if form[1] == "t" else (k, n)).astype(np.float32).astype(dt)
    return (a.T if form[0] == "t" else a), (b.T if form[1] == "t" else b)


# -- results ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("form", FORMS)
def test_every_form_and_precision_matches_the_reference_with_tails(be: Any, form: str, precision: str) -> None:
    spy = Spy(be.kernels)
    for i, (m, n, k) in enumerate(SHAPES):
        a, b = operands(form, m, n, k, precision, seed=i)
        check(gemm_tc(spy, np, a, b, precision=precision), a, b, precision)
    # a transposed view with one row or column is also C-contiguous: that one runs as nn
    assert f"gemm_tc_{form}_{SUFFIX[precision]}" in spy.names
    assert set(spy.names) <= {f"gemm_tc_{f}_{SUFFIX[precision]}" for f in FORMS}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("form", FORMS)
def test_accumulate_adds_to_out_in_place(be: Any, form: str, precision: str) -> None:
    for i, (m, n, k) in enumerate([(33, 65, 16), (7, 1, 65), (65, 33, 7)]):
        a, b = operands(form, m, n, k, precision, seed=20 + i)
        c0 = np.random.default_rng(i).standard_normal((m, n)).astype(np.float32)
        out = c0.copy()
        assert gemm_tc(be.kernels, np, a, b, out=out, accumulate=True, precision=precision) is out
        check(out, a, b, precision, c0)
        out = c0.copy()  # out without accumulate: overwritten
        assert gemm_tc(be.kernels, np, a, b, out=out, precision=precision) is out
        check(out, a, b, precision)


def test_tf32_rounds_the_operands_to_nearest_ties_away(be: Any) -> None:
    one = np.float32(1.0)
    tie = np.float32(1 + 2**-11)  # halfway between 1 and 1 + 2^-10: rna rounds up (even would give 1)
    below = np.float32(1 + 2**-11 - 2**-23)  # just below the tie: rounds down to 1
    a = np.array([[tie], [below], [-tie]], np.float32)
    b = np.array([[one]], np.float32)
    got = gemm_tc(be.kernels, np, a, b, precision="tf32")
    np.testing.assert_array_equal(got[:, 0], np.array([1 + 2**-10, 1.0, -(1 + 2**-10)], np.float32))
    # random operands: the result is that of the rounded operands, not of the float32 ones
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((16, 33)).astype(np.float32), rng.standard_normal((33, 16)).astype(np.float32)
    got = gemm_tc(be.kernels, np, a, b, precision="tf32")
    np.testing.assert_array_equal(got, gemm_f32_in_k_order(tf32_ref(a), tf32_ref(b), np.zeros((16, 16), np.float32)))
    assert not np.array_equal(got, gemm_f32_in_k_order(a, b, np.zeros((16, 16), np.float32)))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_empty_dimensions(be: Any, precision: str) -> None:
    dt = DTYPES[precision]
    a, b = np.ones((3, 0), dt), np.ones((0, 5), dt)
    np.testing.assert_array_equal(gemm_tc(be.kernels, np, a, b, precision=precision), np.zeros((3, 5), np.float32))
    out = np.full((3, 5), 2.0, np.float32)
    gemm_tc(be.kernels, np, a, b, out=out, accumulate=True, precision=precision)
    np.testing.assert_array_equal(out, np.full((3, 5), 2.0, np.float32))  # K = 0, accumulating: unchanged
    got = gemm_tc(be.kernels, np, np.ones((0, 4), dt), np.ones((4, 5), dt), precision=precision)
    assert got.shape == (0, 5) and got.dtype == np.float32


def test_both_operands_transposed_and_strided_views(be: Any) -> None:
    spy = Spy(be.kernels)
    rng = np.random.default_rng(5)
    a0 = rng.standard_normal((9, 13)).astype(np.float16)
    b0 = rng.standard_normal((11, 9)).astype(np.float16)
    check(gemm_tc(spy, np, a0.T, b0.T, precision="fp16"), a0.T, b0.T, "fp16")  # tt -> b copied, tn
    assert spy.names == ["gemm_tc_tn_f16"]
    big = rng.standard_normal((40, 60)).astype(BF16)
    a, b = big[::2, 1:8], big[3:10, ::3]  # neither C- nor F-contiguous: copied, nn
    check(gemm_tc(spy, np, a, b, precision="bf16"), a, b, "bf16")
    assert spy.names[-1] == "gemm_tc_nn_bf16"


def test_large_values_accumulate_in_float32(be: Any) -> None:
    # fp16 operands whose products overflow fp16 (65504) but not float32: the accumulator is float32
    a = np.full((16, 32), 300.0, np.float16)
    b = np.full((32, 16), 300.0, np.float16)
    np.testing.assert_array_equal(gemm_tc(be.kernels, np, a, b, precision="fp16"),
                                  np.full((16, 16), 32 * 90000.0, np.float32))


def test_default_precision_is_bf16(be: Any) -> None:
    spy = Spy(be.kernels)
    a, b = operands("nn", 7, 7, 7, "bf16")
    check(gemm_tc(spy, np, a, b), a, b, "bf16")
    assert spy.names == ["gemm_tc_nn_bf16"]
    assert gemm_tc_launch.operand_dtype("bf16") == BF16


# -- bad arguments -----------------------------------------------------------------------------------
F16, F32 = np.float16, np.float32


@pytest.mark.parametrize("call, arg, exc", [
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="fp32"), "'precision'", ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision=None), "'precision'", ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="FP16"), "'precision'",
     ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F32), np.ones((3, 2), F16), precision="fp16"), "'a'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F32), precision="fp16"), "'b'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="bf16"), "'a'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), BF16), np.ones((3, 2), F16), precision="bf16"), "'b'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3)), np.ones((3, 2)), precision="tf32"), "'a'", TypeError),  # float64
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F32), np.ones((3, 2), BF16), precision="tf32"), "'b'", TypeError),
    (lambda k: gemm_tc(k, np, [[1.0]], np.ones((1, 1), F32), precision="tf32"), "'a'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones((1, 1), F32), 1.0, precision="tf32"), "'b'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones(3, F16), np.ones((3, 2), F16), precision="fp16"), "'a'", ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2, 1), F16), precision="fp16"), "'b'", ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((4, 2), F16), precision="fp16"), "'b'", ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="fp16", accumulate=True), "'out'",
     ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="fp16", accumulate=1),
     "'accumulate'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="fp16",
                       out=np.ones((2, 3), F32)), "'out'", ValueError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="fp16",
                       out=np.ones((2, 2), F16)), "'out'", TypeError),  # out is float32 whatever the operands
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F32), np.ones((3, 2), F32), precision="tf32",
                       out=np.ones((2, 2))), "'out'", TypeError),
    (lambda k: gemm_tc(k, np, np.ones((2, 3), F16), np.ones((3, 2), F16), precision="fp16",
                       out=[[0.0, 0.0], [0.0, 0.0]]), "'out'", TypeError),
])
def test_bad_arguments_name_the_argument(be: Any, call: Any, arg: str, exc: Any) -> None:
    with pytest.raises(exc, match=arg):
        call(be.kernels)


def test_out_must_be_writable_contiguous_and_separate(be: Any) -> None:
    a, b = np.ones((2, 3), F16), np.ones((3, 2), F16)
    ro = np.zeros((2, 2), F32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'out'.*writable"):
        gemm_tc(be.kernels, np, a, b, out=ro, precision="fp16")
    with pytest.raises(ValueError, match="'out'.*C-contiguous"):
        gemm_tc(be.kernels, np, a, b, out=np.zeros((2, 4), F32)[:, ::2], precision="fp16")
    with pytest.raises(ValueError, match="'out'.*C-contiguous"):
        gemm_tc(be.kernels, np, a, b, out=np.zeros((2, 2), F32).T.copy(order="F"), precision="fp16")
    sq = np.ones((3, 3), F32)  # tf32 operands are float32: out may alias one
    with pytest.raises(ValueError, match="'out'.*overlap"):
        gemm_tc(be.kernels, np, sq, np.ones((3, 3), F32), out=sq, precision="tf32")
    with pytest.raises(ValueError, match="'out'.*overlap"):
        gemm_tc(be.kernels, np, np.ones((3, 3), F32), sq.T, out=sq, precision="tf32")


def test_dimensions_must_fit_the_kernels_int_indices(be: Any) -> None:
    # zero-size operands: no memory, but M is over int32 (or within a tile of it)
    with pytest.raises(ValueError, match="'M'"):
        gemm_tc(be.kernels, np, np.empty((2**31, 0), F16), np.empty((0, 2), F16), precision="fp16")
    with pytest.raises(ValueError, match="int indices"):
        gemm_tc(be.kernels, np, np.empty((2**31 - 10, 0), F16), np.empty((0, 2), F16), precision="fp16")
    with pytest.raises(ValueError, match="'K'"):
        gemm_tc(be.kernels, np, np.empty((0, 2**31), F32), np.empty((2**31, 0), F32), precision="tf32")


def test_grid_limit_is_checked(be: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(gemm_tc_launch, "MAX_GRID_Y", 1)
    with pytest.raises(ValueError, match="grid"):
        gemm_tc(be.kernels, np, np.ones((65, 1), F16), np.ones((1, 1), F16), precision="fp16")


# -- barriers ---------------------------------------------------------------------------------------
TSAN_SCRIPT = textwrap.dedent("""\
    import sys
    import ml_dtypes
    import numpy as np
    from pathlib import Path
    from gpunn.emu import RawModule
    mod = RawModule(Path(sys.argv[1]).read_text(), options=("--emu-sanitize=thread",), filename="gemm_tc.cu")
    rng = np.random.default_rng(0)
    M, N, K = 33, 70, 40  # two column tiles, three K steps, tails everywhere
    for sfx, dt in (("f16", np.float16), ("bf16", ml_dtypes.bfloat16), ("tf32", np.float32)):
        for form in ("nn", "nt", "tn"):
            a = rng.standard_normal((K, M) if form[0] == "t" else (M, K)).astype(np.float32).astype(dt)
            b = rng.standard_normal((N, K) if form[1] == "t" else (K, N)).astype(np.float32).astype(dt)
            for acc in (0, 1):
                c = np.ones((M, N), np.float32)
                mod.get_function(f"gemm_tc_{form}_{sfx}")((2, 1), (128,), (a, b, c, np.int32(M), np.int32(N),
                                                                        np.int32(K), np.int32(acc)))
                A = (a.T if form[0] == "t" else a).astype(np.float64)
                B = (b.T if form[1] == "t" else b).astype(np.float64)
                assert np.abs(c - (A @ B + acc)).max() < 5e-2, (form, sfx, acc)
    print("GEMM-TC-DONE", file=sys.stderr, flush=True)
    """)


@pytest.mark.slow
def test_every_entry_point_is_race_free_under_tsan() -> None:
    """The thread core under ThreadSanitizer: a missing or misplaced __syncthreads around the shared
    operand slices or the C staging buffer is reported as a data race."""
    from gpunn.emu import EmuCompileError
    from gpunn.emu.build import sanitizer_runtime
    try:
        runtime = sanitizer_runtime("thread")
    except EmuCompileError as exc:
        pytest.skip(str(exc))
    source = Path(__file__).resolve().parents[3] / "kernels" / "gemm_tc.cu"
    env = dict(os.environ, LD_PRELOAD=runtime, TSAN_OPTIONS="halt_on_error=0 exitcode=66")
    proc = subprocess.run([sys.executable, "-c", TSAN_SCRIPT, str(source)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert "GEMM-TC-DONE" in proc.stderr and proc.returncode == 0, proc.stderr[-4000:]
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr[-4000:]
