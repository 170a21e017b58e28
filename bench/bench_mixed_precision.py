"""Mixed-precision training and tensor-core GEMM: gpunn (`compile(..., precision=...)`, kernels/gemm_tc.cu)
next to PyTorch (torch.autocast, cuBLAS).

    .venv/bin/pytest bench/bench_mixed_precision.py --benchmark-enable     # every case this machine can run
    python -m gpunn bench --only mixed_precision                           # gpunn and torch in their own processes

1. Training step, key train_step_amp/cifar_cnn on "cuda": the CIFAR-style CNN of bench_e2e.cifar_cnn /
   bench_peers.cifar_cnn (the one bench_peers.test_train_step uses), batch 128 (16 with
   GPUNN_BENCH_QUICK=1), Adam lr=1e-3, cross-entropy on logits, x and y already on the device. impls:
   - "gpunn": `compile(loss, optimizer, precision="fp32")` + `train_on_batch(x, y)`;
   - "gpunn-bf16" / "gpunn-fp16": precision="bf16-mixed" / "fp16-mixed";
   - "gpunn-bf16-graph": precision="bf16-mixed" with cuda_graph=True;
   - "torch": eager fp32 (TF32 off, as bench_peers);
   - "torch-bf16": eager under torch.autocast("cuda", dtype=torch.bfloat16) (no GradScaler);
   - "torch-fp16": eager under torch.autocast("cuda", dtype=torch.float16) with torch.amp.GradScaler.
   Each timed round runs STEPS steps back to back and syncs once (bench_cuda_graph.time_steps).
2. GEMM 4096^3, key matmul_tc/square-4096-<bf16|fp16|tf32> on "cuda": impl "gpunn" is
   gemm_tc_launch.gemm_tc (float32 out, preallocated) on bf16 / fp16 / float32 (TF32) operands, impl
   "torch" is torch.matmul on CUDA tensors of the same dtype (cuBLAS; for tf32 float32 tensors with
   torch.backends.cuda.matmul.allow_tf32 = True, restored afterwards). One call and a device sync per
   round (conftest.run_timed), so "gpunn/torch cuda" in the report is the fraction of cuBLAS.
3. CPU, key train_step_amp/lenet5 on "cpu": LeNet-5 (bench_e2e.lenet5) train_on_batch on the numpy
   backend, impl "gpunn" (fp32) and "gpunn-bf16" (bf16-mixed): numbers in CPU-only runs too.

`python -m gpunn bench` reports the usual "gpunn/torch <dev>" (fp32 step vs fp32 step, gemm_tc vs
cuBLAS) and, from MIXED_RATIOS in gpunn/jobs/bench.py, "bf16/torch-bf16", "bf16/fp32",
"bf16-graph/torch-bf16" and "fp16/torch-fp16": throughput ratios, > 1 when the first is faster.
Run by hand in one process, the terminal summary prints the same ratios and the targets below.

Targets (the issue's, on the GPU the suite runs on): gpunn bf16-mixed step >= 1.0x torch autocast bf16
and >= 2x gpunn fp32; gemm_tc >= 0.8x cuBLAS for each precision.

The GPU cases carry the `gpu` marker and skip cleanly (with the reason) without a usable CUDA device,
CuPy, torch or torch's CUDA.
Importing this module touches neither CUDA nor torch. Test names hold "torch" exactly for the torch
cases, which is how `python -m gpunn bench` splits the gpunn and peer processes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
# the batch size and round count bench_cuda_graph uses (GPUNN_BENCH_QUICK): the same steps, the same sizes
from bench_cuda_graph import _batch, _quick, _rounds

LR = 1e-3
STEPS = 10  # steps per timed round, one device sync after the last
GEMM_N = 4096
GEMM_PRECISIONS = ("bf16", "fp16", "tf32")
STEP_SHAPES = {"cifar_cnn": (3, 32, 32), "lenet5": (1, 28, 28)}
# gpunn mode -> (impl, compile kwargs)
GPUNN_MODES = {
    "fp32": ("gpunn", {"precision": "fp32"}),
    "bf16": ("gpunn-bf16", {"precision": "bf16-mixed"}),
    "bf16-graph": ("gpunn-bf16-graph", {"precision": "bf16-mixed", "cuda_graph": True}),
    "fp16": ("gpunn-fp16", {"precision": "fp16-mixed"}),
}
TORCH_MODES = {"fp32": "torch", "bf16": "torch-bf16", "fp16": "torch-fp16"}
# (label, impl, base, the least throughput ratio base time / impl time)
TARGETS = [(">= 1.0x torch autocast bf16", "gpunn-bf16", "torch-bf16", 1.0),
           (">= 2x gpunn fp32", "gpunn-bf16", "gpunn", 2.0)]
GEMM_TARGET = 0.8
RESULTS: dict[tuple[str, str, str], float] = {}  # (key, impl, device) -> median seconds, for the summary


def step_key(model_name: str) -> str:
    return f"train_step_amp/{model_name}"


def gemm_key(precision: str) -> str:
    return f"matmul_tc/square-{GEMM_N}-{precision}"


def _data(n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The same batch for both libraries."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def _finish(benchmark: Any, record: Callable[..., None], key: str, impl: str, device: str, **tags: Any) -> None:
    record(benchmark, key, impl, device, **tags)
    stats = getattr(benchmark, "stats", None)
    if stats:
        RESULTS[(key, impl, device)] = stats.stats.median


def time_steps(benchmark: Any, step: Callable[[], Any], sync: Callable[[], None], rounds: int) -> None:
    """`step` STEPS times per round, one sync after each round's last call (as bench_cuda_graph)."""
    import bench_cuda_graph  # bench/ is on sys.path under pytest
    bench_cuda_graph.time_steps(benchmark, step, sync, rounds, steps=STEPS)


