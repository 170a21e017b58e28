"""Emulated device memory and CUDA-graph capture: what lets CI prove a captured training step on
the CPU.

Device arrays. The emulated backend's arrays are `DeviceArray`s, a NumPy subclass that stands for
GPU memory. Its array module is `device_numpy` (`backend.xp`): NumPy, except that what it creates
or converts is a DeviceArray, and that reductions give 0-d arrays, not NumPy scalars, as CuPy does
(a sum stays on the device until someone reads it). Everything computed from a DeviceArray is one
(ufuncs and NumPy functions through `__array_ufunc__` / `__array_function__`, methods and indexing
through the overrides below).

Capture. `Recorder` is what a CUDA stream capture is to CuPy. While one is active (see `record`):
- every kernel launch (gpunn.emu.RawKernel) and every array op on DeviceArrays is run and appended
  to a list, with its arguments as they are then: the arrays by identity (fixed memory, as device
  pointers are) and the scalars by value, baked in as they are in a CUDA graph;
- an array an op makes is allocated in the capture's pool, which the graph keeps alive;
- what real capture refuses raises GraphCaptureError naming the op and the line that did it: a host
  read of device memory (float(), bool(), .item(), .tolist(), printing, to_host), a host-to-device
  copy (asarray of a NumPy array, list or scalar), a host array passed to an op or a kernel, and
  data-dependent shapes (boolean-mask indexing, nonzero, unique);
- when the recording ends, every array that existed before it and that the recorded ops wrote is
  put back as it was: capture records a step, it does not run one (a GPU runs nothing while it
  captures).
`Graph.replay()` then reruns the recorded list on the same memory, without any of the Python that
produced it. A value that should change from step to step but was baked in as a Python scalar
(a learning rate, a step count) replays its capture-time value, so a replay that does not match
the eager step exposes it.

What the recorder cannot see, that real capture would refuse or get wrong: `np.asarray(a)` /
`np.array(a)` of a DeviceArray (NumPy converts subclasses without asking; CuPy refuses implicit
conversion even outside capture), Python state changed inside the step (a host counter bumped once
at capture, never at replay), and work on other threads or streams.
"""
from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from gpunn.errors import GraphCaptureError

_state = threading.local()


def active() -> Recorder | None:
    """The recorder capturing on this thread, or None."""
    return getattr(_state, "recorder", None)


def _caller() -> str:
    """'file:line in function' of the innermost frame outside this module, NumPy and the backend's
    to_host: where the offending op was written."""
    frame = sys._getframe(1)
    here = __file__
    while frame is not None:
        name = frame.f_code.co_filename
        if name != here and "/numpy/" not in name and not name.endswith(("gpunn/backend/base.py",)):
            return f"{name}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def _refuse(what: str, why: str) -> GraphCaptureError:
    return GraphCaptureError(f"{what} {why} inside a captured step (CUDA graph), at {_caller()}")


def _host_read(what: str) -> None:
    if active() is not None:
        raise _refuse(what, "reads device memory back to the host; keep the value on the device (read it after the "
                      "step, once per logging interval)")


# -- array plumbing -----------------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    """`obj` with every DeviceArray replaced by a plain ndarray view of the same memory (so NumPy
    computes without dispatching back here), through tuples, lists and dicts."""
    if isinstance(obj, DeviceArray):
        return obj.view(np.ndarray)
    if isinstance(obj, tuple):
        return tuple(_plain(o) for o in obj)
    if isinstance(obj, list):
        return [_plain(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _root(a: np.ndarray) -> np.ndarray:
    """The ndarray that owns `a`'s memory (followed through .base)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _arrays(obj: Any) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [a for o in obj for a in _arrays(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in _arrays(o)]
    return []


def _check_device_inputs(what: str, obj: Any) -> None:
    """Inside capture, every array an op reads or writes must be device memory."""
    for a in _arrays(obj):
        if not isinstance(a, DeviceArray):
            raise _refuse(what, f"is given a host NumPy array (shape {a.shape}, dtype {a.dtype}): that is a "
                          "host-to-device copy; put the data on the device before the step (a static input buffer)")


