"""Is CuPy usable here, and if not, why?

`cuda_status()` never raises, never hangs and caches its answer. It is only called when a
backend is chosen, never at import, so `import gpunn` touches neither CuPy nor CUDA.
The probe runs in a worker thread with a timeout because a broken driver can block inside
the first CUDA call.
"""
from __future__ import annotations

import dataclasses
import importlib
import threading

PROBE_TIMEOUT_S = 20.0


@dataclasses.dataclass(frozen=True)
class CudaStatus:
    usable: bool
    reason: str  # human-readable: why usable, or which piece is missing
    missing: str | None = None  # "package" | "driver" | "device" | "nvrtc" | "timeout" | None
    device_name: str | None = None
    device_memory_bytes: int | None = None
    cupy_version: str | None = None
    cuda_runtime_version: int | None = None

    def __bool__(self) -> bool:
        return self.usable


_cache: CudaStatus | None = None
_lock = threading.Lock()


def _probe() -> CudaStatus:
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken install raising something else
        return CudaStatus(False, f"CuPy is not installed or does not import ({exc.__class__.__name__}: {exc}); "
                          "install gpunn[cuda12] or gpunn[cuda13]", missing="package")
    version = getattr(cupy, "__version__", None)
    try:
        runtime = cupy.cuda.runtime
        driver_version = runtime.driverGetVersion()
        if not driver_version:
            raise RuntimeError("driverGetVersion() returned 0")
    except Exception as exc:
        return CudaStatus(False, f"no usable NVIDIA driver ({exc})", missing="driver", cupy_version=version)
    try:
        count = runtime.getDeviceCount()
    except Exception as exc:
        return CudaStatus(False, f"no CUDA device answers ({exc})", missing="device", cupy_version=version)
    if count < 1:
        return CudaStatus(False, "no CUDA device found", missing="device", cupy_version=version)
    try:
        props = runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        memory = int(props["totalGlobalMem"])
    except Exception as exc:
        return CudaStatus(False, f"CUDA device 0 does not answer ({exc})", missing="device", cupy_version=version)
    try:
        cupy.cuda.nvrtc.getVersion()
        # A real compile proves the NVRTC library loads, not just that the binding exists.
        kernel = cupy.RawKernel('extern "C" __global__ void gpunn_probe(float* x) { x[0] = 1.0f; }', "gpunn_probe")
        kernel.compile()
    except Exception as exc:
        return CudaStatus(False, f"NVRTC is missing or cannot compile ({exc}); install gpunn[cuda12] or "
                          "gpunn[cuda13], which ship it", missing="nvrtc", cupy_version=version)
    try:
        runtime_version = int(runtime.runtimeGetVersion())
    except Exception:
        runtime_version = None
    return CudaStatus(True, f"CuPy {version} on {name}", device_name=name, device_memory_bytes=memory,
                      cupy_version=version, cuda_runtime_version=runtime_version)


def cuda_status(refresh: bool = False) -> CudaStatus:
    """Whether the CuPy backend can run here; the reason when it cannot. Cached."""
    global _cache
    with _lock:
        if _cache is not None and not refresh:
            return _cache
        result: list[CudaStatus] = []

        def run() -> None:
            try:
                result.append(_probe())
            except BaseException as exc:  # never let the probe raise
                result.append(CudaStatus(False, f"probing CUDA failed ({exc!r})", missing="driver"))

        worker = threading.Thread(target=run, name="gpunn-cuda-probe", daemon=True)
        worker.start()
        worker.join(PROBE_TIMEOUT_S)
        if result:
            _cache = result[0]
        else:
            _cache = CudaStatus(False, f"probing CUDA did not answer within {PROBE_TIMEOUT_S:.0f} s",
                                missing="timeout")
        return _cache


def _reset_cache() -> None:
    """For tests that simulate missing pieces."""
    global _cache
    with _lock:
        _cache = None