# -- gpunn ----------------------------------------------------------------------------------------
def make_gpunn_step(be: Any, model_name: str, mode: str, n: int) -> Callable[[], Any]:
    """One train_on_batch step of `mode` (GPUNN_MODES), warmed up (and graphed: captured) first."""
    import bench_e2e
    from gpunn.losses import SoftmaxCrossEntropy
    from gpunn.optim import Adam

    x_host, y_host = _data(n, STEP_SHAPES[model_name])
    x, y = be.asarray(x_host), be.xp.asarray(y_host)
    model = bench_e2e.lenet5() if model_name == "lenet5" else bench_e2e.cifar_cnn()
    model.forward(x[:2], training=False)  # build
    kwargs = dict(GPUNN_MODES[mode][1])
    model.compile(loss=SoftmaxCrossEntropy(), optimizer=Adam(lr=LR), **kwargs)

    def step() -> Any:
        return model.train_on_batch(x, y)
    for _ in range(3):  # the warm-up, then (graphed) the capture and a first replay
        step()
    be.synchronize()
    return step


@pytest.fixture
def gpunn_cuda():
    """The cupy backend, current for the test; skips without a usable CUDA device."""
    import gpunn
    from gpunn.backend import cuda_status
    from gpunn.errors import BackendUnavailableError

    status = cuda_status()
    if not status.usable:
        pytest.skip(f"no usable CUDA: {status.reason}")
    try:
        with gpunn.use_backend("cupy") as be:
            gpunn.manual_seed(0)
            yield be
    except BackendUnavailableError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))


@pytest.fixture
def gpunn_numpy():
    import gpunn
    with gpunn.use_backend("numpy") as be:
        gpunn.manual_seed(0)
        yield be


@pytest.mark.gpu
@pytest.mark.parametrize("mode", list(GPUNN_MODES))
def test_gpunn_amp_step(benchmark, gpunn_cuda, record, mode):
    be = gpunn_cuda
    benchmark.group = "train_step_amp/cifar_cnn/cuda"
    step = make_gpunn_step(be, "cifar_cnn", mode, _batch())
    time_steps(benchmark, step, be.synchronize, _rounds())
    _finish(benchmark, record, step_key("cifar_cnn"), GPUNN_MODES[mode][0], "cuda", items=_batch())


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_gpunn_amp_step_cpu(benchmark, gpunn_numpy, record, mode):
    """LeNet-5 on the numpy backend: the CPU numbers of this suite."""
    be = gpunn_numpy
    n = 16 if _quick() else 64
    benchmark.group = "train_step_amp/lenet5/cpu"
    step = make_gpunn_step(be, "lenet5", mode, n)
    benchmark.pedantic(step, rounds=3 if _quick() else 5, iterations=1, warmup_rounds=1)
    _finish(benchmark, record, step_key("lenet5"), GPUNN_MODES[mode][0], "cpu", items=n)


