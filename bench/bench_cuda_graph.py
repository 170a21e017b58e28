"""One training step (forward, loss, backward, Adam update) replayed from a CUDA graph, next to the
same step run eagerly, in gpunn (CuPy) and in PyTorch (CUDA, cuDNN, true fp32: TF32 off).

    .venv/bin/pytest bench/bench_cuda_graph.py --benchmark-enable      # all four ways in one process
    python -m gpunn bench --only cuda_graph                             # gpunn and torch in their own processes

Models, batch 128 (16 with GPUNN_BENCH_QUICK=1), Adam lr=1e-3, cross-entropy on logits; x and y
already on the device (CuPy arrays / CUDA tensors):
- lenet5: bench_e2e.lenet5 / bench_peers.lenet5 on 1x28x28 (the existing train_step/lenet5 network).
- cifar_cnn_dropout: bench_e2e.cifar_cnn / bench_peers.cifar_cnn on 3x32x32 (conv-BN-ReLU blocks,
  the existing train_step/cifar_cnn network) with Dropout(0.25) before the classifier, so the
  captured step also carries the device-side Philox state of dropout.

The cases, all tagged with the key train_step_graph/<model> on device "cuda":
- impl "gpunn": eager `model.compile(loss, optimizer)` + `model.train_on_batch(x, y)`;
- impl "gpunn-graph": `model.compile(..., cuda_graph=True)` + `train_on_batch` (captured once for the
  input shape after a warm-up, then replayed);
- impl "gpunn-captured": `gpunn.train.CapturedStep(model, loss, optimizer).step(x, y)`, which reads
  nothing back to the host;
- impl "torch": eager, as bench_peers.test_train_step (torch's default foreach Adam);
- impl "torch-graph": the whole-network capture recipe of the PyTorch CUDA notes (static input and
  target, three warm-up steps on a side stream, zero_grad(set_to_none=True), then forward, loss,
  backward and Adam(capturable=True).step() captured in one torch.cuda.CUDAGraph; each step copies
  the batch into the static tensors and replays).
Each timed round runs STEPS steps back to back and synchronizes the device once after the last, so
the per-step median (pytest-benchmark divides by the iterations) is the pipelined training
throughput. train_on_batch returns the loss as a Python float, so the two train_on_batch cases
also pay one device-to-host read per step; CapturedStep and both torch cases do not.

`python -m gpunn bench` reports, per model, gpunn/torch cuda (eager vs eager) and for the graphed
gpunn cases "graph/torch cuda" (vs torch eager), "graph/torch-graph cuda" (vs torch graphed) and
"graph/eager cuda" (vs gpunn eager), and the same three as "captured/..." for CapturedStep: all
throughput ratios, > 1 when the graphed gpunn step is faster. Run by hand in one process, the
terminal summary prints the same ratios and the targets below.

Targets (the issue's, batch 128, on the GPU the suite runs on):
- LeNet-5 step in 0.25 ms or less, i.e. about 8x torch eager;
- CIFAR CNN step 1.5x torch eager or better, and 1.0x torch with CUDA graphs or better.

Everything here carries the `gpu` marker and skips cleanly (with the reason) without a usable CUDA
device, without CuPy, without gpunn.train.CapturedStep, or (the torch cases) without torch or
torch's CUDA. Importing this module touches neither CUDA nor torch. Test names hold "torch" exactly
for the torch cases, which is how `python -m gpunn bench` splits the gpunn and peer processes.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

DROPOUT = 0.25
LR = 1e-3
MODEL_NAMES = ("lenet5", "cifar_cnn_dropout")
SHAPES = {"lenet5": (1, 28, 28), "cifar_cnn_dropout": (3, 32, 32)}
TARGETS = {  # model -> (label, impl it is about, what it is compared with, the least throughput ratio)
    "lenet5": [("<= 0.25 ms/step", "gpunn-graph", None, 0.25e-3), (">= 8x torch eager", "gpunn-graph", "torch", 8.0)],
    "cifar_cnn_dropout": [(">= 1.5x torch eager", "gpunn-graph", "torch", 1.5),
                          (">= 1.0x torch graph", "gpunn-graph", "torch-graph", 1.0)],
}
RESULTS: dict[tuple[str, str], float] = {}  # (model, impl) -> median seconds per step, for the summary


def _quick() -> bool:
    return os.environ.get("GPUNN_BENCH_QUICK", "") not in ("", "0")


def _batch() -> int:
    return 16 if _quick() else 128


def _rounds() -> int:
    return 5 if _quick() else 15


STEPS = 10  # steps per timed round, one device sync after the last


def key_of(model_name: str) -> str:
    return f"train_step_graph/{model_name}"


def _data(n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The same batch for both libraries."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def time_steps(benchmark: Any, step: Callable[[], Any], sync: Callable[[], None], rounds: int,
               steps: int = STEPS) -> None:
    """Benchmark `step` with `steps` calls per round and one sync after each round's last call."""
    count = [0]

    def call() -> None:
        step()
        count[0] += 1
        if count[0] % steps == 0:
            sync()
    sync()
    benchmark.pedantic(call, rounds=rounds, iterations=steps, warmup_rounds=1)
    sync()