def _as_device(result: Any) -> Any:
    """NumPy's result as device memory: arrays viewed as DeviceArray, scalars as 0-d arrays."""
    if isinstance(result, np.ndarray):
        return result if isinstance(result, DeviceArray) else result.view(DeviceArray)
    if isinstance(result, np.generic):
        return np.array(result).view(DeviceArray)
    if isinstance(result, tuple):
        return tuple(_as_device(r) for r in result)
    if isinstance(result, list):
        return [_as_device(r) for r in result]
    return result


_NONE = object()


def _given_out(kwargs: dict) -> Any:
    """The `out=` a caller gave (NumPy returns that very object), else _NONE."""
    out = kwargs.get("out")
    if out is None:
        return _NONE
    return out[0] if isinstance(out, tuple) and len(out) == 1 else out


def _run(what: str, call: Callable[[], Any], inputs: Any, writes: list[np.ndarray], ret: Any = _NONE) -> Any:
    """Run one op (`call` computes on plain arrays), and record it when capturing: outputs that are
    new memory join the pool and are rewritten by each replay; outputs that view an input are left
    as views (a view is a pointer, not an op). `ret`, when given, is what the caller gets back (the
    `out=` object it passed, so that `a += b` leaves `a` the same object)."""
    rec = active()
    if rec is not None:
        _check_device_inputs(what, inputs)
        rec.before_write(writes)
    result = call()
    out = _as_device(result) if ret is _NONE else ret
    if rec is None:
        return out
    roots = {id(_root(a)) for a in _arrays(_plain(inputs))}
    fresh: list[tuple[int, np.ndarray]] = []
    for i, r in enumerate(out if isinstance(out, (tuple, list)) else (out,)):
        if isinstance(r, np.ndarray) and id(_root(r)) not in roots:
            fresh.append((i, r.view(np.ndarray)))
    if fresh or writes:
        rec.add_op(what, call, fresh, isinstance(out, (tuple, list)))
    return out