def _gemm_operands(be: Any, precision: str) -> tuple[Any, Any]:
    from gpunn.backend.cuda.cast_launch import cast_f32_to_half
    from gpunn.backend.cuda.gemm_tc_launch import operand_dtype

    rng = np.random.default_rng(0)
    a32, b32 = (be.xp.asarray(rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)) for _ in range(2))
    if precision == "tf32":
        return a32, b32
    dtype = operand_dtype(precision)
    return cast_f32_to_half(be.kernels, be.xp, a32, dtype), cast_f32_to_half(be.kernels, be.xp, b32, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", GEMM_PRECISIONS)
def test_gemm_tc(benchmark, gpunn_cuda, record, timed, precision):
    from gpunn.backend.cuda.gemm_tc_launch import gemm_tc

    be = gpunn_cuda
    if not hasattr(be, "kernels"):
        pytest.skip("this CUDA backend has no KernelCache (backend.kernels)")
    a, b = _gemm_operands(be, precision)
    out = be.xp.empty((GEMM_N, GEMM_N), dtype=np.float32)
    benchmark.group = f"matmul_tc/{GEMM_N}/{precision}"
    timed(benchmark, lambda: gemm_tc(be.kernels, be.xp, a, b, out=out, precision=precision), be.synchronize,
          _rounds())
    _finish(benchmark, record, gemm_key(precision), "gpunn", "cuda", flops=2.0 * GEMM_N ** 3)


# -- torch ----------------------------------------------------------------------------------------
@pytest.fixture
def torch_cuda():
    """torch with a CUDA device, true fp32 by default (TF32 off, restored after); skips without either."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    yield torch
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def make_torch_step(torch: Any, mode: str) -> Callable[[], Any]:
    """One eager training step of the CIFAR CNN: fp32, autocast bf16, or autocast fp16 + GradScaler."""
    import bench_peers
    n = _batch()
    x_host, y_host = _data(n, STEP_SHAPES["cifar_cnn"])
    x, y = torch.from_numpy(x_host).cuda(), torch.from_numpy(y_host).cuda()
    model = bench_peers.cifar_cnn().cuda().train()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    if mode == "fp32":
        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
    elif mode == "bf16":
        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
    else:
        scaler = torch.amp.GradScaler("cuda")

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    return step


@pytest.mark.gpu
@pytest.mark.parametrize("mode", list(TORCH_MODES))
def test_torch_amp_step(benchmark, torch_cuda, record, mode):
    torch = torch_cuda
    benchmark.group = "train_step_amp/cifar_cnn/cuda"
    step = make_torch_step(torch, mode)
    time_steps(benchmark, step, torch.cuda.synchronize, _rounds())
    _finish(benchmark, record, step_key("cifar_cnn"), TORCH_MODES[mode], "cuda", items=_batch())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", GEMM_PRECISIONS)
def test_torch_gemm(benchmark, torch_cuda, record, timed, precision):
    torch = torch_cuda
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32}[precision]
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"  # the fixture restores it
    gen = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(GEMM_N, GEMM_N, device="cuda", generator=gen).to(dtype) for _ in range(2))
    out = torch.empty(GEMM_N, GEMM_N, device="cuda", dtype=dtype)
    benchmark.group = f"matmul_tc/{GEMM_N}/{precision}"
    timed(benchmark, lambda: torch.matmul(a, b, out=out), torch.cuda.synchronize, _rounds())
    _finish(benchmark, record, gemm_key(precision), "torch", "cuda", flops=2.0 * GEMM_N ** 3)


# -- the terminal summary (conftest.pytest_terminal_summary) --------------------------------------
SUMMARY_RATIOS = (("bf16/torch-bf16", "gpunn-bf16", "torch-bf16"), ("bf16/fp32", "gpunn-bf16", "gpunn"),
                  ("bf16-graph/torch-bf16", "gpunn-bf16-graph", "torch-bf16"),
                  ("fp16/torch-fp16", "gpunn-fp16", "torch-fp16"), ("gpunn/torch", "gpunn", "torch"))


def summary(results: dict[tuple[str, str, str], float]) -> str:
    """Per key and device: ms of every case measured in this process, the throughput ratios
    (base time / impl time, > 1: the first is faster) and the targets."""
    lines = ["bench_mixed_precision: ms per step / per GEMM, and throughput ratios"]
    for key, device in sorted({(k, d) for k, _, d in results}):
        med = {impl: t for (k, impl, d), t in results.items() if (k, d) == (key, device)}
        lines.append(f"  {key} {device}: " + ", ".join(f"{i} {t * 1e3:.3f}" for i, t in sorted(med.items())))
        if key.startswith("matmul_tc/"):
            flops = 2.0 * GEMM_N ** 3
            parts = [f"{i} {flops / t / 1e12:.1f} TFLOP/s" for i, t in sorted(med.items())]
            lines.append(f"    {', '.join(parts)}")
            if "gpunn" in med and "torch" in med:
                frac = med["torch"] / med["gpunn"]
                lines.append(f"    gemm_tc/cuBLAS {frac:.2f}x; target >= {GEMM_TARGET:g}x: "
                             f"{'met' if frac >= GEMM_TARGET else 'NOT met'}")
            continue
        parts = [f"{label} {med[base] / med[impl]:.2f}x" for label, impl, base in SUMMARY_RATIOS
                 if impl in med and base in med]
        if parts:
            lines.append(f"    {', '.join(parts)}")
        if device == "cuda":
            for text, impl, base, bound in TARGETS:
                if impl in med and base in med:
                    ok = med[base] / med[impl] >= bound
                    lines.append(f"    target {impl} {text}: {'met' if ok else 'NOT met'}")
    return "\n".join(lines)
