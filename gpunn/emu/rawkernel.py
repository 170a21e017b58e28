"""cupy.RawModule / cupy.RawKernel look-alikes that run kernels on NumPy arrays through the emulator.

Calls are checked against the parsed `extern "C"` signature before anything runs, more strictly
than CuPy does: a Python int or float where a scalar is declared is refused, because CuPy would
pass it as int64 or double and silently break an `int`/`float` parameter on the GPU.
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from gpunn.emu import capture
from gpunn.emu.build import EmuCompileError, build_library, runtime_is_loaded, sanitizers
from gpunn.emu.signature import KernelSig, Param, find_kernels

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
DEFAULT_SHARED_LIMIT = 48 * 1024
_ERR_BYTES = 4096


class EmuLaunchError(RuntimeError):
    """A launch failed inside the emulator: deadlock, barrier or warp divergence, shared-memory limit."""


_CTYPES = {
    np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
    np.dtype(np.int8): ctypes.c_int8, np.dtype(np.uint8): ctypes.c_uint8,
    np.dtype(np.int16): ctypes.c_int16, np.dtype(np.uint16): ctypes.c_uint16,
    np.dtype(np.int32): ctypes.c_int32, np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.int64): ctypes.c_int64, np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.bool_): ctypes.c_bool,
}
# __half and __nv_bfloat16 scalars travel as their 16-bit patterns.
_HALF_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def _numpy_name(dtype: np.dtype | None) -> str:
    return "ml_dtypes.bfloat16" if dtype == np.dtype(ml_dtypes.bfloat16) else f"np.{dtype}"

# Loaded libraries by path, each with the lock that serialises its launches (the fiber scheduler's
# state is global to the library).
_loaded: dict[Path, tuple[ctypes.CDLL, threading.Lock]] = {}
_loaded_lock = threading.Lock()


def _load(path: Path) -> tuple[ctypes.CDLL, threading.Lock]:
    with _loaded_lock:
        if path not in _loaded:
            _loaded[path] = (ctypes.CDLL(str(path)), threading.Lock())
        return _loaded[path]


def _dims(value: Any, what: str, kernel: str, limits: tuple[int, int, int]) -> tuple[int, int, int]:
    items = value if isinstance(value, tuple) else (value,)
    ok = 1 <= len(items) <= 3 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in items)
    if not ok:
        raise TypeError(f"{kernel}: {what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = tuple(int(v) for v in items) + (1,) * (3 - len(items))
    for axis, (d, lim) in enumerate(zip(dims, limits)):
        if not 1 <= d <= lim:
            raise ValueError(f"{kernel}: {what}[{axis}] must be in 1..{lim}, got {d} (from {value!r})")
    return dims  # type: ignore[return-value]


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray(dtype={value.dtype}, shape={value.shape})"
    if isinstance(value, np.generic):
        return f"numpy {value.dtype} scalar {value!r}"
    return f"{type(value).__name__} {value!r}"


def _check_arg(kernel: str, index: int, p: Param, value: Any) -> ctypes._SimpleCData:
    where = f"{kernel}: argument {index} '{p.name}' ({p.ctype})"
    if p.pointer:
        want = "any dtype" if p.dtype is None else f"dtype {p.dtype}"
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{where} must be a C-contiguous numpy array of {want}, got {_describe(value)}")
        if p.dtype is not None and value.dtype != p.dtype:
            raise TypeError(f"{where} must be a numpy array of {want}, got {_describe(value)}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{where} must be C-contiguous, got a strided view with strides {value.strides}; "
                             "pass np.ascontiguousarray(x)")
        if not value.flags.aligned:
            raise ValueError(f"{where} must be aligned for {value.dtype}")
        if not p.const and not value.flags.writeable:
            raise ValueError(f"{where} is written by the kernel but the array is read-only; "
                             "declare the parameter const or pass a writable array")
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, np.ndarray) or not isinstance(value, np.generic):
        hint = ""
        if isinstance(value, (bool, int, float)):
            hint = (f"; CuPy would pass a Python {type(value).__name__} as "
                    f"{'int64' if isinstance(value, int) else 'float64'}, which breaks a {p.ctype} parameter"
                    f" - wrap it as {_numpy_name(p.dtype)}({value!r})")
        raise TypeError(f"{where} must be a numpy {p.dtype} scalar, got {_describe(value)}{hint}")
    if value.dtype != p.dtype:
        raise TypeError(f"{where} must be a numpy {p.dtype} scalar, got {_describe(value)}")
    if p.dtype in _HALF_DTYPES:
        return ctypes.c_uint16(int(np.asarray(value).view(np.uint16)))
    return _CTYPES[p.dtype](value.item())


class _Keep:
    """A recorded launch: the call, and the ctypes values and arrays its argument block points at
    (kept alive as long as the graph that holds it)."""

    __slots__ = ("_call", "_keep")

    def __init__(self, call: Any, *keep: Any) -> None:
        self._call, self._keep = call, keep

    def __call__(self) -> None:
        self._call()


class RawModule:
    """Like cupy.RawModule: holds CUDA source; kernels compile (once, cached) on first launch."""

    def __init__(self, code: str, options: tuple[str, ...] = (), name_expressions: Any = None,
                 *, filename: str = "kernel.cu") -> None:
        if not isinstance(code, str):
            raise TypeError(f"RawModule: argument 'code' must be a str, got {type(code).__name__}")
        if name_expressions is not None:
            raise ValueError("RawModule: argument 'name_expressions' (templated kernels) is not supported by the "
                             "emulator; declare kernels extern \"C\" and pass None")
        self.code = code
        self.options = tuple(options)
        self.filename = filename
        self.kernels: dict[str, KernelSig] = find_kernels(code)
        self._path: Path | None = None
        self._lib: ctypes.CDLL | None = None
        self._launch_lock: threading.Lock | None = None
        self._build_lock = threading.Lock()

    def get_function(self, name: str) -> RawKernel:
        if name not in self.kernels:
            raise AttributeError(f"RawModule.get_function: no kernel named {name!r} in {self.filename}; "
                                 f"found {sorted(self.kernels)}")
        if not self.kernels[name].extern_c:
            raise AttributeError(f"RawModule.get_function: kernel {name!r} is not declared extern \"C\", so CuPy "
                                 "would need its mangled name; declare it extern \"C\"")
        return RawKernel._from_module(self, name)

    def _library(self) -> tuple[ctypes.CDLL, threading.Lock]:
        with self._build_lock:
            if self._lib is None:
                for san in sanitizers(self.options):
                    # Loading a sanitized library into a process without the runtime aborts it.
                    if san != "undefined" and not runtime_is_loaded(san):
                        raise EmuCompileError(
                            f"option --emu-sanitize={san} needs its runtime preloaded: run Python with "
                            f"LD_PRELOAD=$(g++ -print-file-name=lib{'t' if san == 'thread' else 'a'}san.so) "
                            "(gpunn.emu.build.sanitizer_runtime gives the path)")
                exported = [k for k in self.kernels.values() if k.extern_c]
                self._path = build_library(self.code, exported, self.options, self.filename)
                try:
                    self._lib, self._launch_lock = _load(self._path)
                except OSError as first:
                    # A corrupt entry (garbage bytes, a bad copy) would otherwise fail every later
                    # run: replace it with a fresh build, once; only a fresh build's failure is raised.
                    self._path = build_library(self.code, exported, self.options, self.filename, rebuild=True)
                    try:
                        self._lib, self._launch_lock = _load(self._path)
                    except OSError as exc:
                        raise EmuCompileError(f"the freshly built {self._path} does not load: {exc} "
                                              f"(the cached copy failed first with: {first})") from exc
        assert self._launch_lock is not None
        return self._lib, self._launch_lock

    def compile(self) -> None:
        """Build now instead of at the first launch (CuPy's RawModule.compile)."""
        self._library()


class RawKernel:
    """Like cupy.RawKernel: `kern(grid, block, args, shared_mem=0)` on NumPy arrays."""

    def __init__(self, code: str, name: str, options: tuple[str, ...] = (), *, filename: str = "kernel.cu") -> None:
        module = RawModule(code, options, filename=filename)
        module.get_function(name)  # validates the name
        self._init(module, name)

    @classmethod
    def _from_module(cls, module: RawModule, name: str) -> RawKernel:
        self = cls.__new__(cls)
        self._init(module, name)
        return self

    def _init(self, module: RawModule, name: str) -> None:
        self.module = module
        self.name = name
        self.signature = module.kernels[name]
        # As CuPy's attribute: raising it lets a launch use more than 48 KiB of shared memory.
        self.max_dynamic_shared_size_bytes = 0
        self._fn: Any = None

    @property
    def code(self) -> str:
        return self.module.code

    def compile(self) -> None:
        self._function()

    def _function(self) -> tuple[Any, threading.Lock]:
        lib, lock = self.module._library()
        if self._fn is None:
            fn = getattr(lib, f"gpunn_emu_launch_{self.name}")
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint), ctypes.c_ulonglong,
                           ctypes.c_ulonglong, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_ulonglong]
            self._fn = fn
        return self._fn, lock

    def __call__(self, grid: Any, block: Any, args: tuple, *, shared_mem: int = 0) -> None:
        kname = f"kernel '{self.name}'"
        g = _dims(grid, "grid", kname, MAX_GRID)
        b = _dims(block, "block", kname, MAX_BLOCK)
        if b[0] * b[1] * b[2] > MAX_THREADS_PER_BLOCK:
            raise ValueError(f"{kname}: block {block!r} has {b[0] * b[1] * b[2]} threads, more than "
                             f"{MAX_THREADS_PER_BLOCK}")
        if not isinstance(shared_mem, (int, np.integer)) or isinstance(shared_mem, bool) or shared_mem < 0:
            raise ValueError(f"{kname}: shared_mem must be a non-negative int (bytes), got {shared_mem!r}")
        limit = max(DEFAULT_SHARED_LIMIT, int(self.max_dynamic_shared_size_bytes))
        if shared_mem > limit:
            raise ValueError(f"{kname}: shared_mem={shared_mem} bytes exceeds the {limit}-byte limit "
                             "(raise max_dynamic_shared_size_bytes to opt in, as on the GPU)")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"{kname}: args must be a tuple, got {type(args).__name__}")
        params = self.signature.params
        if len(args) != len(params):
            raise TypeError(f"{kname} takes {len(params)} arguments "
                            f"({', '.join(p.ctype + ' ' + p.name for p in params)}), got {len(args)}")
        cargs = [_check_arg(kname, i, p, a) for i, (p, a) in enumerate(zip(params, args))]
        fn, lock = self._function()
        argv = (ctypes.c_void_p * max(1, len(cargs)))(*[ctypes.addressof(c) for c in cargs])
        grid, blk = (ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b)

        def launch() -> None:
            # the argument block holds device pointers and scalar values: a replay reuses it as is
            err = ctypes.create_string_buffer(_ERR_BYTES)
            with lock:
                rc = fn(grid, blk, shared_mem, limit, argv, err, _ERR_BYTES)
            if rc != 0:
                raise EmuLaunchError(f"{kname} (grid {g}, block {b}): {err.value.decode(errors='replace')}")

        recorder = capture.active()
        if recorder is not None:
            pointers = [(p, a) for p, a in zip(params, args) if p.pointer]
            recorder.add_launch(kname, _Keep(launch, cargs, argv, args), [a for p, a in pointers if not p.const],
                                [a for p, a in pointers if p.const])
        launch()

    def __repr__(self) -> str:
        return f"<gpunn.emu.RawKernel {self.name} from {self.module.filename}>"
