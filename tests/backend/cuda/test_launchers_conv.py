"""Implicit-GEMM convolution kernels (kernels/conv.cu, gpunn/backend/cuda/conv_launch.py) against the
NumPy backend's generic ops (ConvOps.conv2d_forward / conv2d_backward: im2col + matmul).

Tolerances. Each result is compared with the generic op evaluated in float64 on the same
(float32-representable) inputs, which is exact enough to stand for the true value.
- float64: 1e-12 relative to the largest expected magnitude (tests.kernel_support.assert_close).
- float32: elementwise |got - exact| <= 2 * R * u * (|A| |B|) + tiny, with u = 2^-24 the unit
  roundoff, R the reduction length of that product (C*KH*KW (+1 for the bias) for y, F*KH*KW for
  dx, N*OH*OW for dW and db) and |A| |B| the same product on absolute values: the classic bound
  for a sum of R products in any order, so it holds for every tile, split and summation order.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gpunn
from gpunn.backend.cuda import conv_launch
from gpunn.backend.cuda.kernel_ops import KERNEL_OPS
from gpunn.backend.ops.conv import ConvOps
from gpunn.backend.ops.geometry import conv_output_size
from tests.kernel_support import KERNEL_SETTINGS, assert_close, get_kernel_backend, reference, to_device, to_host

CONV_OPS = {"conv2d_forward", "conv2d_backward"}
U32 = 2.0 ** -24

# (N, C, H, W, F, KH, KW, stride, padding, dilation): tails in every tile dimension (F = 5, 17, 33,
# 70 against BM = 16/32/64; N*OH*OW and N*H*W never a multiple of BN; K = 9, 25, 27, 75, 98 against
# BK = 8/16), N = 1, C = 1 and 3, 1x1 / 5x5 / 7x7 kernels, stride 2, dilation 2, padding > 1.
CASES = [
    pytest.param((2, 3, 7, 9, 5, 3, 3, (1, 1), (1, 1), (1, 1)), id="c3-3x3-pad1"),
    pytest.param((1, 1, 7, 9, 6, 5, 5, (1, 1), (2, 2), (1, 1)), id="n1-c1-5x5-pad2"),
    pytest.param((2, 3, 9, 7, 17, 5, 5, (2, 1), (3, 2), (1, 1)), id="c3-5x5-stride2-pad3"),
    pytest.param((1, 2, 9, 9, 4, 7, 7, (1, 1), (3, 3), (1, 1)), id="7x7-pad3"),
    pytest.param((2, 4, 7, 9, 33, 3, 3, (2, 2), (2, 1), (2, 2)), id="dil2-stride2-f33"),
    pytest.param((2, 6, 5, 7, 70, 1, 1, (1, 1), (0, 0), (1, 1)), id="1x1-f70"),
    pytest.param((3, 5, 7, 6, 9, 1, 1, (2, 2), (1, 0), (1, 1)), id="1x1-stride2-pad"),
    pytest.param((1, 3, 8, 8, 16, 3, 3, (1, 2), (0, 4), (2, 1)), id="pad4-dil-rows"),
]


def _gen(case: tuple, dtype: type, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, c, h, w, f, kh, kw = case[:7]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return x, wt, b


def _geo(case: tuple) -> tuple:
    return case[7], case[8], case[9]


def _out_hw(case: tuple) -> tuple[int, int]:
    _, _, h, w, _, kh, kw, s, p, d = case
    return conv_output_size(h, kh, s[0], p[0], d[0]), conv_output_size(w, kw, s[1], p[1], d[1])


def _generic(fn: str, *args, **kw):
    """The generic (im2col + matmul) op on the NumPy backend, in whatever dtype the arrays have."""
    return getattr(ConvOps, fn)(reference(), *args, **kw)


def _check(got: np.ndarray, exact: np.ndarray, bound: np.ndarray, reduction: int, name: str) -> None:
    """float64 to 1e-12 relative; float32 to the roundoff bound of a `reduction`-long sum (module docstring)."""
    if got.dtype == np.float64:
        assert_close(got, exact, name)
        return
    assert got.dtype == np.float32 and got.shape == exact.shape, (name, got.dtype, got.shape, exact.shape)
    tol = 2.0 * reduction * U32 * bound + 1e-30
    err = np.abs(got.astype(np.float64) - exact)
    worst = int(np.argmax(err - tol))
    assert np.all(err <= tol), (f"{name}: error {err.reshape(-1)[worst]:.3e} over the bound "
                                f"{tol.reshape(-1)[worst]:.3e} at flat index {worst}")


def _relu_y(shape: tuple, dtype: type) -> np.ndarray:
    """A stand-in forward output for the mask: positives, negatives and exact zeros."""
    r = np.random.default_rng(7).standard_normal(shape).astype(dtype)
    r[np.abs(r) < 0.3] = 0
    return r


@pytest.fixture(scope="module", params=[pytest.param("emulated", id="emulated"),
                                        pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)])
def be(request):
    """Kernels on: the emulator here, CuPy where a GPU answers (skipped otherwise)."""
    return get_kernel_backend(request.param, True)


# -- forward --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias,relu", [(True, False), (False, False), (True, True), (False, True)],
                         ids=["bias", "nobias", "bias-relu", "relu"])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_generic(be, case, bias, relu, dtype):
    x, wt, b = _gen(case, dtype)
    b = b if bias else None
    geo = _geo(case)
    y, saved = be.conv2d_forward(*to_device(be, x, wt, b), *geo, relu=relu)
    assert saved.shape == x.shape  # the kernel path saves the input itself, not an im2col matrix
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    exact, _ = _generic("conv2d_forward", x64, w64, b64, *geo, relu=relu)
    bound, _ = _generic("conv2d_forward", np.abs(x64), np.abs(w64), None if b64 is None else np.abs(b64), *geo)
    _check(to_host(be, y), exact, bound, x.shape[1] * wt.shape[2] * wt.shape[3] + 1, "y")


@pytest.mark.parametrize("tile", ["L", "S", "T"])
@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[5]])
def test_every_tile_gives_the_same_forward(be, case, tile):
    x, wt, b = _gen(case, np.float64, seed=3)
    y = conv_launch.conv2d_forward(be.kernels, be.xp, *to_device(be, x, wt, b), *_geo(case), relu=True, tile=tile)
    exact, _ = _generic("conv2d_forward", x, wt, b, *_geo(case), relu=True)
    assert_close(to_host(be, y), exact, f"y tile {tile}")


# -- backward -------------------------------------------------------------------------------------
def _backward_refs(case: tuple, x: np.ndarray, wt: np.ndarray, dy: np.ndarray, ry: np.ndarray | None):
    """(exact, bound) pairs for dx, dW, db from the generic op in float64."""
    geo = _geo(case)
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    if ry is not None:
        dy64 = dy64 * (ry > 0)
    _, cols = _generic("conv2d_forward", x64, w64, None, *geo)
    exact = _generic("conv2d_backward", dy64, x.shape, w64, cols, *geo)
    _, acols = _generic("conv2d_forward", np.abs(x64), w64, None, *geo)
    bound = _generic("conv2d_backward", np.abs(dy64), x.shape, np.abs(w64), acols, *geo)
    return exact, bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "relu_y"])
@pytest.mark.parametrize("case", CASES)
def test_backward_matches_generic(be, case, masked, dtype):
    x, wt, _ = _gen(case, dtype, seed=1)
    n, f = x.shape[0], wt.shape[0]
    oh, ow = _out_hw(case)
    dy = np.random.default_rng(2).standard_normal((n, f, oh, ow)).astype(dtype)
    ry = _relu_y(dy.shape, dtype) if masked else None
    xd, wd, dyd, ryd = to_device(be, x, wt, dy, ry)
    _, saved = be.conv2d_forward(xd, wd, None, *_geo(case))
    got = to_host(be, be.conv2d_backward(dyd, x.shape, wd, saved, *_geo(case), relu_y=ryd))
    exact, bound = _backward_refs(case, x, wt, dy, ry)
    reductions = (f * wt.shape[2] * wt.shape[3], n * oh * ow, n * oh * ow)
    for name, g, e, bd, r in zip(("dx", "dweight", "dbias"), got, exact, bound, reductions):
        _check(g, np.ascontiguousarray(e), np.ascontiguousarray(bd), r, name)


@st.composite
def random_case(draw):
    n, c, f = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 5, 17, 33]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))  # up to larger than the kernel
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    case = (n, c, h, w, f, kh, kw, stride, padding, dilation)
    oh, ow = _out_hw(case)
    assume(oh >= 1 and ow >= 1)
    return case, draw(st.booleans()), draw(st.sampled_from([None, 1, 3]))


@settings(KERNEL_SETTINGS, max_examples=60)  # the emulator runs these small launches in milliseconds
@given(drawn=random_case())
def test_random_geometry_forward_and_backward_float64(be, drawn):
    """Drawn geometries (odd sizes, strides past the kernel, heavy padding) in float64, with a bias,
    the ReLU on or off, split-K auto / off / 3."""
    case, relu, split_k = drawn
    x, wt, b = _gen(case, np.float64, seed=13)
    geo = _geo(case)
    exact_y, _ = _generic("conv2d_forward", x, wt, b, *geo, relu=relu)
    xd, wd, bd = to_device(be, x, wt, b)
    y = conv_launch.conv2d_forward(be.kernels, be.xp, xd, wd, bd, *geo, relu=relu)
    assert_close(to_host(be, y), exact_y, "y")
    dy = np.random.default_rng(14).standard_normal(exact_y.shape)
    ry = exact_y if relu else None
    exact, _ = _backward_refs(case, x, wt, dy, ry)
    dyd, ryd = to_device(be, dy, ry)
    got = to_host(be, conv_launch.conv2d_backward(be.kernels, be.xp, dyd, xd, wd, *geo, relu_y=ryd, split_k=split_k))
    for name, g, e in zip(("dx", "dweight", "dbias"), got, exact):
        assert_close(g, np.ascontiguousarray(e), name)


@pytest.mark.parametrize("split_k", [None, 1, 2, 5, 1000])
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[6]])
def test_weight_gradient_split_k_forced_on_and_off(be, case, split_k):
    """Any split count (1 = off; 1000 is clamped to one chunk of BK per split) gives dW and db to
    the same tolerance, and twice the same bits (no atomics)."""
    x, wt, _ = _gen(case, np.float64, seed=4)
    oh, ow = _out_hw(case)
    dy = np.random.default_rng(5).standard_normal((x.shape[0], wt.shape[0], oh, ow))
    ry = _relu_y(dy.shape, np.float64)
    args = (be.kernels, be.xp, *to_device(be, dy, x, wt), *_geo(case))
    (ryd,) = to_device(be, ry)
    first = to_host(be, conv_launch.conv2d_backward(*args, need_dx=False, relu_y=ryd, split_k=split_k))
    again = to_host(be, conv_launch.conv2d_backward(*args, need_dx=False, relu_y=ryd, split_k=split_k))
    assert first[0] is None
    exact, _ = _backward_refs(case, x, wt, dy, ry)
    for name, g, g2, e in zip(("dweight", "dbias"), first[1:], again[1:], exact[1:]):
        assert_close(g, np.ascontiguousarray(e), f"{name} split_k={split_k}")
        np.testing.assert_array_equal(g, g2)


@pytest.mark.parametrize("tile", ["L", "S", "T"])
def test_every_tile_gives_the_same_backward(be, tile):
    case = CASES[4].values[0]
    x, wt, _ = _gen(case, np.float64, seed=6)
    oh, ow = _out_hw(case)
    dy = np.random.default_rng(8).standard_normal((x.shape[0], wt.shape[0], oh, ow))
    got = to_host(be, conv_launch.conv2d_backward(be.kernels, be.xp, *to_device(be, dy, x, wt), *_geo(case), split_k=3,
                                                  tile=tile))
    exact, _ = _backward_refs(case, x, wt, dy, None)
    for name, g, e in zip(("dx", "dweight", "dbias"), got, exact):
        assert_close(g, np.ascontiguousarray(e), f"{name} tile {tile}")


def test_need_dx_false_skips_the_data_gradient(be):
    case = CASES[0].values[0]
    x, wt, _ = _gen(case, np.float32)
    oh, ow = _out_hw(case)
    dy = np.ones((x.shape[0], wt.shape[0], oh, ow), np.float32)
    xd, wd, dyd = to_device(be, x, wt, dy)
    _, saved = be.conv2d_forward(xd, wd, None, *_geo(case))
    dx, dw, db = be.conv2d_backward(dyd, x.shape, wd, saved, *_geo(case), need_dx=False)
    assert dx is None and dw.shape == wt.shape and db.shape == (wt.shape[0],)


def test_forward_and_backward_paths_mix(be):
    """A kernel-path forward with the generic backward, and the reverse, still agree (the op
    switch may change between the passes)."""
    case = CASES[2].values[0]
    x, wt, b = _gen(case, np.float64, seed=9)
    geo = _geo(case)
    oh, ow = _out_hw(case)
    dy = np.random.default_rng(10).standard_normal((x.shape[0], wt.shape[0], oh, ow))
    exact, _ = _backward_refs(case, x, wt, dy, None)
    generic = get_kernel_backend(be.name, False)  # the same device, every kernel off
    xd, wd, bd, dyd = to_device(be, x, wt, b, dy)
    _, saved_kernel = be.conv2d_forward(xd, wd, bd, *geo)
    _, saved_generic = generic.conv2d_forward(xd, wd, bd, *geo)
    assert saved_kernel.ndim == 4 and saved_generic.ndim == 3  # the input itself, and the im2col matrix
    for backend, saved in ((generic, saved_kernel), (be, saved_generic)):
        got = to_host(be, backend.conv2d_backward(dyd, x.shape, wd, saved, *geo))
        for name, g, e in zip(("dx", "dweight", "dbias"), got, exact):
            assert_close(g, np.ascontiguousarray(e), name)


def test_split_k_heuristic():
    """Few output tiles and a long reduction split; many tiles or a short reduction do not."""
    # a first layer's dW: 32 filters x 27 columns = 1 tile, reduction 32*32*32 = 32768
    assert conv_launch.pick_splits(1, 32 * 32 * 32, 16) == 32768 // conv_launch.SPLITK_MIN_CHUNK
    assert conv_launch.pick_splits(8, 10 ** 6, 16) == -(-conv_launch.SPLITK_TARGET_BLOCKS // 8)
    assert conv_launch.pick_splits(1, 10 ** 7, 16) == conv_launch.SPLITK_MAX
    assert conv_launch.pick_splits(1, 300, 16) == 1
    assert conv_launch.pick_splits(conv_launch.SPLITK_TARGET_BLOCKS, 10 ** 7, 16) == 1


def test_tile_heuristic():
    # LeNet conv1 forward: 6 filters, K = 25 -> the 16-row tile; CIFAR first layer: 32 filters -> S
    assert conv_launch.pick_tile(6, 32 * 28 * 28, 25) == "T"
    assert conv_launch.pick_tile(32, 32 * 32 * 32, 27) == "S"
    assert conv_launch.pick_tile(64, 32 * 56 * 56, 576) == "L"
    assert conv_launch.pick_tile(3, 32 * 32 * 32, 288) == "T"  # dx of a 3-channel input


# -- bad inputs -----------------------------------------------------------------------------------
def test_launchers_reject_bad_inputs(be):
    kc, xp = be.kernels, be.xp

    def z(shape, dtype=np.float32):
        return be.asarray(np.zeros(shape, dtype))
    x, wt, dy = z((1, 2, 5, 5)), z((3, 2, 3, 3)), z((1, 3, 3, 3))
    geo = ((1, 1), (0, 0), (1, 1))
    fwd, bwd = conv_launch.conv2d_forward, conv_launch.conv2d_backward
    with pytest.raises(TypeError, match="'x'.*float32 or float64"):
        fwd(kc, xp, x.astype(np.int32), wt, None, *geo)
    with pytest.raises(TypeError, match="'x'.*ndarray"):
        fwd(kc, xp, [[1.0]], wt, None, *geo)
    with pytest.raises(ValueError, match="'x'.*4 dimensions"):
        fwd(kc, xp, x[0], wt, None, *geo)
    with pytest.raises(ValueError, match="'x'.*C-contiguous"):
        fwd(kc, xp, z((1, 2, 5, 10))[..., ::2], wt, None, *geo)
    with pytest.raises(TypeError, match="'weight'.*dtype float32"):
        fwd(kc, xp, x, wt.astype(np.float64), None, *geo)
    with pytest.raises(ValueError, match=r"'weight'.*\(F, 2, KH, KW\)"):
        fwd(kc, xp, x, z((3, 4, 3, 3)), None, *geo)
    with pytest.raises(ValueError, match=r"'bias'.*shape \(3,\)"):
        fwd(kc, xp, x, wt, z(4), *geo)
    with pytest.raises(TypeError, match="'bias'.*dtype float32"):
        fwd(kc, xp, x, wt, z(3, np.float64), *geo)
    with pytest.raises(TypeError, match="'relu'.*bool"):
        fwd(kc, xp, x, wt, None, *geo, relu=1)
    with pytest.raises(ValueError, match="'stride'"):
        fwd(kc, xp, x, wt, None, (0, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="'padding'"):
        fwd(kc, xp, x, wt, None, (1, 1), (-1, 0), (1, 1))
    with pytest.raises(ValueError, match="'dilation'"):
        fwd(kc, xp, x, wt, None, (1, 1), (0, 0), (0, 1))
    with pytest.raises(ValueError, match="empty output"):
        fwd(kc, xp, x, z((3, 2, 7, 7)), None, *geo)
    with pytest.raises(ValueError, match="'tile'"):
        fwd(kc, xp, x, wt, None, *geo, tile="XL")
    with pytest.raises(ValueError, match=r"'dy' must have shape \(1, 3, 3, 3\)"):
        bwd(kc, xp, z((1, 3, 4, 3)), x, wt, *geo)
    with pytest.raises(TypeError, match="'dy'.*dtype float32"):
        bwd(kc, xp, dy.astype(np.float64), x, wt, *geo)
    with pytest.raises(ValueError, match="'relu_y' must have shape"):
        bwd(kc, xp, dy, x, wt, *geo, relu_y=z((1, 3, 3, 2)))
    with pytest.raises(ValueError, match="'split_k'"):
        bwd(kc, xp, dy, x, wt, *geo, split_k=0)


def test_int32_range_is_checked_before_launch():
    """Sizes past the kernels' int32 indexing are refused with the product named (no allocation)."""
    with pytest.raises(ValueError, match=r"N\*OH\*OW = .* too large"):
        conv_launch._conv_plan("conv2d_forward", 70000, 1, 200, 200, 1, 1, 1, (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"F\*C\*KH\*KW = .* too large"):
        conv_launch._conv_plan("conv2d_forward", 1, 70000, 2, 2, 70000, 1, 1, (1, 1), (0, 0), (1, 1))


# -- through the layer ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d_layer_gradcheck_float64(activation):
    from gpunn.layers import Conv2D
    from gpunn.testing import gradcheck
    get_kernel_backend("emulated")
    x = np.random.default_rng(11).standard_normal((2, 2, 6, 5))
    with gpunn.use_backend("emulated") as be:
        assert CONV_OPS <= be.use_kernels
        gpunn.manual_seed(2)
        layer = Conv2D(3, 3, strides=(2, 1), padding=2, dilation=(1, 2), activation=activation)
        assert gradcheck(layer, x, training=True)
        assert "conv" in be.kernels.compiled_families()


def test_cnn_training_step_calls_no_blas_product_in_the_convolution(monkeypatch):
    """With every kernel on, a Conv2D + Dense training step makes no matmul / dot / tensordot /
    einsum call inside conv2d_forward / conv2d_backward; with the conv ops off (the im2col +
    matmul path) the same counter sees them, so it is not blind."""
    from gpunn import Sequential
    from gpunn.layers import Conv2D, Dense, Flatten
    from gpunn.losses import SoftmaxCrossEntropy
    get_kernel_backend("emulated")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 2, 7, 9)).astype(np.float32)
    labels = rng.integers(0, 4, 3)
    with gpunn.use_backend("emulated") as be:
        counts = {"in_conv": 0, "blas": 0}
        for fname in ("matmul", "dot", "tensordot", "einsum"):
            original = getattr(np, fname)

            def counting(*args, _original=original, **kwargs):
                if counts["in_conv"]:
                    counts["blas"] += 1
                return _original(*args, **kwargs)
            monkeypatch.setattr(np, fname, counting)
            monkeypatch.setattr(be.xp, fname, counting)  # the emulator's array module (gpunn.emu.capture)
        for op in ("conv2d_forward", "conv2d_backward"):
            bound = getattr(be, op)

            def wrapped(*args, _bound=bound, **kwargs):
                counts["in_conv"] += 1
                try:
                    return _bound(*args, **kwargs)
                finally:
                    counts["in_conv"] -= 1
            monkeypatch.setattr(be, op, wrapped, raising=False)

        def step() -> None:
            gpunn.manual_seed(3)
            model = Sequential([Conv2D(4, 3, padding=1, activation="relu"), Conv2D(3, 3, strides=2), Flatten(),
                                Dense(4)])
            loss = SoftmaxCrossEntropy()
            loss.forward(model.forward(x, training=True), labels)
            model.backward(loss.backward())

        assert CONV_OPS <= be.use_kernels
        step()
        assert counts["blas"] == 0, f"{counts['blas']} BLAS products inside the kernel-path convolution"
        monkeypatch.setattr(be, "use_kernels", KERNEL_OPS - CONV_OPS)
        step()
        assert counts["blas"] > 0, "the counter saw no product on the im2col + matmul path: it is blind"
