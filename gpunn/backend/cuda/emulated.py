"""The emulated CUDA backend: NumPy arrays, with the kernels of kernels/*.cu compiled by the host
C++ compiler against gpunn/emu/cuda_emu.h and run on the CPU.

It runs the very launcher code CupyBackend runs (gpunn/backend/cuda/launchers.py), so the tests and CI
prove the CUDA path (grids, argument packing, kernel arithmetic) without a GPU. It is slow: one
fiber per CUDA thread. Use it for tests, not for training.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from gpunn.backend.base import Backend
from gpunn.backend.cuda.kernel_ops import KernelOpsMixin, UseKernels
from gpunn.errors import BackendUnavailableError


class EmulatedBackend(KernelOpsMixin, Backend):
    name = "emulated"
    device = "cpu-emulated-cuda"

    def __init__(self, use_kernels: UseKernels = True) -> None:
        if shutil.which("g++") is None:
            raise BackendUnavailableError(
                "the 'emulated' backend cannot run here: missing the C++ compiler g++ (needed to build the CUDA "
                "kernels for the CPU emulator); install g++ (e.g. apt-get install g++)")
        try:
            from gpunn import emu  # noqa: PLC0415 - only this backend needs the emulator
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the 'emulated' backend cannot run here: the CUDA emulator gpunn.emu does not import ({exc})") from exc
        from gpunn.emu import capture  # noqa: PLC0415

        super().__init__(capture.device_numpy)
        self._capture = capture
        self._init_kernels(lambda code: emu.RawModule(code), use_kernels)

    # Device memory is gpunn.emu.capture.DeviceArray; a plain NumPy array is host memory, which
    # asarray adopts (no copy) as CuPy would copy it to the device.
    def is_native(self, a: Any) -> bool:
        return isinstance(a, self._capture.DeviceArray)

    # -- captured steps: the emulator's recorder stands in for CUDA stream capture ---------------
    supports_graphs = True

    @property
    def capturing(self) -> bool:
        return self._capture.active() is not None

    def capture_graph(self, body: Callable[[], Any]) -> tuple[Any, Any]:
        """Record `body()` (see gpunn/emu/capture.py): kernels and array ops, replayed by
        `graph.replay()`; memory older than the capture is left as it was."""
        return self._capture.record(body)