def _finish(benchmark: Any, record: Callable[..., None], model_name: str, impl: str) -> None:
    record(benchmark, key_of(model_name), impl, "cuda", items=_batch())
    stats = getattr(benchmark, "stats", None)
    if stats:
        RESULTS[(model_name, impl)] = stats.stats.median


# -- gpunn ----------------------------------------------------------------------------------------
@pytest.fixture
def gpunn_cuda():
    """The cupy backend, current for the test; skips without CUDA or without CapturedStep."""
    import gpunn
    from gpunn.backend import cuda_status
    from gpunn.errors import BackendUnavailableError

    status = cuda_status()
    if not status.usable:
        pytest.skip(f"no usable CUDA: {status.reason}")
    import gpunn.train
    if not hasattr(gpunn.train, "CapturedStep"):
        pytest.skip("gpunn.train.CapturedStep does not exist yet (the captured-step API is not in this checkout)")
    try:
        with gpunn.use_backend("cupy") as be:
            gpunn.manual_seed(0)
            yield be
    except BackendUnavailableError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))


def gpunn_model(model_name: str):
    """The gpunn network, from bench_e2e's builders (bench/ is on sys.path under pytest)."""
    import bench_e2e
    if model_name == "lenet5":
        return bench_e2e.lenet5()
    from gpunn import Sequential
    from gpunn.layers import Dropout
    base = bench_e2e.cifar_cnn()
    return Sequential([*base.layers[:-1], Dropout(DROPOUT), base.layers[-1]])


def make_gpunn_step(be: Any, model_name: str, mode: str) -> Callable[[], Any]:
    """A closure running one training step of `mode` (eager, graph, captured), warmed up (and for
    the graphed modes, captured) before it is returned."""
    from gpunn import train
    from gpunn.losses import SoftmaxCrossEntropy
    from gpunn.optim import Adam

    n = _batch()
    x_host, y_host = _data(n, SHAPES[model_name])
    x, y = be.asarray(x_host), be.xp.asarray(y_host)
    model = gpunn_model(model_name)
    model.forward(x[:2], training=False)  # build
    loss = SoftmaxCrossEntropy()
    if mode == "captured":
        captured = train.CapturedStep(model, loss, Adam(model, lr=LR))

        def step() -> Any:
            return captured.step(x, y)
    else:
        kwargs = {}
        if mode == "graph":
            if "cuda_graph" not in inspect.signature(model.compile).parameters:
                pytest.skip("compile(cuda_graph=True) is not in this checkout yet")
            kwargs["cuda_graph"] = True
        model.compile(loss=loss, optimizer=Adam(lr=LR), **kwargs)

        def step() -> Any:
            return model.train_on_batch(x, y)
    for _ in range(3):  # the warm-up, then (graphed modes) the capture and a first replay
        step()
    be.synchronize()
    return step