class DeviceArray(np.ndarray):
    """An array in the emulated backend's device memory (see the module docstring)."""

    __array_priority__ = 20.0

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = getattr(ufunc, method)
        pin, pkw = _plain(inputs), _plain(kwargs)
        writes = list(pkw.get("out", ()) or ())
        if method == "at":
            writes.append(pin[0])
        ret = _given_out(kwargs) if method != "at" else None
        return _run(f"np.{ufunc.__name__}{'' if method == '__call__' else '.' + method}",
                    lambda: fn(*pin, **pkw), (inputs, kwargs), writes, ret)

    def __array_function__(self, func: Any, types_: Any, args: tuple, kwargs: dict) -> Any:
        name = f"np.{func.__name__}"
        if func.__name__ in _DATA_DEPENDENT and active() is not None:
            raise _refuse(name, "gives a shape that depends on the data (the host must read it)")
        if func.__name__ in _HOST_READS:
            _host_read(name)
        pargs, pkw = _plain(args), _plain(kwargs)
        writes = list(_arrays(pkw.get("out")))
        if func.__name__ in _WRITES_FIRST and pargs:
            writes += _arrays(pargs[0])
        return _run(name, lambda: func(*pargs, **pkw), (args, kwargs), writes, _given_out(kwargs))

    # -- indexing -------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        if active() is not None and any(a.dtype == np.bool_ for a in _arrays(key)):
            raise _refuse("boolean-mask indexing", "gives a shape that depends on the data (the host must count it)")
        plain, pkey = self.view(np.ndarray), _plain(key)
        if _is_element(key, self.ndim):
            # CuPy gives a 0-d view for a[i, j]; NumPy a host scalar: take NumPy's 0-d view
            pkey = pkey + (Ellipsis,) if isinstance(pkey, tuple) else (pkey, Ellipsis)
        if _is_basic(pkey):
            return np.ndarray.__getitem__(self, pkey)  # a view, whose .base is this array (as in CuPy)
        return _run("indexing", lambda: plain[pkey], (self, key), [])

    def __setitem__(self, key: Any, value: Any) -> None:
        plain, pkey, pval = self.view(np.ndarray), _plain(key), _plain(value)
        if active() is not None and not isinstance(value, np.ndarray) and isinstance(value, (list, tuple)):
            raise _refuse("a[...] = list", "copies host data to the device")

        def call() -> None:
            plain[pkey] = pval
        _run("a[...] = value", call, (self, key, value), [plain])

    # -- host reads -----------------------------------------------------------------------------
    def __float__(self) -> float:
        _host_read("float()")
        return float(self.view(np.ndarray))

    def __int__(self) -> int:
        _host_read("int()")
        return int(self.view(np.ndarray))

    def __index__(self) -> int:
        _host_read("an index taken from a device array")
        return self.view(np.ndarray).__index__()

    def __bool__(self) -> bool:
        _host_read("bool() (an `if` on a device value)")
        return bool(self.view(np.ndarray))

    def __complex__(self) -> complex:
        _host_read("complex()")
        return complex(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        _host_read(".item()")
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        _host_read(".tolist()")
        return self.view(np.ndarray).tolist()

    def tobytes(self, order: str = "C") -> bytes:
        _host_read(".tobytes()")
        return self.view(np.ndarray).tobytes(order)

    def __repr__(self) -> str:
        _host_read("repr()")
        return repr(self.view(np.ndarray))

    def __str__(self) -> str:
        _host_read("str()")
        return str(self.view(np.ndarray))

    def __format__(self, spec: str) -> str:
        _host_read("format()")
        return format(self.view(np.ndarray), spec)

    def __iter__(self) -> Any:
        # NumPy's own iterator hands out host scalars for a 1-D array; CuPy's yields 0-d arrays
        return (self[i] for i in range(len(self)))

    def __gpunn_to_host__(self) -> np.ndarray:
        """What gpunn.backend.to_host reads: the memory as a plain host array (no copy)."""
        _host_read("to_host()")
        return self.view(np.ndarray)

    def __reduce__(self) -> Any:
        _host_read("pickling")
        return super().__reduce__()


def _is_element(key: Any, ndim: int) -> bool:
    """Whether `key` picks one element: ndim plain ints (NumPy would return a host scalar)."""
    items = key if isinstance(key, tuple) else (key,)
    return ndim > 0 and len(items) == ndim and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)) for k in items)


def _is_basic(key: Any) -> bool:
    """Whether `key` is basic indexing (ints, slices, Ellipsis, None): it gives a view, no op."""
    items = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, slice)
               or (isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))) for k in items)


def _view_method(name: str) -> Callable[..., Any]:
    """A method that gives a view when it can (reshape, ravel, ...): the view is NumPy's own, with
    .base this array; a copy (a strided array reshaped) is recorded as one op."""
    base = getattr(np.ndarray, name)

    def method(self: DeviceArray, *args: Any, **kwargs: Any) -> Any:
        result = base(self, *args, **kwargs)
        if isinstance(result, np.ndarray) and _root(result) is _root(self):
            return result
        plain, pargs, pkw = self.view(np.ndarray), _plain(args), _plain(kwargs)
        return _run(f"ndarray.{name}()", lambda: base(plain, *pargs, **pkw), (self, args, kwargs), [])

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


def _method(name: str, host_read: bool = False, writes_self: bool = False,
            data_dependent: bool = False) -> Callable[..., Any]:
    """A DeviceArray method that computes with NumPy's own on plain views, recorded as one op."""
    base = getattr(np.ndarray, name)

    def method(self: DeviceArray, *args: Any, **kwargs: Any) -> Any:
        what = f"ndarray.{name}()"
        if data_dependent and active() is not None:
            raise _refuse(what, "gives a shape that depends on the data (the host must read it)")
        if host_read:
            _host_read(what)
        plain, pargs, pkw = self.view(np.ndarray), _plain(args), _plain(kwargs)
        writes = _arrays(pkw.get("out")) + ([plain] if writes_self else [])
        return _run(what, lambda: base(plain, *pargs, **pkw), (self, args, kwargs), writes, _given_out(kwargs))

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


