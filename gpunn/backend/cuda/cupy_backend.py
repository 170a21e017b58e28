"""The GPU backend: CuPy. Imported only when this backend is selected, never by `import gpunn`.

The ops that have a CUDA kernel (kernels/*.cu) run through the launchers in launchers.py; the
kernels compile with NVRTC through cupy.RawModule on first use. `CupyBackend(use_kernels=False)`
(or a set of op names) routes ops back to the generic CuPy implementation, for comparisons.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gpunn.backend.base import (DLPACK_CUDA_DEVICES, Backend, dlpack_device, foreign_to_host, is_foreign_array,
                                native_byte_order)
from gpunn.backend.cuda.kernel_ops import KernelOpsMixin, UseKernels
from gpunn.backend.cuda.source import nvrtc_include_options
from gpunn.errors import GraphCaptureError

# NVRTC options for every kernel module: C++17, and no fast-math so results track the reference.
NVRTC_OPTIONS = ("--std=c++17",)


class CupyBackend(KernelOpsMixin, Backend):
    name = "cupy"

    def __init__(self, use_kernels: UseKernels = True) -> None:
        import cupy  # noqa: PLC0415 - deliberate late import, see module docstring

        super().__init__(cupy)
        self._cupy = cupy
        self.device = f"cuda:{cupy.cuda.Device().id}"
        # the 16-bit / tensor-core modules include cuda_fp16.h, cuda_bf16.h, mma.h: NVRTC gets -I<CUDA include>
        self._init_kernels(
            lambda code: cupy.RawModule(code=code, options=NVRTC_OPTIONS + nvrtc_include_options(code)), use_kernels)

    def asarray(self, a: Any, dtype: Any = None, *, where: str | None = None) -> Any:
        if is_foreign_array(a):
            a = self._import_foreign(a, where or "cupy backend: asarray")
        return self._cupy.asarray(native_byte_order(a), dtype=dtype)  # CuPy arrays are little-endian

    def _import_foreign(self, a: Any, where: str) -> Any:
        """A tensor on a CUDA device (torch, JAX) imported in place with cupy.from_dlpack; one on
        the host copied once, through the host (see foreign_to_host)."""
        if hasattr(a, "__dlpack__"):
            device = dlpack_device(a)
            if device is not None and device[0] in DLPACK_CUDA_DEVICES:
                return self._cupy.from_dlpack(a)
        if hasattr(a, "__cuda_array_interface__"):
            return a  # numba and friends: cupy.asarray reads the interface in place
        return foreign_to_host(a, where)

    def to_numpy(self, a: Any) -> np.ndarray:
        return self._cupy.asnumpy(a)

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()

    def host_to_device(self, dst: Any, values: Any) -> None:
        """One host-to-device copy straight into `dst` (ndarray.set), on the current stream."""
        if self.capturing:
            super().host_to_device(dst, values)  # raises: see Backend.host_to_device
        host = np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype=dst.dtype), dst.shape))
        dst.set(host)

    # -- captured steps: CUDA graphs through CuPy's stream capture ------------------------------
    # Warm-up and capture run on one non-blocking stream with a private memory pool: the warm-up
    # leaves the pool holding blocks of the step's sizes, so the capture (relaxed mode, CuPy's
    # default) seldom needs a cudaMalloc; eager work elsewhere never gets a block a replay writes,
    # because nothing but graph warm-ups and captures allocates from that pool, and replays of the
    # graphs sharing it run one at a time on its stream.
    supports_graphs = True
    _capturing = False
    _graph_stream: Any = None
    _graph_pool: Any = None

    @property
    def capturing(self) -> bool:
        return self._capturing

    def _graph_resources(self) -> tuple[Any, Any]:
        if self._graph_stream is None:
            self._graph_stream = self._cupy.cuda.Stream(non_blocking=True)
            self._graph_pool = self._cupy.cuda.MemoryPool()
        return self._graph_stream, self._graph_pool

    @contextlib.contextmanager
    def graph_scope(self) -> Iterator[None]:
        """The capture stream and the graph pool, ordered after the caller's stream and before it."""
        cuda = self._cupy.cuda
        stream, pool = self._graph_resources()
        outer = cuda.get_current_stream()
        stream.wait_event(outer.record())
        try:
            with cuda.using_allocator(pool.malloc), stream:
                yield
        finally:
            outer.wait_event(stream.record())

    def capture_graph(self, body: Callable[[], Any]) -> tuple[Any, Any]:
        """Record `body()` into a CUDA graph (nothing runs while capturing); see Backend.capture_graph."""
        with self.graph_scope():
            stream = self._graph_stream
            stream.begin_capture()
            self._capturing = True
            try:
                result = body()
            except BaseException as exc:
                self._capturing = False
                with contextlib.suppress(Exception):
                    stream.end_capture()  # an invalidated capture still has to be ended
                if isinstance(exc, self._cupy.cuda.runtime.CUDARuntimeError):
                    raise GraphCaptureError(f"a CUDA call inside the captured step was refused ({exc}): a host read "
                                            "(float(), .item(), .get()), a synchronisation or a synchronous copy; "
                                            "the emulated backend's recorder names the op and the line") from exc
                raise
            self._capturing = False
            try:
                graph = stream.end_capture()
            except Exception as exc:
                raise GraphCaptureError(f"the step could not be captured as a CUDA graph: {exc}; something in it "
                                        "synchronised with the host or called a library that refuses capture "
                                        "(run the step on the emulated backend: its recorder names the op)") from exc
        return CupyGraph(self, graph, result), result


class CupyGraph:
    """A captured step: `replay()` launches it on the capture stream, ordered after the work queued
    on the caller's stream (the static inputs' copies) and before what the caller queues next."""

    def __init__(self, backend: CupyBackend, graph: Any, keep: Any) -> None:
        self._backend, self._graph, self._keep = backend, graph, keep
        cuda = backend._cupy.cuda
        # two events made once (no timing: cheaper to record), re-recorded by every replay
        self._inputs_ready, self._done = cuda.Event(disable_timing=True), cuda.Event(disable_timing=True)

    def replay(self) -> None:
        cuda = self._backend._cupy.cuda
        stream = self._backend._graph_stream
        outer = cuda.get_current_stream()
        outer.record(self._inputs_ready)
        stream.wait_event(self._inputs_ready)
        self._graph.launch(stream)
        stream.record(self._done)
        outer.wait_event(self._done)
