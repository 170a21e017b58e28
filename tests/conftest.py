"""Backend parametrization: every test that takes the `backend` fixture runs on NumPy, on the
emulated CUDA backend (when the emulator can build here), and on CuPy (when a GPU answers)."""
from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, settings

import gpunn
from gpunn.backend import cuda_status


# The `backend` fixture is safe to share across hypothesis examples: it only selects a backend.
settings.register_profile("gpunn", suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None,
                          max_examples=25, derandomize=True)
settings.load_profile("gpunn")


@functools.lru_cache(maxsize=None)
def _emulated_reason() -> str | None:
    try:
        with gpunn.use_backend("emulated"):
            pass
    except Exception as exc:  # missing module or compiler: report why it was skipped
        return f"emulated backend unavailable: {exc}"
    return None


@pytest.fixture
def emulated():
    """The emulated backend instance, not made current (tests that place objects on it choose
    where it is current); skips with the reason where it cannot run."""
    if _emulated_reason():
        pytest.skip(_emulated_reason())
    with gpunn.use_backend("emulated") as be:
        return be


def _backend_params() -> list:
    return [
        pytest.param("numpy", id="numpy"),
        pytest.param("emulated", id="emulated"),
        pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
    ]


@pytest.fixture(params=_backend_params())
def backend(request):
    """The backend under test, made current for the test's duration."""
    name = request.param
    if name == "cupy" and not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    if name == "emulated" and _emulated_reason():
        pytest.skip(_emulated_reason())
    with gpunn.use_backend(name) as be:
        gpunn.manual_seed(0)
        yield be


@pytest.fixture(autouse=True)
def _default_numpy_backend():
    """Tests that do not ask for a backend run on NumPy, whatever GPUNN_BACKEND says."""
    with gpunn.use_backend("numpy"):
        yield
