"""gpunn/backend/cuda/nccl.py on a GPU (run when a device is lent): a communicator of one rank reduces on
a side stream and orders the current stream after it; the CIFAR step trains through it."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend.cuda import nccl

pytestmark = pytest.mark.gpu


@pytest.fixture
def cupy():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # noqa: BLE001 - no driver: skip with the reason
        pytest.skip(f"no CUDA device: {exc}")
    if not nccl.available():
        pytest.skip("CuPy has no NCCL here (install nvidia-nccl-cu12 / -cu13)")
    return cp


def _wait(request) -> None:
    request.event.synchronize()
    assert request.Test()


def test_nccl_all_reduce_and_broadcast_on_one_rank(cupy) -> None:
    comm = nccl.Communicator(0, 1, lambda uid: None)
    a = cupy.arange(1000, dtype=cupy.float32)
    _wait(comm.all_reduce(a, "sum"))
    np.testing.assert_array_equal(cupy.asnumpy(a), np.arange(1000, dtype=np.float32))
    b = cupy.full(7, 3.0)
    _wait(comm.broadcast(b, 0))
    assert float(b.sum()) == 21.0


def test_cifar_step_through_nccl(cupy) -> None:
    import gpunn
    from gpunn.optim import Adam
    from gpunn.optim.distributed import GradientSync

    with gpunn.use_backend("cupy"):
        gpunn.manual_seed(0)
        from gpunn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
        model = gpunn.Sequential([Conv2D(32, 3, padding=1), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(), Dense(10)])
        x = cupy.random.standard_normal((16, 3, 32, 32), dtype=cupy.float32)
        model.forward(x[:2], training=False)
        opt = Adam(model, lr=1e-3)
        sync = GradientSync(opt, model)
        opt._ensure_packed()
        sync._cut_buckets()
        sync._hook_layers()
        sync.ready = True
        opt.grad_sync = sync
        comm = nccl.Communicator(0, 1, lambda uid: None)
        before = cupy.asnumpy(opt.flat_data).copy()
        opt.zero_grad()
        out = model.forward(x, training=True)
        model.backward(cupy.ones_like(out) / out.size)
        # reduce each bucket through NCCL as a world of one would: the values must come back intact
        grads = cupy.asnumpy(opt.flat_grad).copy()
        for b in sync.buckets:
            _wait(comm.all_reduce(b.view, "sum"))
        np.testing.assert_array_equal(cupy.asnumpy(opt.flat_grad), grads)
        opt.grad_sync = None
        opt.step()
        assert not np.array_equal(cupy.asnumpy(opt.flat_data), before)
