"""Optimizer base: trainable parameters packed into one flat data buffer and one flat grad buffer.

On first use (`step`, `zero_grad`, `state_dict`, ...) the trainable parameters are copied into a
flat data vector and a flat grad vector, and each `Parameter.data` / `.grad` is rebound to a view
into them, values preserved. Layers keep working through the views, and an update is then a few
whole-buffer ops, or one fused kernel launch, instead of a loop over parameters.

Subclasses declare their moment buffers (`_state_names`) and implement `_update(g)`, where `g` is
the flat gradient with coupled weight decay already folded in (into scratch: `.grad` itself is not
changed). Nothing allocates per step: moments and scratch are made once, at packing time.

Binding: an optimizer may be built without parameters, Keras-style (`Adam(learning_rate=1e-3)`);
it is then unbound (`bound` is False) until `bind(model_or_params)` gives it its parameters, once.
`model.compile(optimizer=Adam(...))` binds it to the model. Built PyTorch-style, on parameters or a
model (`Adam(model.parameters(), lr=1e-3)`, `Adam(model)`), it is bound from the start.

Learning rate: `lr` and `learning_rate` are the same argument (PyTorch's and Keras's name); give
one. `opt.lr` and `opt.learning_rate` read and write the same value.

Placement: an optimizer holds a backend (`optimizer.backend`), where its flat buffers live and
every update runs. Over a model or layer (`Adam(model)`, as compile builds it) it is the model's,
and follows it: after `model.to(name)` (which moves the compiled optimizer at once) the buffers
and moments are moved, values kept, at the next use. Over a list of Parameters it is the backend
current at construction; a model's to() moves it too when it is that model's optimizer.
Constraints are applied with the optimizer's backend current.

Device scalars (a step captured as a CUDA graph, then replayed without Python, repeats every
scalar argument as it was at capture): whatever changes from step to step lives in device memory,
in `_scalars`, a float64 array allocated at packing time on the optimizer's backend: slot 0 the
lr, slot 1 the step count (1-based, after this step's increment), slot 2 clipnorm's coefficient,
then the subclass's `_scalar_names` (Nadam's mu_product, per-step bias corrections...). A step is
two halves: `prepare_step()` on the host, outside a captured region (packing, resync, the lr
written to slot 0 when it changed, the host mirror `step_count` advanced; it never reads the
device), and `apply_step()`, the device work a graph captures (the step slot incremented, the
per-step values computed from the slots on the device, clipping, decay, the update,
constraints; no host read, no host-to-device copy, no allocation that outlives it). `step()` is
the two in a row. Setting `step_count` (load_state_dict, a broadcast) writes slot 1 too.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gpunn._checks import is_real, real_arg
from gpunn.backend import Backend, get_backend, to_host, use_backend
from gpunn.backend.base import native_byte_order
from gpunn.backend.ops.cast import is_half
from gpunn.errors import DistributedError
from gpunn.parameter import Parameter


def _on(backend: Backend, a: Any) -> Any:
    """`a` (any backend's array) as an array of `backend`, in native byte order."""
    return backend.asarray(a if backend.is_native(a) else to_host(a))


_LR = "a finite float >= 0"  # how an lr argument is worded


def one_name(value: Any, name: str, alias_value: Any, alias: str, where: str) -> tuple[Any, str]:
    """One setting under two names (PyTorch's and Keras's habits): (the value given, the name it
    was given under), (None, name) when neither; both at once is an error naming them."""
    if value is not None and alias_value is not None:
        raise ValueError(f"{where}: arguments '{name}' and '{alias}' are the same setting; give one, got "
                         f"{name}={value!r} and {alias}={alias_value!r}")
    return (alias_value, alias) if alias_value is not None else (value, name)


def resolve_lr(lr: Any, learning_rate: Any, default: float, where: str) -> float:
    """The learning rate from `lr` or `learning_rate`, `default` when neither is given."""
    value, name = one_name(lr, "lr", learning_rate, "learning_rate", where)
    return real_arg(default if value is None else value, name, where, 0, want=_LR, type_error=True)


class Optimizer:
    """Base class. `params`: a list of `Parameter` (e.g. `model.parameters()`), or a layer/model
    with `.parameters()` (collected lazily on first use, so a model may be built after this), or
    None: an unbound optimizer, bound later by `bind` (or by `compile`).

    - `lr` (or `learning_rate`, the same argument under Keras's name): the step size; None takes
      the class's documented default (`default_lr`).
    - `weight_decay`: coupled L2, `g + weight_decay * param` (AdamW overrides it with decoupled decay).
    - `clipnorm` / `clipvalue`: clip the gradient by global norm / by value at the start of each step.
    - `constraints`: (param, constraint) pairs; after each step `constraint(param.data)` is called and
      must modify the array in place (e.g. a max-norm projection). A model that has a
      `constraints()` method contributes its pairs too.
    """

    #: names of the per-element state buffers (moments) a subclass keeps; saved by state_dict
    _state_names: tuple[str, ...] = ()
    #: scratch vectors (flat-sized) a subclass needs besides the weight-decay one
    _scratch_count: int = 0
    #: whether the base folds weight_decay * param into the gradient (Adam's fused step does its own)
    _coupled_decay: bool = True
    #: the learning rate when neither `lr` nor `learning_rate` is given (each subclass documents its own)
    default_lr: float = 0.01
    #: data parallelism: the GradientSync that DistributedOptimizer installs (gpunn/optim/distributed.py)
    grad_sync: Any = None
    #: True while a mixed-precision step has the parameters bound to their 16-bit copies
    #: (gpunn/train/mixed_precision.py): host-side calls that would re-attach them refuse then
    _swapped: bool = False

    def __init__(self, params: Any = None, lr: float | None = None, weight_decay: float = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 constraints: Iterable[tuple[Parameter, Callable]] | None = None, *,
                 learning_rate: float | None = None) -> None:
        where = type(self).__name__
        self._where = where
        self._lr = resolve_lr(lr, learning_rate, self.default_lr, where)
        self.weight_decay = real_arg(weight_decay, "weight_decay", where, 0.0, type_error=True)
        self.clipnorm = None if clipnorm is None else real_arg(clipnorm, "clipnorm", where, 0, lo_open=True,
                                                               type_error=True)
        self.clipvalue = None if clipvalue is None else real_arg(clipvalue, "clipvalue", where, 0, lo_open=True,
                                                                 type_error=True)
        self._source: Any = None
        self._given: list[Parameter] | None = None
        self._constraints = list(constraints) if constraints is not None else []
        self._check_constraints(self._constraints)
        self._backend: Backend = get_backend()
        self._scalars: Any = None  # device scalars, made by _pack (see the module docstring)
        self._step_count = 0
        self._step_unsure = False  # True after a device-side skippable step: step_count re-reads the slot
        self._skip_backup: list[Any] = []  # what a skippable step saves and restores (apply_step_mixed)
        if params is not None:
            self._attach(params, "params")
        self.step_count = 0
        self.params: list[Parameter] = []
        self._flat_data: Any = None
        self._flat_grad: Any = None
        self._data_views: list[Any] = []
        self._grad_views: list[Any] = []
        self._state: dict[str, Any] = {}
        self._scratch: list[Any] = []
        self._wd_buf: Any = None
        self._scalars_t: Any = None
        self._slot_views: dict[str, Any] = {}
        self._slot_views_t: dict[str, Any] = {}
        self._lr_written: float | None = None

    # -- binding ------------------------------------------------------------------------------
    def _attach(self, params: Any, label: str) -> None:
        """Take `params` (a model, a layer, a Parameter or a list of them) as this optimizer's."""
        where = self._where
        if hasattr(params, "parameters") and callable(params.parameters):
            self._source = params  # a model: collect on first use, after it has been built
        else:
            if isinstance(params, Parameter):
                params = [params]
            try:
                given = list(params)
            except TypeError:
                hint = ""
                if is_real(params, numpy=True):
                    # Keras habit: Adam(0.001). The first argument is the parameters, as in PyTorch
                    hint = (f"; to set the learning rate pass learning_rate={params!r} (or lr=), and the "
                            "parameters first or not at all (compile binds them)")
                raise TypeError(f"{where}: argument '{label}' must be a list of Parameter or a model with "
                                f".parameters(), got {type(params).__name__}{hint}") from None
            self._given = self._validate_params(given)
        owner = getattr(self._source, "backend", None)
        # the model's backend (followed later, see _follow_source), else the current one
        self._backend = owner if isinstance(owner, Backend) else get_backend()

    @property
    def bound(self) -> bool:
        """Whether the optimizer has its parameters (a model or a list), from construction or `bind`."""
        return self._source is not None or self._given is not None

    def bind(self, model_or_params: Any) -> Optimizer:
        """Give an optimizer built without parameters its parameters: a model or layer (collected
        on first use, so it may still be unbuilt) or a list of Parameter. Binding happens once;
        binding again to the same model (or the same parameters) is a no-op, to others an error.
        Returns the optimizer."""
        where = f"{self._where}.bind"
        if model_or_params is None:
            raise TypeError(f"{where}: argument 'model_or_params' must be a model or a list of Parameter, got None")
        if self.bound:
            if self._is_bound_to(model_or_params):
                return self
            raise ValueError(f"{where}: this optimizer is already bound to other parameters; an optimizer "
                             "updates one set of parameters: build a new one for this model")
        self._attach(model_or_params, "model_or_params")
        return self

    def _is_bound_to(self, model_or_params: Any) -> bool:
        if self._source is not None:
            return model_or_params is self._source
        other = model_or_params
        if hasattr(other, "parameters") and callable(other.parameters):
            other = other.parameters()  # bound to model.parameters(): the model is the same parameters
        elif isinstance(other, Parameter):
            other = [other]
        try:
            ids = [id(p) for p in other]
        except TypeError:
            return False
        return ids == [id(p) for p in self._given or []]

    def _require_bound(self, where: str) -> None:
        if not self.bound:
            raise RuntimeError(f"{where}: this optimizer has no parameters yet; pass it to "
                               f"model.compile(optimizer=...) or call bind(model) first")

    # -- placement ----------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """Where the flat buffers and moments live and every update runs (see the module docstring)."""
        return self._backend

    def _follow_source(self) -> None:
        """Over a model: move to the model's backend when it has moved since (model.to)."""
        owner = getattr(self._source, "backend", None)
        if isinstance(owner, Backend) and owner is not self._backend:
            self.move_to(owner)

    def move_to(self, backend: Backend) -> None:
        """Make `backend` this optimizer's: the flat buffers are re-made there from the parameters'
        current values (the parameters rebound to views into them) and the moments copied over,
        so the next step continues exactly. Before packing, only the owner changes."""
        if self._flat_data is None:
            self._backend = backend
            return
        self._check_views(f"{self._where}.to")
        state = {k: to_host(v) for k, v in self._state.items()}
        scalars = np.array(to_host(self._scalars), copy=True)  # mu_product and the like
        self._backend = backend
        self._pack(self.params)
        for k, host in state.items():
            self._state[k][...] = backend.asarray(host)
        backend.host_to_device(self._scalars, scalars)
        self._lr_written = float(scalars[0])  # what the device holds: prepare_step rewrites it if lr changed
        self._write_step_slot()

    # -- the step count and the device scalars -------------------------------------------------
    @property
    def step_count(self) -> int:
        """Updates applied so far (the host mirror of the device step slot). After fp16 steps that
        the device may have skipped (apply_step_mixed), the slot is read back once, here."""
        if self._step_unsure and self._scalars is not None and not self._backend.capturing:
            self._step_count = int(round(float(to_host(self._slot_views["step"])[0])))
            self._step_unsure = False
        return self._step_count

    @step_count.setter
    def step_count(self, value: int) -> None:
        # a restore or a broadcast: the device slot must follow, or the next bias corrections would be off
        self._step_count = int(value)
        self._write_step_slot()

    def _write_step_slot(self) -> None:
        self._step_unsure = False
        if self._scalars is not None:
            self._backend.host_to_device(self._slot_views["step"], float(self._step_count))

    #: the base's device-scalar slots, in order (see the module docstring)
    _BASE_SLOTS: tuple[str, ...] = ("lr", "step", "clip")
    #: float64 device-scalar slots a subclass adds after the base ones
    _scalar_names: tuple[str, ...] = ()

    def _initial_scalars(self) -> dict[str, float]:
        """Hook: initial values of the subclass's slots (default 0), written at packing time."""
        return {}

    def _update_scalars(self) -> None:
        """Hook, device side: compute this step's derived values into the subclass's slots from
        `self._slot_views` (float64, after the step slot was incremented), with xp ops only."""

    def _slot_t(self, name: str) -> Any:
        """The 1-element view of slot `name` in the parameter dtype (refreshed each apply_step)."""
        return self._slot_views_t[name]

    # -- hyper-parameters ---------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate (also readable and writable as `learning_rate`)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = real_arg(value, "lr", f"{self._where}.lr", 0, want=_LR, type_error=True)

    @property
    def learning_rate(self) -> float:
        """Keras's name for `lr`: the same value."""
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._lr = real_arg(value, "learning_rate", f"{self._where}.learning_rate", 0, want=_LR, type_error=True)

    def hyperparams(self) -> dict[str, Any]:
        """The scalar settings saved in state_dict (subclasses add theirs)."""
        return {"lr": self._lr, "weight_decay": self.weight_decay}

    # -- parameters and flat buffers ----------------------------------------------------------
    def _validate_params(self, given: list[Any]) -> list[Parameter]:
        where = self._where
        if not given:
            raise ValueError(f"{where}: argument 'params' is an empty parameter list; pass model.parameters() "
                             "after the model is built, or pass the model itself")
        seen: set[int] = set()
        for i, p in enumerate(given):
            if not isinstance(p, Parameter):
                raise TypeError(f"{where}: argument 'params[{i}]' must be a gpunn.Parameter, got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"{where}: argument 'params' lists parameter {p.name!r} twice")
            seen.add(id(p))
            self._check_param(p, f"params[{i}]")
        return given

    def _check_param(self, p: Parameter, label: str) -> None:
        where = self._where
        if tuple(p.grad.shape) != tuple(p.data.shape):
            raise ValueError(f"{where}: argument '{label}' ({p.name!r}) has grad shape {tuple(p.grad.shape)}, "
                             f"expected its data shape {tuple(p.data.shape)}")
        if np.dtype(p.data.dtype).kind != "f":
            raise TypeError(f"{where}: argument '{label}' ({p.name!r}) must hold floating-point data, "
                            f"got dtype {p.data.dtype}")

    def _check_constraints(self, pairs: list[Any]) -> None:
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], Parameter)
                    and callable(pair[1])):
                raise TypeError(f"{self._where}: argument 'constraints[{i}]' must be a (Parameter, callable) pair, "
                                f"got {pair!r}")

    def _ensure_packed(self, where: str | None = None) -> None:
        self._require_bound(where or self._where)
        self._follow_source()
        if self._flat_data is not None:
            return
        if self._given is not None:
            all_params = self._given
        else:
            all_params = self._validate_params(list(self._source.parameters()))
            model_constraints = getattr(self._source, "constraints", None)
            if callable(model_constraints):
                extra = list(model_constraints())
                self._check_constraints(extra)
                self._constraints = extra + self._constraints
        params = [p for p in all_params if p.trainable]
        if not params:
            raise ValueError(f"{self._where}: argument 'params' has no trainable parameters "
                             f"({len(all_params)} given, all frozen)")
        # native byte order: '>f4' parameters share the one buffer with '<f4' ones, and the fused
        # kernels and CuPy only handle native order (the values are swapped once, while packing)
        dtypes = {np.dtype(p.data.dtype).newbyteorder("=") for p in params}
        if len(dtypes) != 1:
            raise TypeError(f"{self._where}: argument 'params' must share one dtype to share a flat buffer, "
                            f"got {sorted(str(d) for d in dtypes)}")
        self._pack(params, dtypes.pop())

    def _pack(self, params: list[Parameter], dtype: Any = None) -> None:
        """Copy `params` (values from any backend) into fresh flat buffers on this optimizer's
        backend, rebind their .data/.grad to views into them, and make zeroed moments and scratch."""
        backend = self._backend
        xp = backend.xp
        if dtype is None:
            dtype = np.dtype(self._flat_data.dtype)
        total = sum(int(p.data.size) for p in params)
        flat_data = xp.empty(total, dtype=dtype)
        flat_grad = xp.empty(total, dtype=dtype)
        data_views, grad_views = [], []
        offset = 0
        for p in params:
            n = int(p.data.size)
            dv = flat_data[offset:offset + n].reshape(p.data.shape)
            gv = flat_grad[offset:offset + n].reshape(p.data.shape)
            dv[...] = _on(backend, p.data)
            gv[...] = _on(backend, p.grad)
            p.data, p.grad = dv, gv
            data_views.append(dv)
            grad_views.append(gv)
            offset += n
        self.params = params
        self._skip_backup = []
        self._flat_data, self._flat_grad = flat_data, flat_grad
        self._data_views, self._grad_views = data_views, grad_views
        self._state = {name: xp.zeros(total, dtype=dtype) for name in self._state_names}
        self._scratch = [xp.empty(total, dtype=dtype) for _ in range(self._scratch_count)]
        if self.weight_decay and self._coupled_decay:
            self._wd_buf = xp.empty(total, dtype=dtype)
        # the device scalars, made here once: a captured step must not allocate persistent state
        names = self._BASE_SLOTS + tuple(self._scalar_names)
        self._scalars = xp.zeros(len(names), dtype=np.float64)
        self._scalars_t = xp.zeros(len(names), dtype=dtype)
        self._slot_views = {n: self._scalars[i:i + 1] for i, n in enumerate(names)}
        self._slot_views_t = {n: self._scalars_t[i:i + 1] for i, n in enumerate(names)}
        initial = {**self._initial_scalars(), "lr": self._lr, "step": float(self._step_count)}
        backend.host_to_device(self._scalars, [float(initial.get(n, 0.0)) for n in names])
        self._lr_written = self._lr
        self._init_state()

    def _init_state(self) -> None:
        """Hook: fill state buffers with non-zero initial values (e.g. Adagrad's accumulator)."""

    def _check_views(self, where: str) -> None:
        """Raise if a parameter's .data/.grad was replaced by an array of another shape."""
        for i, p in enumerate(self.params):
            if p.data is not self._data_views[i] and tuple(p.data.shape) != tuple(self._data_views[i].shape):
                raise ValueError(f"{where}: parameter {p.name!r} data was replaced by one of shape "
                                 f"{tuple(p.data.shape)}, expected {tuple(self._data_views[i].shape)}")
            if p.grad is not self._grad_views[i] and tuple(p.grad.shape) != tuple(self._grad_views[i].shape):
                raise ValueError(f"{where}: parameter {p.name!r} has grad shape {tuple(p.grad.shape)}, "
                                 f"expected its data shape {tuple(self._grad_views[i].shape)}")

    def _resync(self) -> None:
        """Re-attach parameters whose .data/.grad was rebound by someone else (copying the values in,
        from any backend)."""
        if self._swapped:
            raise RuntimeError(f"{self._where}: zero_grad(), step() and the clipping calls run outside a mixed-precision "
                               "autocast block (the parameters hold their 16-bit copies inside it): call them before "
                               "or after the block")
        self._check_views(f"{self._where}.step")
        backend = self._backend
        for i, p in enumerate(self.params):
            if p.data is not self._data_views[i]:
                self._data_views[i][...] = _on(backend, p.data)
                p.data = self._data_views[i]
            if p.grad is not self._grad_views[i]:
                self._grad_views[i][...] = _on(backend, p.grad)
                p.grad = self._grad_views[i]

    @property
    def flat_data(self) -> Any:
        self._ensure_packed(f"{self._where}.flat_data")
        return self._flat_data

    @property
    def flat_grad(self) -> Any:
        self._ensure_packed(f"{self._where}.flat_grad")
        return self._flat_grad

    # -- the update ---------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Zero every trainable gradient: one fill of the flat grad buffer."""
        if self._flat_data is None and self._source is not None and not list(self._source.parameters()):
            return  # a model not built yet has no gradients to zero; packing waits for its first forward
        self._ensure_packed(f"{self._where}.zero_grad")
        self._resync()
        self._flat_grad.fill(0)
        if self.grad_sync is not None:
            self.grad_sync.begin_step()

    def step(self) -> None:
        """Apply one update from the current gradients, then the constraints: `prepare_step()`
        then `apply_step()`."""
        self.prepare_step()
        self.apply_step()

    def prepare_step(self) -> None:
        """The host half of a step, run outside a captured region: pack (first use), resync rebound
        parameters, check data-parallel readiness, write the current lr into the device lr slot
        (only when it changed since the last write), and advance the host mirror `step_count`.
        It never reads device memory."""
        where = f"{self._where}.step"
        self._ensure_packed(where)
        self._resync()
        if self.grad_sync is not None and not self.grad_sync.ready:
            raise DistributedError(f"{where}: data-parallel training needs the model built before "
                                   "DistributedOptimizer(...) is made (model.build(input_shape) or one forward), "
                                   "so that rank 0's weights reach every rank before the first step")
        if self._lr != self._lr_written:
            self._backend.host_to_device(self._slot_views["lr"], self._lr)
            self._lr_written = self._lr
        self._step_count += 1  # the host mirror only: apply_step increments the device slot

    def apply_step(self) -> None:
        """The device half of a step, what a CUDA graph captures: gradient averaging (data
        parallel), clipvalue, clipnorm (on the device), the device step increment, the per-step
        scalars, coupled weight decay, the update, the constraints. Every per-step value (lr,
        step, bias corrections) is read from `_scalars`; nothing is read back to the host, except
        the non-finite-norm check of clipnorm, which runs only when the backend is not capturing
        (under capture a NaN/inf gradient is not detected here: it propagates into the
        parameters). Call it after prepare_step()."""
        self._require_prepared("apply_step")
        self._apply(check_finite=True)

    def _require_prepared(self, name: str) -> None:
        if self._scalars is None:
            raise RuntimeError(f"{self._where}.{name}: call prepare_step() first (it packs the parameters "
                               "and writes the learning rate to the device)")

    def _apply(self, check_finite: bool) -> None:
        """apply_step's work; `check_finite` False skips clipnorm's eager non-finite check (a
        skippable mixed-precision step handles non-finite gradients itself)."""
        if self.grad_sync is not None:
            self.grad_sync.finish()  # the average of every rank's gradient, before clipping
        g = self._flat_grad
        backend = self._backend
        xp = backend.xp
        views = self._slot_views
        if self.clipvalue is not None:
            clip_flat_value(g, self.clipvalue, backend)
        if self.clipnorm is not None:
            try:
                clip_norm_coef(g, self.clipnorm, backend, views["clip"], check_finite)
            except FloatingPointError:
                self._step_count -= 1  # nothing was applied: host and device step counts stay equal
                raise
        step = views["step"]
        xp.add(step, 1.0, out=step)
        self._update_scalars()
        # one cast of every slot to the parameter dtype: the operands of the float32 ops below
        xp.copyto(self._scalars_t, self._scalars, casting="unsafe")
        if self.clipnorm is not None:
            g *= self._slot_views_t["clip"]
        if self._wd_buf is not None:
            # g + wd * param into scratch: the user's .grad is left as backward wrote it
            backend.xp.multiply(self._flat_data, self.weight_decay, out=self._wd_buf)
            self._wd_buf += g
            g = self._wd_buf
        self._update(g)
        self._apply_constraints()

    def _apply_constraints(self) -> None:
        if self._constraints:
            # constraints compute on the current backend: make it this optimizer's
            with use_backend(self._backend):
                for param, constraint in self._constraints:
                    constraint(param.data)

    def _update(self, g: Any) -> None:
        """Apply the update from the flat gradient `g`, with `self.backend`'s ops (never get_backend())."""
        raise NotImplementedError

    # -- mixed precision (gpunn/train/mixed_precision.py) ---------------------------------------
    def apply_step_mixed(self, half_grad: Any, inv_scale: Any = None, found_inf: Any = None) -> None:
        """The device half of a mixed-precision step (after prepare_step()). `half_grad`: the
        16-bit gradient (float16 or bfloat16) of the packed parameters, in the flat layout of this
        optimizer's buffers, as backward wrote it into the half copy's gradient.

        - bf16 (no loss scaling; `inv_scale` and `found_inf` None): the gradient is cast to the
          float32 flat gradient (exact), then apply_step() runs.
        - fp16: `inv_scale` (1-element float32, the reciprocal of the loss scale) and `found_inf`
          (1-element int32, zeroed by the caller once per step) given: the gradient is unscaled into
          the float32 flat gradient with the inf/NaN check (found_inf set when any value is not
          finite), and the update is skipped *on the device* when it is set: the parameters, the
          moments and the device scalars (the step count among them) are left as they were,
          with nothing read back to the host, so the step stays capturable. The host's step_count
          re-reads the device slot when next asked.

        Subclasses with a fused kernel (Adam) override this to unscale inside the update itself.
        After the call `param.grad` holds the float32 (unscaled) gradient, as after torch's unscale_."""
        self._check_mixed_args(half_grad, inv_scale, found_inf)
        backend = self._backend
        if found_inf is None:
            backend.cast_to_float(half_grad, out=self._flat_grad)
            self._apply(check_finite=True)
            return
        backend.unscale_into(half_grad, inv_scale, found_inf, out=self._flat_grad)
        self._apply_skippable(found_inf)

    def _check_mixed_args(self, half_grad: Any, inv_scale: Any, found_inf: Any) -> None:
        """apply_step_mixed's checks (prepared; a flat 16-bit gradient; inv_scale and found_inf together)."""
        self._require_prepared("apply_step_mixed")
        where = f"{self._where}.apply_step_mixed"
        total = int(self._flat_data.shape[0])
        if (inv_scale is None) != (found_inf is None):
            raise ValueError(f"{where}: arguments 'inv_scale' and 'found_inf' go together (fp16's loss scaling); "
                             f"give both or neither, got inv_scale={inv_scale!r} and found_inf={found_inf!r}")
        if not self._backend.is_native(half_grad) or tuple(half_grad.shape) != (total,) or not is_half(half_grad):
            raise ValueError(f"{where}: argument 'half_grad' must be a 1-D float16 or bfloat16 array of this "
                             f"optimizer's backend with {total} elements (the flat layout of its parameters), got "
                             f"{type(half_grad).__name__} of shape {tuple(getattr(half_grad, 'shape', ()))} and dtype "
                             f"{getattr(half_grad, 'dtype', None)}")

    def _apply_skippable(self, found_inf: Any) -> None:
        """apply_step, undone on the device when found_inf[0] != 0: the parameters, the moments and
        the scalars are copied aside first and copied back under the mask (two extra passes over
        them; an optimizer with a fused kernel avoids this by skipping inside its kernel)."""
        xp = self._backend.xp
        live = [self._flat_data, *self._state.values(), self._scalars]
        if len(self._skip_backup) != len(live) or any(b.shape != a.shape for b, a in zip(self._skip_backup, live)):
            self._skip_backup = [xp.empty_like(a) for a in live]  # made at the eager first step, not in a capture
        for saved, a in zip(self._skip_backup, live):
            xp.copyto(saved, a)
        self._apply(check_finite=False)
        skipped = found_inf != 0  # 1-element bool, broadcast over each buffer
        for saved, a in zip(self._skip_backup, live):
            xp.copyto(a, saved, where=skipped)
        self._step_unsure = True

    def clip_grad_norm(self, max_norm: float) -> float:
        """Scale all trainable gradients so their global L2 norm is at most `max_norm`; returns the norm before."""
        self._ensure_packed(f"{self._where}.clip_grad_norm")
        self._resync()
        return clip_flat_norm(self._flat_grad, real_arg(max_norm, "max_norm", f"{self._where}.clip_grad_norm", 0,
                                                        lo_open=True, type_error=True), self._backend)

    def clip_grad_value(self, clip_value: float) -> None:
        """Clamp every trainable gradient element into [-clip_value, clip_value]."""
        self._ensure_packed(f"{self._where}.clip_grad_value")
        self._resync()
        clip_flat_value(self._flat_grad,
                        real_arg(clip_value, "clip_value", f"{self._where}.clip_grad_value", 0, lo_open=True,
                                 type_error=True), self._backend)

    # -- state --------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, float]:
        """Scalar running state besides the step count (e.g. Nadam's mu_product)."""
        return {}

    def _load_extra_state(self, extra: dict[str, float]) -> None:
        """Hook for subclasses with scalar running state."""

    def state_dict(self) -> dict[str, Any]:
        """Step count, hyper-parameters, scalar state and moment buffers (host NumPy copies)."""
        self._ensure_packed(f"{self._where}.state_dict")
        return {
            "optimizer": type(self).__name__,
            "step": int(self.step_count),
            "hyperparams": dict(self.hyperparams()),
            "scalars": dict(self._extra_state()),
            "state": {k: np.array(to_host(v), copy=True) for k, v in self._state.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict saved; validates everything before changing anything."""
        where = f"{self._where}.load_state_dict"
        self._ensure_packed(where)
        if not isinstance(state, dict):
            raise TypeError(f"{where}: argument 'state' must be a dict from state_dict(), got {type(state).__name__}")
        missing = [k for k in ("optimizer", "step", "hyperparams", "scalars", "state") if k not in state]
        if missing:
            raise KeyError(f"{where}: argument 'state' is missing keys {missing}")
        if state["optimizer"] != type(self).__name__:
            raise ValueError(f"{where}: argument 'state' was saved by {state['optimizer']!r}, "
                             f"not {type(self).__name__!r}")
        buffers = state["state"]
        if set(buffers) != set(self._state):
            raise KeyError(f"{where}: argument 'state' buffers {sorted(buffers)} do not match {sorted(self._state)}")
        total = int(self._flat_data.shape[0])
        for k, arr in buffers.items():
            if tuple(np.shape(arr)) != (total,):
                raise ValueError(f"{where}: argument 'state[{k!r}]' must have shape ({total},) to match "
                                 f"the trainable parameters, got {tuple(np.shape(arr))}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"{where}: argument 'state[\"step\"]' must be an int >= 0, got {step!r}")
        hyper = dict(state["hyperparams"])
        if "lr" in hyper:
            real_arg(hyper["lr"], "state['hyperparams']['lr']", where, 0, want="a finite float >= 0", type_error=True)
        backend = self._backend
        for k, arr in buffers.items():
            self._state[k][...] = backend.asarray(native_byte_order(to_host(arr)), dtype=self._state[k].dtype)
        self.step_count = int(step)  # writes the device step slot too
        self._set_hyperparams(hyper)
        self._load_extra_state(dict(state["scalars"]))

    def _set_hyperparams(self, hyper: dict[str, Any]) -> None:
        for key, value in hyper.items():
            if key == "lr":
                self._lr = float(value)
            elif hasattr(self, key):
                setattr(self, key, type(getattr(self, key))(value))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.hyperparams().items())
        return f"{type(self).__name__}({settings})"


def clip_norm_coef(g: Any, max_norm: float, backend: Backend, out: Any, check_finite: bool = True) -> None:
    """clipnorm on the device: `out` (a 1-element float64 device array) gets
    min(max_norm / (||g|| + 1e-6), 1), computed from `squared_norm_device` without a host read;
    the caller scales g by it. Eagerly (the backend not capturing) a non-finite norm raises
    FloatingPointError, as clip_flat_norm does; under capture that check, a host read, is skipped,
    and so it is with check_finite=False."""
    xp = backend.xp
    ss = backend.squared_norm_device(g)
    if check_finite and not backend.capturing:
        norm = math.sqrt(float(to_host(ss).reshape(-1)[0]))
        if not math.isfinite(norm):
            raise FloatingPointError(f"clip_grad_norm: the gradient norm is {norm}; the gradients hold inf or NaN")
    xp.copyto(out, ss, casting="unsafe")  # float64 from here, as the host path computes the coefficient
    xp.sqrt(out, out=out)
    out += 1e-6
    xp.divide(float(max_norm), out, out=out)
    xp.minimum(out, 1.0, out=out)


def clip_flat_norm(g: Any, max_norm: float, backend: Backend) -> float:
    """Scale `g` in place so that its L2 norm is <= max_norm (PyTorch's 1e-6 guard); returns the old norm."""
    norm = backend.squared_norm(g) ** 0.5
    if not math.isfinite(norm):
        raise FloatingPointError(f"clip_grad_norm: the gradient norm is {norm}; the gradients hold inf or NaN")
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        g *= coef
    return norm


def clip_flat_value(g: Any, clip_value: float, backend: Backend | None = None) -> None:
    """Clamp `g` in place into [-clip_value, clip_value], with `backend`'s ops (default: the current one)."""
    (backend or get_backend()).xp.clip(g, -clip_value, clip_value, out=g)
