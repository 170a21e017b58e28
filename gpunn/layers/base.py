"""Layer: the base every layer derives from.

Contract: `build(input_shape)` creates parameters (shape excludes the batch axis; called
lazily by the first forward); `forward(x, training)` returns y and keeps what backward needs;
`backward(dy)` returns dx and *accumulates* into each `param.grad`. Layers are thin: shape
bookkeeping plus calls into backend ops, never a branch on the device.

Shared checks, so no layer repeats them: `_prepare` casts the input to the layer's dtype (float32
unless `dtype=`/`to_dtype` says float64; never the data's) in native byte order and holds it to a
declared `input_shape`; every subclass's backward checks dy against its forward's output shape
(see `Layer.__init_subclass__`).

Placement: a layer holds the backend it was built on (`layer.backend`: the current one -
`gpunn.use_backend(...)` / `set_backend` - at construction, as a PyTorch module keeps the device of
its parameters). `to(name)` moves its parameters and buffers, and its sublayers', and changes that
owner. Its forward, forward_fused, backward and build run with the owner current (whoever calls
them, from wherever), so what they call - backend ops, a kernel_regularizer, a sublayer built
lazily at build time - runs on, or is built on, the owner. A container's sublayers run on the
container's backend: one added (or wrapped) from another backend is moved onto it (`_adopt`).
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gpunn._checks import check_float_array, check_grad_shape, model_dtype
from gpunn.backend import Backend, backend_named, get_backend, is_foreign_array, to_host, use_backend
from gpunn.init import get_initializer
from gpunn.layers.symbolic import symbolic_call, symbolic_inputs
from gpunn.layers.tape import active_tape, restore_state, state_before
from gpunn.parameter import Parameter
from gpunn.precision import FLOAT32, autocast_dtype
from gpunn.random import host_rng

_budget = threading.local()  # elements that builds in this thread may still allocate, or unset


class AllocationBudgetError(ValueError):
    """A build would allocate more parameter or buffer elements than its budget allows."""


@contextlib.contextmanager
def allocation_budget(elements: int, where: str) -> Iterator[None]:
    """Cap the parameter and buffer elements that builds in this block may allocate, in this thread.

    A loader rebuilding a model from a file sets the cap to what the file can hold, so a config
    that declares Dense(units=10**9) fails before anything is allocated, not after."""
    previous = getattr(_budget, "state", None)
    _budget.state = [int(elements), where]
    try:
        yield
    finally:
        _budget.state = previous


def _charge(shape: tuple[int, ...], what: str) -> None:
    state = getattr(_budget, "state", None)
    if state is None:
        return
    need = math.prod(shape)
    if need > state[0]:
        raise AllocationBudgetError(f"{state[1]}: {what} of shape {shape} needs {need:,} elements, more than the "
                                    f"{state[0]:,} still allowed; the architecture does not match the data")
    state[0] -= need


def on_backend(backend: Backend, a: Any, dtype: Any = None) -> Any:
    """`a` (any backend's array, or a host one) as an array of `backend`, in native byte order and
    `dtype` when given; no copy when it already is one."""
    return backend.asarray(a if backend.is_native(a) else to_host(a), dtype=dtype)


def _on_owner(fn: Callable) -> Callable:
    """Wrap a forward, forward_fused, backward or build to run with the layer's own backend current,
    so everything it calls or builds (a regularizer, a sublayer made at build time) uses it too."""
    @functools.wraps(fn)
    def placed(self: Layer, *args: Any, **kwargs: Any) -> Any:
        backend = self.backend
        if get_backend() is backend:
            return fn(self, *args, **kwargs)
        with use_backend(backend):
            return fn(self, *args, **kwargs)
    placed._gpunn_wrapped = True  # type: ignore[attr-defined]
    return placed


def _walk(layer: Layer) -> Iterator[Layer]:
    yield layer
    for child in layer.children.values():
        yield from _walk(child)


def _recording_forward(fn: Callable) -> Callable:
    """Wrap a forward (or forward_fused) to remember the shape and dtype of what it returned,
    which backward's dy must have. Nested calls (a subclass's super().forward) record once."""
    @functools.wraps(fn)
    def forward(self: Layer, *args: Any, **kwargs: Any) -> Any:
        if self._in_forward:
            return fn(self, *args, **kwargs)
        self._in_forward = True
        try:
            y = fn(self, *args, **kwargs)
        finally:
            self._in_forward = False
        shape, dtype = getattr(y, "shape", None), getattr(y, "dtype", None)
        self._output_seen = (tuple(shape), np.dtype(dtype)) if shape is not None and dtype is not None else None
        for hook in self._forward_hooks:
            hook(self)
        return y
    forward._gpunn_wrapped = True  # type: ignore[attr-defined]
    return forward


def _checked_backward(fn: Callable) -> Callable:
    """Wrap a backward to check dy against the last forward's output shape, so a wrong dy is an
    error naming both shapes instead of a reshape or broadcast failure deep inside the layer.
    A dy of another float dtype (or byte order, or a host array) is cast to the output's, as
    forward casts its input to the layer's dtype."""
    @functools.wraps(fn)
    def backward(self: Layer, dy: Any, *args: Any, **kwargs: Any) -> Any:
        if self._in_backward:
            return fn(self, dy, *args, **kwargs)
        if self._output_seen is not None:
            shape, dtype = self._output_seen
            be = self.backend
            if is_foreign_array(dy):  # a torch/JAX gradient: imported as forward's inputs are
                dy = be.asarray(dy, where=f"{self.name}.backward")
            check_grad_shape(dy, shape, f"{self.name}.backward")
            if not be.is_native(dy) or dy.dtype != dtype:
                # a loss-scaled gradient cast to float16 may overflow: the scaler's inf check sees the inf
                with np.errstate(over="ignore"):
                    dy = on_backend(be, dy, dtype)
        self._in_backward = True
        try:
            dx = fn(self, dy, *args, **kwargs)
        finally:
            self._in_backward = False
        for hook in self._backward_hooks:
            hook(self)
        return dx
    backward._gpunn_wrapped = True  # type: ignore[attr-defined]
    return backward


