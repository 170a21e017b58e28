"""gpunn's CPU threads: one small pool that splits an op's work into contiguous ranges.

NumPy runs its elementwise passes and copies on one core, and only BLAS uses more. In a small
CNN most of a step is those passes (padding, im2col columns, bias, ReLU, batch norm, pooling), so
the NumPy backend splits each op itself: each thread takes a range of samples, channels or frame
positions and runs the whole op on it (copies, GEMMs and epilogue, with its data still in its own
core's cache). NumPy's ufuncs and copies, and our nogil numba kernels, release the GIL.

While a split op runs, BLAS is held to one thread: two levels of threads would oversubscribe the
cores, and OpenBLAS's workers, spinning after a GEMM, take a core from our threads. BLAS gets
its own setting back when the op ends.

The thread count is `GPUNN_NUM_THREADS`, else `set_num_threads(n)`, else the BLAS thread count
when first asked (OPENBLAS_NUM_THREADS and friends; threadpoolctl reads it), capped at the cores.
With one thread every op runs inline, exactly as without this module.

Bad settings, as OpenMP treats OMP_NUM_THREADS and OpenBLAS its own variables:
- GPUNN_NUM_THREADS that is not a whole number >= 1 ("0", "-1", "abc", "2.5") is ignored with a
  RuntimeWarning naming the variable, its value and what is expected, once per value; the count
  falls back to set_num_threads() or the default. An empty value counts as unset.
- `set_num_threads(n)` with anything but an int >= 1 raises ValueError: a call in the program is a
  bug to fix there, an environment left over from another machine is not worth a crash.
- A count above `thread_limit()`, OVERSUBSCRIBE (4) times the CPUs this process may run on
  (`cpu_limit()`: its CPU affinity, else os.cpu_count()), is capped there with a RuntimeWarning,
  from either source. An explicit count up to that ceiling is honoured, as OpenMP and PyTorch
  honour theirs: a few threads more than cores are how the tests exercise every split on a one-
  or two-core machine. Far beyond it, threads only add hand-offs, and each worker lives as long
  as the process (GPUNN_NUM_THREADS=999999 started hundreds).
"""
from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from gpunn._checks import positive_int

T = TypeVar("T")

ENV_VAR = "GPUNN_NUM_THREADS"

#: elements an op must touch per thread before it is split: below this, the hand-off to a worker
#: (55-90 us here, mostly the wake-up) costs more than it saves
MIN_WORK = 1 << 17

_lock = threading.Lock()
_state: dict[str, Any] = {}  # "threads", "env" (parsed GPUNN_NUM_THREADS), "workers", "blas"/"knobs", "saved"
_active = 0  # split ops running now (the first one in holds BLAS at one thread, the last restores)
_local = threading.local()  # .worker: True on pool threads (nested splits run inline)
_busy = threading.Lock()  # held while the workers serve one caller; others run their ranges inline


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: forget the workers (new ones start on
    demand), renew the locks another thread may have held, and give BLAS back its setting if the
    fork came in the middle of a split op."""
    global _lock, _busy, _active
    _lock, _busy, _active = threading.Lock(), threading.Lock(), 0
    _state.pop("workers", None)
    for (_, put), n in zip(_state.get("knobs", []), _state.pop("saved", [])):
        put(n)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _blas_controllers() -> list[Any]:
    ctls = _state.get("blas")
    if ctls is None:
        try:
            import numpy  # noqa: F401, PLC0415 - threadpoolctl only sees libraries already loaded
            from threadpoolctl import ThreadpoolController  # noqa: PLC0415

            ctls = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive: leave BLAS alone
            ctls = []
        _state["blas"] = ctls
    return ctls


def _blas_knobs() -> list[tuple[Callable[[], int], Callable[[int], Any]]]:
    """(get, set) thread-count functions per BLAS. For OpenBLAS the C functions themselves:
    threadpoolctl's wrappers cost a few microseconds per call, and a step makes ~60 calls."""
    knobs = _state.get("knobs")
    if knobs is None:
        knobs = []
        for c in _blas_controllers():
            get = put = None
            try:
                if c.internal_api == "openblas" and c.threading_layer != "openmp":
                    get = c._get_symbol("openblas_get_num_threads")  # noqa: SLF001
                    put = c._get_symbol("openblas_set_num_threads")  # noqa: SLF001
            except Exception:  # noqa: BLE001 - another threadpoolctl: its public methods below
                get = put = None
            knobs.append((get, put) if get is not None and put is not None else (c.get_num_threads, c.set_num_threads))
        _state["knobs"] = knobs
    return knobs


#: how many times the CPU count an explicit thread count may reach (see thread_limit())
OVERSUBSCRIBE = 4


