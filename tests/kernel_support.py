"""Shared pieces of the kernel tests: the backends under test, the NumPy reference, the comparison.

`kernel_backend` parametrizes a test over the emulated CUDA backend with the kernels on and off
(the off path runs the inherited generic ops, so both paths are held to the same reference), and
over CuPy the same way; the CuPy cases are marked `gpu` and skip cleanly without a device.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from gpunn.backend import cuda_status
from gpunn.backend.base import Backend
from gpunn.backend.cpu.backend import NumpyBackend

# Kernel tests: few, small examples (the emulator runs one fiber per CUDA thread), no deadline
# (the first example of a session compiles the kernel family with g++).
KERNEL_SETTINGS = settings(max_examples=20, deadline=None, derandomize=True,
                           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Stated tolerances. float32: 1e-5 relative, measured against the largest magnitude of the
# expected array (sums are ordered differently); float64: 1e-12.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


@functools.lru_cache(maxsize=None)
def _make(name: str, use_kernels: bool) -> Backend | str:
    """A backend instance, or the reason it cannot be built here (cached: one build per session)."""
    try:
        if name == "emulated":
            from gpunn.backend.cuda.emulated import EmulatedBackend
            return EmulatedBackend(use_kernels=use_kernels)
        status = cuda_status()
        if not status.usable:
            return f"no usable CUDA: {status.reason}"
        from gpunn.backend.cuda.cupy_backend import CupyBackend
        return CupyBackend(use_kernels=use_kernels)
    except Exception as exc:  # missing compiler or emulator: report why it was skipped
        return f"{name} backend unavailable: {exc}"


def get_kernel_backend(name: str, use_kernels: bool = True) -> Backend:
    made = _make(name, use_kernels)
    if isinstance(made, str):
        pytest.skip(made)
    return made


KERNEL_BACKEND_PARAMS = [
    pytest.param(("emulated", True), id="emulated-kernels"),
    pytest.param(("emulated", False), id="emulated-generic"),
    pytest.param(("cupy", True), id="cupy-kernels", marks=pytest.mark.gpu),
    pytest.param(("cupy", False), id="cupy-generic", marks=pytest.mark.gpu),
]


@pytest.fixture(params=KERNEL_BACKEND_PARAMS)
def kernel_backend(request: Any) -> Backend:
    return get_kernel_backend(*request.param)


@pytest.fixture(params=[pytest.param("emulated", id="emulated"),
                        pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)])
def device_backend(request: Any) -> Backend:
    """Kernels on, for the launcher tests."""
    return get_kernel_backend(request.param, True)


@functools.lru_cache(maxsize=None)
def reference() -> NumpyBackend:
    return NumpyBackend()


def to_host(backend: Backend, a: Any) -> Any:
    if isinstance(a, tuple):
        return tuple(to_host(backend, b) for b in a)
    return None if a is None else np.asarray(backend.to_numpy(a))


def to_device(backend: Backend, *arrays: np.ndarray) -> list[Any]:
    return [None if a is None else backend.asarray(a.copy()) for a in arrays]


def assert_close(actual: np.ndarray, expected: np.ndarray, name: str = "", rtol: float | None = None,
                 terms: float | None = None) -> None:
    """|actual - expected| <= rtol * (|expected| + max|expected|), dtype and shape equal.

    `terms`: for a result that is a difference of larger terms (a cancellation), their magnitude;
    the absolute tolerance is then rtol * max(max|expected|, terms), the rounding any summation
    order leaves on such a result."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    tol = RTOL[expected.dtype] if rtol is None else rtol
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    if terms is not None:
        scale = max(scale, float(terms))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=name)


class Spy:
    """A KernelCache stand-in that records the kernel names the launcher asks for."""

    def __init__(self, cache: Any) -> None:
        self.cache, self.names = cache, []

    def function(self, family: str, name: str) -> Any:
        self.names.append(name)
        return self.cache.function(family, name)
