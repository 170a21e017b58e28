"""Which backend is current: a process default (from GPUNN_BACKEND, else "auto"), overridable
per thread by `use_backend`. Backend objects are created once per name and reused."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from gpunn.backend.base import Backend
from gpunn.backend.detect import cuda_status
from gpunn.errors import BackendUnavailableError
from gpunn.random import current_seed, on_seed

log = logging.getLogger("gpunn")

ENV_VAR = "GPUNN_BACKEND"


def _make_numpy() -> Backend:
    from gpunn.backend.cpu.backend import NumpyBackend
    return NumpyBackend()


def _make_cupy() -> Backend:
    status = cuda_status()
    if not status.usable:
        raise BackendUnavailableError(
            f"the 'cupy' backend cannot run here: missing {status.missing} - {status.reason}")
    from gpunn.backend.cuda.cupy_backend import CupyBackend
    return CupyBackend()


def _make_emulated() -> Backend:
    # The CUDA-emulator backend: the CupyBackend launchers and kernels, run on NumPy arrays on the CPU.
    from gpunn.backend.cuda.emulated import EmulatedBackend
    return EmulatedBackend()


_FACTORIES: dict[str, Callable[[], Backend]] = {"numpy": _make_numpy, "cupy": _make_cupy,
                                                 "emulated": _make_emulated}
_instances: dict[str, Backend] = {}
_default: Backend | None = None
_reason: str = ""
_local = threading.local()
_lock = threading.RLock()


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make `name` selectable; used by optional backends such as the CUDA emulator."""
    _FACTORIES[name] = factory


def available_names() -> list[str]:
    return ["auto", *_FACTORIES]


def _resolve(name: str) -> tuple[Backend, str]:
    if not isinstance(name, str):
        raise TypeError(f"set_backend: argument 'name' must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "auto":
        status = cuda_status()
        if status.usable:
            return _instance("cupy"), f"auto: {status.reason}"
        return _instance("numpy"), f"auto: NumPy, because CuPy is not usable ({status.reason})"
    if key not in _FACTORIES:
        raise ValueError(f"set_backend: argument 'name' must be one of {available_names()}, got {name!r}")
    return _instance(key), f"requested {key!r}"


def _instance(key: str) -> Backend:
    with _lock:
        if key not in _instances:
            backend = _FACTORIES[key]()
            seed = current_seed()
            if seed is not None:
                backend.manual_seed(seed)
            _instances[key] = backend
        return _instances[key]


def get_backend() -> Backend:
    """The backend current in this thread."""
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    global _default, _reason
    if _default is None:
        with _lock:
            if _default is None:
                requested = os.environ.get(ENV_VAR, "").strip() or "auto"
                _default, reason = _resolve_env(requested)
                _reason = reason if requested == "auto" else f"{ENV_VAR}={requested}"
                log.info("gpunn backend: %s (%s)", _default.name, _reason)
    return _default


def _resolve_env(requested: str) -> tuple[Backend, str]:
    """_resolve() for the GPUNN_BACKEND value: its errors name the variable, not set_backend's argument."""
    if requested.lower() != "auto" and requested.lower() not in _FACTORIES:
        raise ValueError(f"environment variable {ENV_VAR} must be one of {available_names()} (or unset), "
                         f"got {requested!r}")
    try:
        return _resolve(requested)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"environment variable {ENV_VAR}={requested!r}: {exc}") from None


def set_backend(name: str) -> Backend:
    """Set the process-wide backend ("auto", "numpy", "cupy", "emulated"); returns it."""
    global _default, _reason
    backend, reason = _resolve(name)
    with _lock:
        _default, _reason = backend, reason
    stack = getattr(_local, "stack", None)
    if stack:
        stack[-1] = backend
    return backend


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Make `name` current in this thread for the duration of the block.

    Objects built in the block (layers, models, optimizers) keep that backend afterwards; an
    object's own methods run on the backend it holds, wherever they are called. `name` may also
    be a Backend instance, e.g. `use_backend(model.backend)` around code that should run where
    the model lives."""
    backend = name if isinstance(name, Backend) else _resolve(name)[0]
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(backend)
    try:
        yield backend
    finally:
        stack.pop()


def backend_named(backend_name: Any, where: str) -> Backend:
    """The backend `backend_name` names ("numpy", "emulated", "cupy", "auto"), for a `to()` call;
    an error naming the argument when it is not a name, an unknown one, or one that cannot run
    here. Changes nothing (the current backend stays)."""
    if not isinstance(backend_name, str):
        raise TypeError(f"{where}: argument 'backend_name' must be a backend name (a str, one of {available_names()}), "
                        f"got {type(backend_name).__name__}")
    try:
        return _resolve(backend_name)[0]
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"{where}: argument 'backend_name'={backend_name!r} cannot run here: {exc}") \
            from None
    except ValueError:
        raise ValueError(f"{where}: argument 'backend_name' must be one of {available_names()}, "
                         f"got {backend_name!r}") from None


def selection_reason() -> str:
    get_backend()
    return _reason


def reseed_all(seed: int) -> None:
    """Seed every backend built so far (gpunn.manual_seed calls this)."""
    with _lock:
        for backend in _instances.values():
            backend.manual_seed(seed)


on_seed(reseed_all)


def _reset_for_tests() -> None:
    global _default, _reason
    with _lock:
        _default, _reason = None, ""
        for key in [k for k in _instances if k != "numpy"]:
            del _instances[key]