def cpu_limit() -> int:
    """The CPUs this process may run on: its affinity mask (which taskset and container CPU sets
    narrow), else os.cpu_count(). The default thread count never exceeds it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_limit() -> int:
    """The most threads gpunn starts, whatever GPUNN_NUM_THREADS or set_num_threads() ask for."""
    return OVERSUBSCRIBE * cpu_limit()


def _capped(threads: int, source: str, stacklevel: int) -> int:
    limit = thread_limit()
    if threads <= limit:
        return threads
    warnings.warn(f"{source} asks for {threads} threads, more than gpunn's ceiling of {limit} "
                  f"({OVERSUBSCRIBE} x the {cpu_limit()} CPUs this process can use); using {limit}",
                  RuntimeWarning, stacklevel=stacklevel + 1)
    return limit


def _env_threads() -> int | None:
    """GPUNN_NUM_THREADS as a thread count (capped), or None when unset or unusable. Parsed once
    per value: get_num_threads() runs for every split op."""
    raw = os.environ.get(ENV_VAR, "")
    cached = _state.get("env")
    if cached is not None and cached[0] == raw:
        return cached[1]
    value: int | None = None
    text = raw.strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < 1:
            warnings.warn(f"environment variable {ENV_VAR} must be a whole number of threads >= 1, got {raw!r}; "
                          "ignoring it: gpunn uses set_num_threads()'s count, else BLAS's",
                          RuntimeWarning, stacklevel=3)
            value = None
        else:
            value = _capped(value, f"environment variable {ENV_VAR}={raw!r}", stacklevel=3)
    _state["env"] = (raw, value)
    return value


def get_num_threads() -> int:
    """Threads gpunn's CPU ops split their work over (see the module docstring for the default
    and for what a bad GPUNN_NUM_THREADS or a count above the CPUs does)."""
    env = _env_threads()
    if env is not None:
        return env
    threads = _state.get("threads")
    if threads is None:
        with _lock:
            threads = _state.get("threads")
            if threads is None:
                counts = [get() for get, _ in _blas_knobs()]
                limit = cpu_limit()
                blas = max(counts) if counts else limit
                threads = _state["threads"] = max(1, min(blas, limit))
    return threads


def set_num_threads(threads: int) -> None:
    """Set how many threads gpunn's CPU ops use (GPUNN_NUM_THREADS, when set, still wins).

    `threads` must be an int >= 1 (ValueError otherwise); above thread_limit() it is capped
    there, with a RuntimeWarning."""
    threads = positive_int(threads, "threads", "set_num_threads")
    _state["threads"] = _capped(threads, f"set_num_threads({threads})", stacklevel=2)


class _Worker:
    """A daemon thread that runs one range at a time, handed over with two plain locks: about 30
    microseconds less per split than a ThreadPoolExecutor's futures and queue (measured here:
    55 vs 87 us for an empty split), and a LeNet-5 step makes a dozen splits."""

    def __init__(self, index: int) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._task: tuple[Callable[[int, int], Any], int, int] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        threading.Thread(target=self._loop, name=f"gpunn-cpu-{index}", daemon=True).start()

    def _loop(self) -> None:
        _local.worker = True
        while True:
            self._go.acquire()
            fn, lo, hi = self._task  # type: ignore[misc]
            try:
                self.result, self.error = fn(lo, hi), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self.result, self.error = None, exc
            self._task = None
            self._done.release()

    def start(self, fn: Callable[[int, int], Any], lo: int, hi: int) -> None:
        self._task = (fn, lo, hi)
        self._go.release()

    def wait(self) -> None:
        self._done.acquire()


def _workers(count: int) -> list[_Worker]:
    workers = _state.setdefault("workers", [])
    while len(workers) < count:
        workers.append(_Worker(len(workers) + 1))
    return workers[:count]


def _enter() -> None:
    global _active
    with _lock:
        _active += 1
        if _active == 1:
            knobs = _blas_knobs()
            _state["saved"] = [get() for get, _ in knobs]
            for _, put in knobs:
                put(1)


def _exit() -> None:
    global _active
    with _lock:
        _active -= 1
        if _active == 0:
            for (_, put), n in zip(_blas_knobs(), _state.pop("saved", [])):
                put(n)


def split(total: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """[0, total) as at most `parts` contiguous, non-empty (lo, hi) ranges, inner bounds on
    multiples of `align`, as even as that allows."""
    if total <= 0:
        return []
    units = -(-total // align)
    parts = max(1, min(parts, units))
    bounds = [min(total, (units * i // parts) * align) for i in range(parts)] + [total]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def run(fn: Callable[[int, int], T], ranges: Sequence[tuple[int, int]], threads: int | None = None) -> list[T]:
    """fn(lo, hi) for every range, in parallel (the calling thread takes the first); the results
    in range order. Exceptions propagate after every range has finished. With more than one
    thread configured (`threads`, default get_num_threads()), BLAS is held to one thread even
    when a single range runs inline, so its workers stay asleep between gpunn's split ops."""
    if getattr(_local, "worker", False) or (len(ranges) <= 1 and (threads or get_num_threads()) == 1):
        return [fn(lo, hi) for lo, hi in ranges]
    if len(ranges) > 1 and not _busy.acquire(blocking=False):
        return [fn(lo, hi) for lo, hi in ranges]  # another thread is using the workers
    _enter()
    try:
        if len(ranges) <= 1:
            return [fn(lo, hi) for lo, hi in ranges]
        workers = _workers(len(ranges) - 1)
        for wk, (lo, hi) in zip(workers, ranges[1:]):
            wk.start(fn, lo, hi)
        try:
            first = fn(*ranges[0])
        finally:
            for wk in workers:  # wait for all before anything is reused
                wk.wait()
        errors = [wk.error for wk in workers if wk.error is not None]
        if errors:
            raise errors[0]
        return [first, *(wk.result for wk in workers)]
    finally:
        _exit()
        if len(ranges) > 1:
            _busy.release()


def parallel_for(fn: Callable[[int, int], T], total: int, work: int, align: int = 1) -> list[T]:
    """Split [0, total) over the threads and run(); `work` (elements touched) limits the split to
    one thread per MIN_WORK elements, so a small op runs inline."""
    configured = get_num_threads()
    return run(fn, split(total, min(configured, max(1, work // MIN_WORK)), align), configured)
