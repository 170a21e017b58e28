"""The same ops and training steps as bench_ops.py and bench_e2e.py, in PyTorch: on the CPU, and on
CUDA when a device is present. Skipped cleanly when torch does not import; torch is never a test
dependency.

    path/to/python -m pytest bench/bench_peers.py --benchmark-enable    # an interpreter that has torch
    python -m gpunn bench --python path/to/python                       # or GPUNN_PEER_PYTHON=path/to/python

Run it in its own process (`python -m gpunn bench` does, alternating with the gpunn suites):
measured here, torch and NumPy in one process slowed torch by about 30%. The thread count is
GPUNN_BENCH_THREADS (else os.cpu_count()), the same the job gives OpenBLAS.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn

from bench_ops import CONVS, NORMS, POOLS  # noqa: E402 - after the importorskip, on purpose

THREADS = int(os.environ.get("GPUNN_BENCH_THREADS") or os.cpu_count() or 1)
QUICK = os.environ.get("GPUNN_BENCH_QUICK", "") not in ("", "0")
torch.set_num_threads(THREADS)
# gpunn computes in true float32; so must the peer (cuDNN convolutions default to TF32 on Ampere+)
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def _devices() -> list:
    return [pytest.param("cpu", id="torch-cpu"),
            pytest.param("cuda", id="torch-cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=_devices())
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    torch.manual_seed(0)
    return request.param


@pytest.fixture
def roofline(device) -> dict[str, float]:
    """sgemm and copy on the same device, by torch (the peer's own ceiling)."""
    from conftest import measure_roofline  # bench/ is on sys.path under pytest's default import mode

    class _TorchXp:
        def __init__(self, dev):
            self.dev = dev

        def asarray(self, a):
            return torch.as_tensor(a, device=self.dev)

        def empty(self, shape, dtype):
            return torch.empty(shape, dtype=torch.float32, device=self.dev)

        def ones(self, shape, dtype):
            return torch.ones(shape, dtype=torch.float32, device=self.dev)

        @staticmethod
        def matmul(a, b, out):
            return torch.matmul(a, b, out=out)

        @staticmethod
        def copyto(dst, src):
            dst.copy_(src)

    big = device == "cuda"
    return measure_roofline(_TorchXp(device), _sync(device), gemm_n=8192 if big else 1024,
                            copy_bytes=(1 << 30) if big else (64 << 20))


def _sync(device):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _rounds() -> int:
    return 5 if QUICK else 15


def _batch() -> int:
    return 16 if QUICK else 128


def _randn(shape, device, seed=0, grad=False):
    t = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)).to(device)
    return t.requires_grad_(grad)


# -- ops ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CONVS))
@pytest.mark.parametrize("op", ["im2col", "col2im"])
def test_unfold(benchmark, device, roofline, record, timed, case, op):
    (c, h, w), (f, kh, kw), pad = CONVS[case]
    x = _randn((_batch(), c, h, w), device)
    cols = F.unfold(x, (kh, kw), padding=pad)
    if op == "im2col":
        fn = lambda: F.unfold(x, (kh, kw), padding=pad)  # noqa: E731
    else:
        fn = lambda: F.fold(cols, (h, w), (kh, kw), padding=pad)  # noqa: E731
    with torch.no_grad():
        timed(benchmark, fn, _sync(device), _rounds())
    record(benchmark, f"{op}/{case}", "torch", device, nbytes=4 * (x.numel() + cols.numel()), roof=roofline)


@pytest.mark.parametrize("case", list(CONVS))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_conv2d(benchmark, device, roofline, record, timed, case, direction):
    (c, h, w), (f, kh, kw), pad = CONVS[case]
    n = _batch()
    x = _randn((n, c, h, w), device, grad=True)
    weight = _randn((f, c, kh, kw), device, 1, grad=True)
    bias = _randn((f,), device, 2, grad=True)
    if direction == "fwd":
        def fn():
            with torch.no_grad():
                return F.conv2d(x, weight, bias, padding=pad)
        gemms = 1
    else:
        y = F.conv2d(x, weight, bias, padding=pad)
        dy = _randn(tuple(y.shape), device, 3)

        def fn():
            return torch.autograd.grad(y, (x, weight, bias), dy, retain_graph=True)
        gemms = 2
    timed(benchmark, fn, _sync(device), _rounds())
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    record(benchmark, f"conv2d_{direction}/{case}", "torch", device,
           flops=gemms * 2.0 * n * f * oh * ow * c * kh * kw, roof=roofline)


@pytest.mark.parametrize("case", list(POOLS))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_maxpool(benchmark, device, roofline, record, timed, case, direction):
    c, h, w = POOLS[case]
    x = _randn((_batch(), c, h, w), device, grad=direction == "bwd")
    if direction == "fwd":
        def fn():
            with torch.no_grad():
                return F.max_pool2d(x, 2, return_indices=True)
    else:
        y = F.max_pool2d(x, 2)
        dy = _randn(tuple(y.shape), device, 1)

        def fn():
            return torch.autograd.grad(y, x, dy, retain_graph=True)
    timed(benchmark, fn, _sync(device), _rounds())
    record(benchmark, f"maxpool_{direction}/{case}", "torch", device,
           nbytes=4 * (x.numel() + 2 * x.numel() // 4), roof=roofline)


@pytest.mark.parametrize("case", list(NORMS))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_batchnorm(benchmark, device, roofline, record, timed, case, direction):
    c, h, w = NORMS[case]
    x = _randn((_batch(), c, h, w), device, grad=direction == "bwd")
    gamma, beta = _randn((c,), device, 1, grad=True), _randn((c,), device, 2, grad=True)
    rm, rv = torch.zeros(c, device=device), torch.ones(c, device=device)
    if direction == "fwd":
        def fn():
            with torch.no_grad():
                return F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5)
        nbytes = 4 * 2 * x.numel()
    else:
        y = F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5)
        dy = _randn(tuple(y.shape), device, 3)

        def fn():
            return torch.autograd.grad(y, (x, gamma, beta), dy, retain_graph=True)
        nbytes = 4 * 3 * x.numel()
    timed(benchmark, fn, _sync(device), _rounds())
    record(benchmark, f"batchnorm_{direction}/{case}", "torch", device, nbytes=nbytes, roof=roofline)


# -- training steps -----------------------------------------------------------------------------
def lenet5() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def cifar_cnn() -> nn.Module:
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


MODELS = {"lenet5": (lenet5, (1, 28, 28)), "cifar_cnn": (cifar_cnn, (3, 32, 32))}


@pytest.mark.parametrize("model_name", list(MODELS))
def test_train_step(benchmark, device, record, timed, model_name):
    build, shape = MODELS[model_name]
    n = _batch()
    model = build().to(device)
    x = _randn((n, *shape), device)
    y = torch.from_numpy(np.random.default_rng(0).integers(0, 10, n)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # torch's default (foreach) implementation
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    step()
    timed(benchmark, step, _sync(device), _rounds())
    record(benchmark, f"train_step/{model_name}", "torch", device, items=n)
