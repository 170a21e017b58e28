"""No BLAS (cuBLAS on CuPy) in a training step when the kernels are on: Dense and Conv2D run on
kernels/gemm.cu and kernels/conv.cu, so that a whole step can be captured in one CUDA graph (CuPy
refuses every cuBLAS call during stream capture).

Three checks, each able to fail:
- the emulated backend's array module is replaced by one whose BLAS entry points (matmul, dot,
  tensordot, einsum, ...) raise; a training step of a network with every layer kind the step
  uses must then run, and must fail once the GEMM or conv kernels are switched off;
- the source of the step's layers, losses and optimizers uses no `@` operator and no `.dot(`,
  which an array-module proxy cannot see (they are methods of the arrays);
- on a GPU, the step runs inside CUDA stream capture, which CuPy refuses for any cuBLAS call.
"""
from __future__ import annotations

import io
import tokenize
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gpunn
from gpunn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from gpunn.losses import SoftmaxCrossEntropy
from gpunn.optim import Adam

BLAS = ("matmul", "dot", "tensordot", "einsum", "inner", "vdot", "outer", "kron", "linalg")
PACKAGE = Path(gpunn.__file__).resolve().parent


class _NoBlas:
    """numpy, except that its BLAS entry points raise, naming themselves."""

    def __getattr__(self, name: str) -> Any:
        if name in BLAS:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise AssertionError(f"xp.{name} called in a training step with the kernels on")
            return refuse
        return getattr(np, name)


def _network() -> gpunn.Sequential:
    return gpunn.Sequential([Conv2D(4, 3, padding=1, activation="relu"), BatchNorm(), ReLU(), MaxPool2D(2),
                             Conv2D(6, 3), Flatten(), Dense(8, activation="relu"), Dense(3)])


def _steps(backend: Any, n: int = 2) -> None:
    with gpunn.use_backend(backend):
        gpunn.manual_seed(0)
        model = _network()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 2, 8, 8)).astype(np.float32)
        y = rng.integers(0, 3, 4)
        model.compile(loss=SoftmaxCrossEntropy(), optimizer=Adam(clipnorm=1.0))
        for _ in range(n):
            model.train_on_batch(x, y)


@pytest.fixture
def guarded(emulated: Any) -> Any:
    """The emulated backend with BLAS refused (restored afterwards)."""
    from gpunn.backend.cuda.emulated import EmulatedBackend

    be = EmulatedBackend()
    be.xp = _NoBlas()
    return be


def test_a_training_step_makes_no_blas_call(guarded: Any) -> None:
    _steps(guarded)


@pytest.mark.parametrize("off", ["matmul", "conv2d_forward"])
def test_the_guard_catches_a_blas_path(guarded: Any, off: str) -> None:
    guarded.use_kernels = guarded.use_kernels - {off}
    with pytest.raises(AssertionError, match="called in a training step"):
        _steps(guarded, 1)


def _matrix_products(path: Path) -> list[str]:
    """`a @ b` operators and `.dot(` calls in a module's code (decorators and text excluded)."""
    found = []
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL)]
    for prev, tok, nxt in zip(tokens, tokens[1:], tokens[2:]):
        if tok.type == tokenize.OP and tok.string in ("@", "@=") and prev.type not in (
                tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            found.append(f"{path.name}:{tok.start[0]} '@'")
        if tok.string == "dot" and prev.string == "." and nxt.string == "(":
            found.append(f"{path.name}:{tok.start[0]} '.dot('")
    return found


# what a training step runs: layers, losses, optimizers, the generic ops a kernel backend inherits
STEP_CODE = ["layers", "optim", "losses.py", "regularizers.py", "constraints.py", "train/model.py",
             "train/outputs.py", "backend/ops"]


def test_the_step_code_multiplies_only_through_backend_ops() -> None:
    files = [p for entry in STEP_CODE for p in ((PACKAGE / entry).rglob("*.py") if (PACKAGE / entry).is_dir()
                                                  else [PACKAGE / entry])]
    assert len(files) > 20
    found = [hit for f in files for hit in _matrix_products(f)]
    assert found == [], f"matrix products outside backend.matmul / the conv ops: {found}"


def test_the_scan_sees_matrix_products(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("@decorator\ndef f(a, b):\n    c = a @ b  # a comment @ here\n    return c.dot(a)\n")
    assert _matrix_products(sample) == ["sample.py:3 '@'", "sample.py:4 '.dot('"]


@pytest.mark.gpu
def test_a_cupy_step_runs_under_stream_capture() -> None:
    cupy = pytest.importorskip("cupy")
    from gpunn.backend import cuda_status

    if not cuda_status().usable:
        pytest.skip("no usable CUDA device")
    with gpunn.use_backend("cupy"):
        gpunn.manual_seed(0)
        model = _network()
        x = cupy.random.standard_normal((4, 2, 8, 8), dtype=cupy.float32)
        model.forward(x, training=False)
        opt = Adam(model)
        dy = cupy.full((4, 3), 0.25, dtype=cupy.float32)

        def step() -> None:
            model.zero_grad()
            model.forward(x, training=True)
            model.backward(dy)
            opt.step()
        step()  # compiles every kernel and fills the memory pool with the step's block sizes
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