# Methods NumPy implements in C without dispatching: each becomes one recorded op.
for _name in ("copy", "astype", "argmax", "argmin", "sum", "mean", "max", "min", "prod", "any", "all", "var", "std",
              "cumsum", "cumprod", "clip", "round", "take", "repeat", "flatten", "trace", "argsort", "dot", "ptp", "conj", "searchsorted", "choose",
              "compress", "argpartition"):
    if hasattr(np.ndarray, _name):
        setattr(DeviceArray, _name, _method(_name))
for _name in ("ravel", "reshape", "transpose", "swapaxes", "squeeze", "diagonal"):
    setattr(DeviceArray, _name, _view_method(_name))
for _name in ("fill", "sort", "put", "partition", "itemset", "setfield", "resize"):
    if hasattr(np.ndarray, _name):
        setattr(DeviceArray, _name, _method(_name, writes_self=True))
setattr(DeviceArray, "nonzero", _method("nonzero", data_dependent=True))
DeviceArray.__copy__ = _method("__copy__")  # type: ignore[method-assign]
DeviceArray.__deepcopy__ = _method("__deepcopy__")  # type: ignore[method-assign]

#: NumPy functions whose output shape depends on the data: the host must read a count
_DATA_DEPENDENT = frozenset({"nonzero", "argwhere", "flatnonzero", "unique", "extract", "compress", "trim_zeros",
                             "unique_values", "unique_counts", "unique_inverse", "unique_all"})
#: NumPy functions that hand device data to the host
_HOST_READS = frozenset({"save", "savez", "savez_compressed", "savetxt", "array2string", "array_repr", "array_str",
                         "tofile", "array_equal", "array_equiv", "allclose"})
#: NumPy functions that write into their first argument
_WRITES_FIRST = frozenset({"copyto", "put", "place", "putmask", "fill_diagonal", "put_along_axis"})


# -- the array module ---------------------------------------------------------------------------
#: functions that allocate from shapes and scalars (capture: pool memory plus a fill kernel)
_CREATE = frozenset({"empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like", "full_like", "arange",
                     "eye", "identity", "linspace", "logspace", "tri"})
#: functions that may copy host data to the device
_CONVERT = frozenset({"asarray", "array", "ascontiguousarray", "asanyarray", "asfortranarray", "frombuffer", "fromiter",
                      "copy", "require"})