@pytest.mark.gpu
@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("mode", ["eager", "graph", "captured"])
def test_gpunn_step(benchmark, gpunn_cuda, record, model_name, mode):
    be = gpunn_cuda
    step = make_gpunn_step(be, model_name, mode)
    time_steps(benchmark, step, be.synchronize, _rounds())
    _finish(benchmark, record, model_name, {"eager": "gpunn", "graph": "gpunn-graph",
                                            "captured": "gpunn-captured"}[mode])


# -- torch ----------------------------------------------------------------------------------------
@pytest.fixture
def torch_cuda():
    """torch, with a CUDA device and true fp32; skips without either."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    return torch


def torch_model(torch: Any, model_name: str):
    """The torch network, from bench_peers' builders."""
    import bench_peers
    if model_name == "lenet5":
        return bench_peers.lenet5()
    layers = list(bench_peers.cifar_cnn())
    return torch.nn.Sequential(*layers[:-1], torch.nn.Dropout(DROPOUT), layers[-1])


def make_torch_step(torch: Any, model_name: str, mode: str) -> Callable[[], Any]:
    """One training step, eager or replayed from a CUDA graph (the whole-network capture recipe)."""
    nn = torch.nn
    n = _batch()
    x_host, y_host = _data(n, SHAPES[model_name])
    x = torch.from_numpy(x_host).cuda()
    y = torch.from_numpy(y_host).cuda()
    model = torch_model(torch, model_name).cuda().train()
    loss_fn = nn.CrossEntropyLoss()
    if mode == "eager":
        opt = torch.optim.Adam(model.parameters(), lr=LR)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        return step
    opt = torch.optim.Adam(model.parameters(), lr=LR, capturable=True)
    static_x, static_y = x.clone(), y.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as the recipe asks
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(static_x), static_y).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = loss_fn(model(static_x), static_y)
        static_loss.backward()
        opt.step()

    def step() -> None:
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
    step()
    torch.cuda.synchronize()
    return step


@pytest.mark.gpu
@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_torch_step(benchmark, torch_cuda, record, model_name, mode):
    torch = torch_cuda
    step = make_torch_step(torch, model_name, mode)
    time_steps(benchmark, step, torch.cuda.synchronize, _rounds())
    _finish(benchmark, record, model_name, "torch" if mode == "eager" else "torch-graph")


# -- the terminal summary (conftest.pytest_terminal_summary) --------------------------------------
RATIOS = (("graph", "gpunn-graph"), ("captured", "gpunn-captured"))
BASES = (("torch", "torch"), ("torch-graph", "torch-graph"), ("eager", "gpunn"))


def summary(results: dict[tuple[str, str], float]) -> str:
    """Per model: ms per step of every case measured in this process, the graphed gpunn cases'
    throughput ratios (> 1: gpunn graphed is faster) and the issue's targets."""
    lines = ["bench_cuda_graph: ms per training step, batch %d, and throughput ratios" % _batch()]
    for model_name in MODEL_NAMES:
        med = {impl: t for (m, impl), t in results.items() if m == model_name}
        if not med:
            continue
        times = ", ".join(f"{impl} {t * 1e3:.3f}" for impl, t in sorted(med.items()))
        lines.append(f"  {model_name}: {times}")
        for label, impl in RATIOS:
            if impl not in med:
                continue
            parts = [f"{label}/{name} {med[base] / med[impl]:.2f}x" for name, base in BASES if base in med]
            if parts:
                lines.append(f"    {', '.join(parts)}")
        for text, impl, base, bound in TARGETS[model_name]:
            if impl not in med or (base is not None and base not in med):
                continue
            ok = med[impl] <= bound if base is None else med[base] / med[impl] >= bound
            lines.append(f"    target {impl} {text}: {'met' if ok else 'NOT met'}")
    return "\n".join(lines)
