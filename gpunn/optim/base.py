"""Optimizer base: trainable parameters packed into one flat data buffer and one flat grad buffer.

On first use (`step`, `zero_grad`, `state_dict`, ...) the trainable parameters are copied into a
flat data vector and a flat grad vector, and each `Parameter.data` / `.grad` is rebound to a view
into them, values preserved. Layers keep working through the views, and an update is then a few
whole-buffer ops, or one fused kernel launch, instead of a loop over parameters.

Subclasses declare their moment buffers (`_state_names`) and implement `_update(g)`, where `g` is
the flat gradient with coupled weight decay already folded in (into scratch: `.grad` itself is not
changed). Nothing allocates per step: moments and scratch are made once, at packing time.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gpunn.backend import get_backend
from gpunn.backend.base import native_byte_order
from gpunn.parameter import Parameter


def check_lr(value: Any, where: str, name: str = "lr") -> float:
    """A finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: argument '{name}' must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{where}: argument '{name}' must be a finite float >= 0, got {value!r}")
    return value


def check_range(value: Any, name: str, where: str, lo: float, hi: float, hi_inclusive: bool = False) -> float:
    """A float in [lo, hi) (or [lo, hi] when hi_inclusive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: argument '{name}' must be a float, got {type(value).__name__}")
    value = float(value)
    ok = math.isfinite(value) and lo <= value and (value <= hi if hi_inclusive else value < hi)
    if not ok:
        bracket = "]" if hi_inclusive else ")"
        raise ValueError(f"{where}: argument '{name}' must be in [{lo}, {hi}{bracket}, got {value!r}")
    return value


def check_nonneg(value: Any, name: str, where: str) -> float:
    return check_range(value, name, where, 0.0, math.inf)


def _positive_eps(value: Any, name: str, where: str) -> float:
    value = check_nonneg(value, name, where)
    if value == 0.0:
        raise ValueError(f"{where}: argument '{name}' must be > 0, got 0.0")
    return value


class Optimizer:
    """Base class. `params`: a list of `Parameter` (e.g. `model.parameters()`), or a layer/model
    with `.parameters()` (collected lazily on first use, so a model may be built after this).

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

    def __init__(self, params: Any, lr: float, weight_decay: float = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None, constraints: Iterable[tuple[Parameter, Callable]] | None = None
                 ) -> None:
        where = type(self).__name__
        self._where = where
        self._lr = check_lr(lr, where)
        self.weight_decay = check_nonneg(weight_decay, "weight_decay", where)
        self.clipnorm = None if clipnorm is None else _positive_eps(clipnorm, "clipnorm", where)
        self.clipvalue = None if clipvalue is None else _positive_eps(clipvalue, "clipvalue", where)
        self._source: Any = None
        self._given: list[Parameter] | None = None
        if hasattr(params, "parameters") and callable(params.parameters):
            self._source = params  # a model: collect on first use, after it has been built
        else:
            if isinstance(params, Parameter):
                params = [params]
            try:
                given = list(params)
            except TypeError:
                raise TypeError(f"{where}: argument 'params' must be a list of Parameter or a model with "
                                f".parameters(), got {type(params).__name__}") from None
            self._given = self._validate_params(given)
        self._constraints = list(constraints) if constraints is not None else []
        self._check_constraints(self._constraints)
        self.step_count = 0
        self.params: list[Parameter] = []
        self._flat_data: Any = None
        self._flat_grad: Any = None
        self._data_views: list[Any] = []
        self._grad_views: list[Any] = []
        self._state: dict[str, Any] = {}
        self._scratch: list[Any] = []
        self._wd_buf: Any = None

    # -- hyper-parameters ---------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_lr(value, f"{self._where}.lr")

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

    def _ensure_packed(self) -> None:
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
        dtype = dtypes.pop()
        backend = get_backend()
        xp = backend.xp
        total = sum(int(p.data.size) for p in params)
        flat_data = xp.empty(total, dtype=dtype)
        flat_grad = xp.empty(total, dtype=dtype)
        data_views, grad_views = [], []
        offset = 0
        for p in params:
            n = int(p.data.size)
            dv = flat_data[offset:offset + n].reshape(p.data.shape)
            gv = flat_grad[offset:offset + n].reshape(p.data.shape)
            dv[...] = backend.asarray(native_byte_order(p.data))
            gv[...] = backend.asarray(native_byte_order(p.grad))
            p.data, p.grad = dv, gv
            data_views.append(dv)
            grad_views.append(gv)
            offset += n
        self.params = params
        self._flat_data, self._flat_grad = flat_data, flat_grad
        self._data_views, self._grad_views = data_views, grad_views
        self._state = {name: xp.zeros(total, dtype=dtype) for name in self._state_names}
        self._scratch = [xp.empty(total, dtype=dtype) for _ in range(self._scratch_count)]
        if self.weight_decay and self._coupled_decay:
            self._wd_buf = xp.empty(total, dtype=dtype)
        self._init_state()

    def _init_state(self) -> None:
        """Hook: fill state buffers with non-zero initial values (e.g. Adagrad's accumulator)."""

    def _resync(self) -> None:
        """Re-attach parameters whose .data/.grad was rebound by someone else (copying the values in)."""
        for i, p in enumerate(self.params):
            if p.data is not self._data_views[i]:
                if tuple(p.data.shape) != tuple(self._data_views[i].shape):
                    raise ValueError(f"{self._where}.step: parameter {p.name!r} data was replaced by one of shape "
                                     f"{tuple(p.data.shape)}, expected {tuple(self._data_views[i].shape)}")
                self._data_views[i][...] = p.data
                p.data = self._data_views[i]
            if p.grad is not self._grad_views[i]:
                if tuple(p.grad.shape) != tuple(self._grad_views[i].shape):
                    raise ValueError(f"{self._where}.step: parameter {p.name!r} has grad shape "
                                     f"{tuple(p.grad.shape)}, expected its data shape "
                                     f"{tuple(self._grad_views[i].shape)}")
                self._grad_views[i][...] = p.grad
                p.grad = self._grad_views[i]

    @property
    def flat_data(self) -> Any:
        self._ensure_packed()
        return self._flat_data

    @property
    def flat_grad(self) -> Any:
        self._ensure_packed()
        return self._flat_grad

    # -- the update ---------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Zero every trainable gradient: one fill of the flat grad buffer."""
        if self._flat_data is None and self._source is not None and not list(self._source.parameters()):
            return  # a model not built yet has no gradients to zero; packing waits for its first forward
        self._ensure_packed()
        self._resync()
        self._flat_grad.fill(0)

    def step(self) -> None:
        """Apply one update from the current gradients, then the constraints."""
        self._ensure_packed()
        self._resync()
        g = self._flat_grad
        if self.clipvalue is not None:
            clip_flat_value(g, self.clipvalue)
        if self.clipnorm is not None:
            clip_flat_norm(g, self.clipnorm)
        self.step_count += 1
        if self._wd_buf is not None:
            # g + wd * param into scratch: the user's .grad is left as backward wrote it
            xp = get_backend().xp
            xp.multiply(self._flat_data, self.weight_decay, out=self._wd_buf)
            self._wd_buf += g
            g = self._wd_buf
        self._update(g)
        for param, constraint in self._constraints:
            constraint(param.data)

    def _update(self, g: Any) -> None:
        raise NotImplementedError

    def clip_grad_norm(self, max_norm: float) -> float:
        """Scale all trainable gradients so their global L2 norm is at most `max_norm`; returns the norm before."""
        self._ensure_packed()
        self._resync()
        return clip_flat_norm(self._flat_grad, _positive_eps(max_norm, "max_norm", f"{self._where}.clip_grad_norm"))

    def clip_grad_value(self, clip_value: float) -> None:
        """Clamp every trainable gradient element into [-clip_value, clip_value]."""
        self._ensure_packed()
        self._resync()
        clip_flat_value(self._flat_grad,
                        _positive_eps(clip_value, "clip_value", f"{self._where}.clip_grad_value"))

    # -- state --------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, float]:
        """Scalar running state besides the step count (e.g. Nadam's mu_product)."""
        return {}

    def _load_extra_state(self, extra: dict[str, float]) -> None:
        """Hook for subclasses with scalar running state."""

    def state_dict(self) -> dict[str, Any]:
        """Step count, hyper-parameters, scalar state and moment buffers (host NumPy copies)."""
        self._ensure_packed()
        backend = get_backend()
        return {
            "optimizer": type(self).__name__,
            "step": int(self.step_count),
            "hyperparams": dict(self.hyperparams()),
            "scalars": dict(self._extra_state()),
            "state": {k: np.array(backend.to_numpy(v), copy=True) for k, v in self._state.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict saved; validates everything before changing anything."""
        where = f"{self._where}.load_state_dict"
        self._ensure_packed()
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
            check_lr(hyper["lr"], where, "state['hyperparams']['lr']")
        backend = get_backend()
        for k, arr in buffers.items():
            self._state[k][...] = backend.asarray(native_byte_order(np.asarray(arr)), dtype=self._state[k].dtype)
        self.step_count = int(step)
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


def clip_flat_norm(g: Any, max_norm: float) -> float:
    """Scale `g` in place so that its L2 norm is <= max_norm (PyTorch's 1e-6 guard); returns the old norm."""
    norm = float(g.dot(g)) ** 0.5 if g.size else 0.0
    if not math.isfinite(norm):
        raise FloatingPointError(f"clip_grad_norm: the gradient norm is {norm}; the gradients hold inf or NaN")
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        g *= coef
    return norm


def clip_flat_value(g: Any, clip_value: float) -> None:
    get_backend().xp.clip(g, -clip_value, clip_value, out=g)