def _creation(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def create(*args: Any, **kwargs: Any) -> Any:
        pargs, pkw = _plain(args), _plain(kwargs)
        # *_like take a device array as their template: its shape, not its values
        return _run(f"np.{name}", lambda: fn(*pargs, **pkw), (), [])
    create.__name__ = name
    create.__doc__ = fn.__doc__
    return create


def _conversion(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def convert(obj: Any = None, *args: Any, **kwargs: Any) -> Any:
        if active() is not None and not isinstance(obj, DeviceArray):
            raise _refuse(f"np.{name}", f"of a host {type(obj).__name__} copies host data to the device; make it "
                          "before the step, or use a Python scalar as the operand")
        pobj, pargs, pkw = _plain(obj), _plain(args), _plain(kwargs)
        return _run(f"np.{name}", lambda: fn(pobj, *pargs, **pkw), (obj,), [])
    convert.__name__ = name
    convert.__doc__ = fn.__doc__
    return convert


def _function(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)  # with a DeviceArray among the arguments, NumPy dispatches to it
        if type(result) is np.ndarray:  # computed from host values only: it becomes device memory
            return _run(f"np.{name}", lambda: result if active() is None else fn(*_plain(args), **_plain(kwargs)),
                        (args, kwargs), [])
        return result
    call.__name__ = name
    call.__doc__ = fn.__doc__
    return call


class _DeviceNumpy(types.ModuleType):
    """`numpy` for the emulated backend: creation and conversion give DeviceArrays (see the module
    docstring); ufuncs, types, constants and submodules are NumPy's own."""

    ndarray = np.ndarray  # launchers accept host arrays too, eagerly (their tests pass plain NumPy arrays)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(np, name)
        if name in _CREATE:
            attr = _creation(attr, name)
        elif name in _CONVERT:
            attr = _conversion(attr, name)
        elif (callable(attr) and not isinstance(attr, (type, np.ufunc, types.ModuleType))
              and not name.startswith("_")):
            attr = _function(attr, name)
        setattr(self, name, attr)
        return attr


device_numpy = _DeviceNumpy("numpy", "NumPy whose arrays stand for the emulated GPU's memory (gpunn.emu.capture).")


# -- recording and replay -----------------------------------------------------------------------
class _Op:
    __slots__ = ("what", "call", "fresh", "several")

    def __init__(self, what: str, call: Callable[[], Any], fresh: list[tuple[int, np.ndarray]], several: bool):
        self.what, self.call, self.fresh, self.several = what, call, fresh, several

    def run(self) -> None:
        result = self.call()
        for i, buf in self.fresh:
            buf[...] = result[i] if self.several else result


class _Launch:
    __slots__ = ("what", "call")

    def __init__(self, what: str, call: Callable[[], None]):
        self.what, self.call = what, call

    def run(self) -> None:
        self.call()


class Recorder:
    """One capture: the recorded ops, the pool they allocated, and the pre-capture contents of the
    memory they wrote (restored when the capture ends)."""

    def __init__(self) -> None:
        self.entries: list[_Op | _Launch] = []
        self._saved: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pool: dict[int, np.ndarray] = {}

    def before_write(self, arrays: list[np.ndarray]) -> None:
        """Keep the pre-capture contents of memory that existed before the capture and is about to
        be written."""
        for a in arrays:
            root = _root(a.view(np.ndarray) if isinstance(a, DeviceArray) else a)
            key = id(root)
            if key not in self._pool and key not in self._saved:
                self._saved[key] = (root, root.copy())

    def add_op(self, what: str, call: Callable[[], Any], fresh: list[tuple[int, np.ndarray]], several: bool) -> None:
        for _, buf in fresh:
            root = _root(buf)
            self._pool[id(root)] = root
        self.entries.append(_Op(what, call, fresh, several))

    def add_launch(self, what: str, call: Callable[[], None], writes: list[np.ndarray],
                   reads: list[np.ndarray]) -> None:
        for a in reads + writes:
            if not isinstance(a, DeviceArray):
                raise _refuse(what, f"is given a host NumPy array (shape {a.shape}, dtype {a.dtype}) as a pointer: "
                              "a kernel reads device memory; put the data on the device before the step")
        self.before_write(writes)
        self.entries.append(_Launch(what, call))

    def restore(self) -> None:
        """Put back what the recorded ops changed in memory older than the capture."""
        for root, saved in self._saved.values():
            root[...] = saved
        self._saved.clear()

    def pool(self) -> list[np.ndarray]:
        return list(self._pool.values())


class Graph:
    """A recorded step: `replay()` reruns its ops and kernel launches, in order, on the same memory."""

    def __init__(self, entries: list[_Op | _Launch], pool: list[np.ndarray], keep: Any) -> None:
        self._entries = entries
        self._pool = pool  # the capture's private pool, alive as long as the graph
        self._keep = keep
        self.launches = sum(isinstance(e, _Launch) for e in entries)
        self.ops = len(entries) - self.launches

    def replay(self) -> None:
        if active() is not None:
            raise GraphCaptureError("Graph.replay: a graph cannot be replayed inside another capture")
        for entry in self._entries:
            entry.run()

    def describe(self) -> list[str]:
        """What the graph holds, one line per node, in order (for debugging a mismatch)."""
        return [e.what for e in self._entries]

    def __repr__(self) -> str:
        return f"<gpunn.emu.capture.Graph: {self.launches} kernel launches, {self.ops} array ops>"


def record(body: Callable[[], Any]) -> tuple[Graph, Any]:
    """Capture `body()` (see the module docstring): returns (graph, body's result). The memory
    that existed before is left as it was; what `body` allocated is the graph's pool."""
    if active() is not None:
        raise GraphCaptureError("capture: a capture is already under way on this thread; captures do not nest")
    rec = Recorder()
    _state.recorder = rec
    try:
        result = body()
    finally:
        _state.recorder = None
        rec.restore()
    return Graph(rec.entries, rec.pool(), result), result