class HookHandle:
    """What register_forward_hook / register_backward_hook return: remove() unregisters the hook."""

    def __init__(self, layer: Layer, attr: str, hook: Callable[[Layer], None]) -> None:
        self._layer, self._attr, self._hook = layer, attr, hook

    def remove(self) -> None:
        hooks = getattr(self._layer, self._attr)
        setattr(self._layer, self._attr, tuple(h for h in hooks if h is not self._hook))


class Layer:
    #: accepted input ranks (with the batch axis) and how to describe them in errors
    input_ndim: int | tuple[int, ...] | None = None
    input_layout: str = ""
    # what the forward/backward wrappers keep (see __init_subclass__); class defaults so a
    # subclass that forgets Layer.__init__ still gets them
    _output_seen: tuple[tuple[int, ...], np.dtype] | None = None
    _in_forward = False
    _in_backward = False
    _declared_shape: tuple[int, ...] | None = None
    _backend: Backend | None = None  # set by __init__; pinned on first use by a subclass that skips it
    #: whether the layer takes a list of inputs (the merge layers): forward(xs), backward -> list
    multi_input = False
    # called with the layer after each outermost forward / backward (register_*_hook); class-level
    # empty tuples so that layers without hooks pay one empty loop
    _forward_hooks: tuple[Callable[[Layer], None], ...] = ()
    _backward_hooks: tuple[Callable[[Layer], None], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every layer's backward checks dy against its forward's output shape, and every layer
        computes and builds on its own backend, in this one place: forward, forward_fused, backward
        and build defined by a subclass are wrapped here."""
        super().__init_subclass__(**kwargs)
        for name, wrap in (("forward", _recording_forward), ("forward_fused", _recording_forward),
                           ("backward", _checked_backward), ("build", None)):
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_gpunn_wrapped", False):
                setattr(cls, name, _on_owner(wrap(fn) if wrap is not None else fn))

    def __init__(self, input_shape: tuple[int, ...] | None = None, name: str | None = None, *,
                 dtype: Any = None) -> None:
        self.params: dict[str, Parameter] = {}
        self.buffers: dict[str, Any] = {}  # state that is saved but not trained (running stats)
        self.children: dict[str, Layer] = {}  # sublayers; their state is saved as "child.key"
        self.name = name or type(self).__name__
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape is not None else None
        # a declared input_shape is a contract: inputs of another shape are refused, never adopted
        self._declared_shape = self.input_shape
        self.output_shape: tuple[int, ...] | None = None
        self.built = False
        self._trainable = True
        self._backend = get_backend()  # the owner: where this layer's arrays live and its ops run
        # None: the backend's default (float32). Never taken from the data (see _as_input).
        self._dtype: np.dtype | None = None if dtype is None else model_dtype(dtype, "dtype", type(self).__name__)

    # -- building -----------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The backend this layer was built on (current at construction), or last moved to by to()."""
        backend = self._backend
        if backend is None:
            backend = self._backend = get_backend()
        return backend

    def to(self, backend_name: str) -> Layer:
        """Move parameters, gradients and buffers, this layer's and every sublayer's, to
        `backend_name` ("numpy", "emulated", "cupy") and make it their owner: every later call
        (forward, backward, build) runs there. A bad name raises and changes nothing. Run a
        forward after moving before the next backward (what forward kept is not moved).

        A model's to() (gpunn.Sequential) moves its optimizer's state too."""
        self._place(backend_named(backend_name, f"{self.name}.to"))
        return self

    def _place(self, backend: Backend) -> None:
        """Make `backend` the owner of this layer and its sublayers, moving their arrays to it
        (arrays it already holds natively, such as an optimizer's views moved before, stay)."""
        for layer in _walk(self):
            for p in layer.params.values():
                p.data = on_backend(backend, p.data)
                p.grad = on_backend(backend, p.grad)
            for k, v in list(layer.buffers.items()):
                layer.buffers[k] = on_backend(backend, v)
            layer._backend = backend

    def _adopt(self, child: Layer) -> Layer:
        """`child`, made to run on this layer's backend: a container's sublayers live where it does.
        One built on another backend is moved here (see _place); returns it."""
        if any(layer.backend is not self.backend for layer in _walk(child)):
            child._place(self.backend)
        return child

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create parameters for inputs of `input_shape` (no batch axis). Subclasses extend this."""
        shape = tuple(int(s) for s in input_shape)
        if self._declared_shape is not None and shape != self._declared_shape:
            raise ValueError(f"{self.name}.build: argument 'input_shape' {shape} differs from the declared "
                             f"input_shape={self._declared_shape}")
        self._inherit_dtype(self._dtype)
        self.input_shape = shape
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def add_param(self, name: str, shape: tuple[int, ...], initializer: Any, fans: tuple[int, int] | None = None,
                  trainable: bool = True) -> Parameter:
        init = get_initializer(initializer)
        _charge(tuple(shape), f"parameter {name!r} of {self.name}")
        host = init(tuple(shape), dtype=self.dtype, rng=host_rng(), fans=fans)
        param = Parameter(self.backend.asarray(host), name=name, trainable=trainable and self._trainable)
        self.params[name] = param
        return param

    def add_buffer(self, name: str, shape: tuple[int, ...], fill: float) -> Any:
        """A saved, untrained array (running statistics) of `shape` filled with `fill`."""
        _charge(tuple(shape), f"buffer {name!r} of {self.name}")
        self.buffers[name] = self.backend.xp.full(tuple(shape), fill, dtype=self.dtype)
        return self.buffers[name]

    @property
    def dtype(self) -> np.dtype:
        """What parameters, buffers and computations use: the `dtype=` given (or set by to_dtype, or
        inherited from the enclosing model), else the backend's default, float32."""
        return self._dtype if self._dtype is not None else self.backend.default_dtype

    #: False for layers that compute in float32 even inside a mixed-precision step (Softmax and
    #: LogSoftmax, as torch.autocast runs softmax in float32): their input is cast up, not down
    autocast: bool = True

    @property
    def compute_dtype(self) -> np.dtype:
        """What this layer's forward computes in: its dtype, except inside a mixed-precision step
        (gpunn.precision.autocast), where a float32 layer with `autocast` computes in the step's
        16-bit dtype, on the half copies of its weights."""
        dtype = self.dtype
        half = autocast_dtype()
        if half is None or dtype != FLOAT32 or not self.autocast:
            return dtype
        return half

    def _inherit_dtype(self, dtype: np.dtype | None) -> None:
        """Give sublayers that have no dtype of their own this layer's explicit one, recursively
        (a float64 model's Dense must not build a float32 activation)."""
        if dtype is None:
            return
        for child in self.children.values():
            if child._dtype is None:
                child._dtype = dtype
            child._inherit_dtype(child._dtype)

    def _as_input(self, x: Any, label: str) -> Any:
        """`x` validated, on this layer's backend (moved there from any other), in native byte
        order and in this layer's dtype.

        The dtype is the layer's, never the data's: float16 data would otherwise make a float16
        model, whose optimizer underflows (Adam's eps = 1e-8 is 0 in float16) and trains to NaN,
        and float64 data a model twice as slow. Such inputs are cast, as Keras does."""
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
        elif is_foreign_array(x):  # a torch/JAX tensor: in place when on this backend's device (DLPack)
            x = self.backend.asarray(x, where=label)
        check_float_array(x, "x", label, self.input_ndim, self.input_layout)
        dtype = self.compute_dtype
        if not self.backend.is_native(x) or x.dtype != dtype:  # '>f4' != '<f4': swapped here too
            x = on_backend(self.backend, x, dtype)  # from any backend (or the host) onto this layer's
        return x

    def _check_declared_shape(self, x: Any, label: str) -> None:
        declared = self._declared_shape
        if declared is not None and tuple(x.shape[1:]) != declared:
            raise ValueError(f"{label}: argument 'x' of shape {tuple(x.shape)} has per-sample shape "
                             f"{tuple(x.shape[1:])}, but input_shape={declared} was declared; pass inputs of shape "
                             f"(N, {', '.join(map(str, declared))}) or declare the shape of your data")

    def _prepare(self, x: Any, where: str = "forward") -> Any:
        """Validate the input of forward(), move it to the backend, and build on first use."""
        label = f"{self.name}.{where}"
        x = self._as_input(x, label)
        self._check_declared_shape(x, label)  # every call: shape-free layers would accept anything after build
        if not self.built:
            self.build(tuple(x.shape[1:]))
        else:
            self.check_built_shape(tuple(x.shape[1:]), label)
        return x

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        """Raise if an input of per-sample `shape` does not fit the built parameters."""
        if self.input_shape is not None and shape != self.input_shape:
            raise ValueError(f"{where}: argument 'x' must have per-sample shape {self.input_shape} as built, "
                             f"got {shape}")

    # -- computing ----------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError

    def fuses_with(self, nxt: Layer) -> bool:
        """Whether Sequential may run this layer and the next one, `nxt`, as one through
        forward_fused (whose backward() then includes nxt's). No layer fuses unless it says so."""
        return False

    def forward_fused(self, x: Any, nxt: Layer, training: bool = False) -> Any:
        """nxt.forward(self.forward(x)) in fewer passes; only called when fuses_with(nxt)."""
        raise NotImplementedError

    def __call__(self, x: Any, training: bool | None = None) -> Any:
        """`forward(x)`, or its record: on symbolic tensors (gpunn.Input and what layers return
        for them) a new symbolic tensor, with this layer built for their shapes (the functional
        API); inside a subclassed model's forward, the call recorded on its tape, so the model's
        backward runs this layer's (see gpunn.layers.tape). `training=None` means the recording
        model's mode, or inference outside one. Merge layers take a list of inputs."""
        if symbolic_inputs(x) is not None:
            return symbolic_call(self, x, self._symbolic_output_shape)
        tape = active_tape()
        if tape is not None:
            return tape.record(self, x, tape.training if training is None else bool(training))
        return self.forward(x, training=bool(training))

    def _symbolic_output_shape(self, input_shape: Any) -> tuple[int, ...]:
        """The per-sample output shape for inputs of `input_shape` (a list of shapes for a merge
        layer), building the layer on first use: what a call on symbolic tensors returns."""
        where = f"{self.name}.__call__"
        if self.multi_input:
            shape = [tuple(s) for s in input_shape]
        else:
            shape = tuple(input_shape)
            if self._declared_shape is not None and shape != self._declared_shape:
                raise ValueError(f"{where}: its input has per-sample shape {shape}, but input_shape="
                                 f"{self._declared_shape} was declared")
        if not self.built:
            self.build(shape)
            return tuple(self.output_shape)
        self.check_built_shape(shape, where)
        if shape == self._built_input():
            return tuple(self.output_shape)
        if self.multi_input:
            return tuple(self.compute_output_shape(shape))
        # built for another shape (a shape-free layer reused): one inference pass on a zero
        # sample is the only shape inference every layer, containers included, is sure to have;
        # what that pass keeps for backward is put back afterwards
        before = state_before([self])
        try:
            probe = self.backend.xp.zeros((1, *shape), dtype=self.dtype)
            return tuple(self.forward(probe, training=False).shape[1:])
        finally:
            restore_state([(layer, old) for layer, old in before])

    def _built_input(self) -> Any:
        shape = self.input_shape
        if shape is None:
            return None
        return [tuple(s) for s in shape] if self.multi_input else tuple(shape)

    def _need_cache(self, attr: str) -> Any:
        value = getattr(self, attr, None)
        if value is None:
            raise RuntimeError(f"{self.name}.backward: called before forward(); run forward first")
        return value

    # -- parameters and state -----------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        out = [(prefix + k, p) for k, p in self.params.items()]
        for cname, child in self.children.items():
            out += child.named_parameters(f"{prefix}{cname}.")
        return out

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def _named_state(self, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {prefix + k: p.data for k, p in self.params.items()}
        out.update({prefix + k: b for k, b in self.buffers.items()})
        for cname, child in self.children.items():
            out.update(child._named_state(f"{prefix}{cname}."))
        return out

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for p in self.params.values():
            p.trainable = self._trainable
        for child in self.children.values():
            child.trainable = value

    def constraints(self) -> list[tuple[Parameter, Any]]:
        """(parameter, constraint) pairs of this layer and its sublayers, for an optimizer to apply
        after each step (`p.data[...] = c(p.data)`, see gpunn.constraints.apply_constraints).
        A layer declares its own in `self.param_constraints`, a dict from param name to constraint."""
        own = getattr(self, "param_constraints", None) or {}
        out = [(self.params[k], c) for k, c in own.items() if k in self.params]
        for child in self.children.values():
            out += child.constraints()
        return out

    def sublayers(self) -> list[Layer]:
        """This layer and every layer below it, each once (a layer shared by two parents too),
        parents before their children: what PyTorch calls `modules()`."""
        seen: set[int] = set()
        return [layer for layer in _walk(self) if id(layer) not in seen and not seen.add(id(layer))]

    def register_forward_hook(self, hook: Callable[[Layer], None]) -> HookHandle:
        """Call `hook(layer)` after each forward of this layer (its outermost call, once per
        forward); returns a handle whose remove() unregisters it. Data parallelism counts forwards
        with it (gpunn.optim.DistributedOptimizer)."""
        return self._add_hook("_forward_hooks", hook, "register_forward_hook")

    def register_backward_hook(self, hook: Callable[[Layer], None]) -> HookHandle:
        """Call `hook(layer)` after each backward of this layer has returned - its parameters'
        gradients from that call are then complete; returns a handle whose remove() unregisters it.
        Data parallelism starts a gradient bucket's all-reduce from it, while backward goes on."""
        return self._add_hook("_backward_hooks", hook, "register_backward_hook")

    def _add_hook(self, attr: str, hook: Callable[[Layer], None], where: str) -> HookHandle:
        if not callable(hook):
            raise TypeError(f"{self.name}.{where}: argument 'hook' must be callable, got {type(hook).__name__}")
        setattr(self, attr, (*getattr(self, attr), hook))
        return HookHandle(self, attr, hook)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def count_params(self) -> int:
        return sum(p.size for p in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers (recursively) as host NumPy arrays, by dotted name."""
        return {k: np.array(to_host(v), copy=True) for k, v in self._named_state().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy values in place (optimizer views stay valid), onto this layer's backend from host
        arrays or any backend's. Validates everything before writing."""
        where = f"{self.name}.load_state_dict"
        if not self.built:
            raise RuntimeError(f"{where}: build the layer (or run one forward) before loading state")
        targets = self._named_state()
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            raise KeyError(f"{where}: argument 'state' keys do not match: missing {missing}, unexpected {unexpected}")
        for key, target in targets.items():
            value = state[key]
            if tuple(np.shape(value)) != tuple(target.shape):
                raise ValueError(f"{where}: argument 'state[{key!r}]' must have shape {tuple(target.shape)}, "
                                 f"got {tuple(np.shape(value))}")
        for key, target in targets.items():
            target[...] = on_backend(self.backend, state[key], target.dtype)

    def to_dtype(self, dtype: Any) -> Layer:
        """Cast parameters and buffers, recursively (e.g. to float64 for gradient checks)."""
        dtype = model_dtype(dtype, "dtype", f"{self.name}.to_dtype")
        self._dtype = dtype
        for p in self.params.values():
            p.data = p.data.astype(dtype)
            p.grad = p.grad.astype(dtype)
        self.buffers = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in self.buffers.items()}
        for child in self.children.values():
            child.to_dtype(dtype)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, output_shape={self.output_shape})"
