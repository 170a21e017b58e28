"""Mixed-precision training steps: fp32 master weights, a 16-bit copy per step, loss scaling.

    model.compile("sparse_categorical_crossentropy", "adam", precision="bf16-mixed")   # fit does the rest

or, in a custom loop (PyTorch's autocast + GradScaler in one object):

    mp = gpunn.mixed_precision(model, opt, "fp16-mixed")     # the model built, the optimizer bound
    for x, y in loader:
        opt.zero_grad()
        with mp.autocast():                                   # layers compute in float16
            out = model.forward(x, training=True)
            loss = loss_fn(out, y)                            # losses compute in float32
            model.backward(mp.scale(loss_fn.backward()))      # the loss gradient times the loss scale
        mp.step()                                             # unscale, skip on inf/NaN, update, rescale

What a step does under a 16-bit policy (the table is in gpunn/precision.py):
- entering `autocast()`: one fused cast of the optimizer's whole fp32 flat buffer (the masters)
  into a 16-bit flat buffer of the same layout (`HalfWeights.refresh`); every Parameter's `.data`
  and `.grad` are rebound to their 16-bit views for the block, so layers compute on the half
  weights and backward writes half gradients (zeroed on entry); layers cast their inputs to the
  16-bit dtype (Layer.compute_dtype), except Softmax/LogSoftmax; batch-norm statistics, losses
  and metrics stay float32 (the ops and losses upcast).
- leaving it: the Parameters are bound to the fp32 views again.
- `step()`: the optimizer's host half (prepare_step), then `apply()`, the device half: the half
  gradients are unscaled into the fp32 flat gradient with an inf/NaN check (fp16), the update is
  skipped on the device when one was found, and the scaler updates its scale
  (Optimizer.apply_step_mixed, GradScaler.update). Nothing is read back to the host, so the whole
  step can be captured as a CUDA graph (CapturedStep takes a MixedPrecision).
Under "tf32" only the backend's float32 matmul precision changes inside the block; "fp32"
changes nothing. A model that is not built yet must be built first (one forward, or
model.build(input_shape)): the half copy mirrors the packed parameters.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunn.backend import Backend
from gpunn.backend.ops.cast import is_half
from gpunn.optim.base import Optimizer
from gpunn.optim.grad_scaler import GradScaler
from gpunn.parameter import Parameter
from gpunn.precision import FLOAT32, Policy, autocast as autocast_state, full_precision, get_policy


class HalfWeights:
    """The 16-bit copy of a model's parameters for one step: for those an optimizer packed, one
    flat buffer in the optimizer's layout (filled by one cast of its fp32 flat buffer) and a flat
    16-bit gradient buffer; for the others (frozen, or no optimizer), one array each."""

    def __init__(self, params: list[Parameter], optimizer: Optimizer | None, dtype: np.dtype, backend: Backend) -> None:
        xp = backend.xp
        try:
            xp.empty(1, dtype=dtype)
        except (TypeError, ValueError) as exc:  # CuPy before 14 has no bfloat16 arrays
            raise TypeError(f"mixed_precision: the {backend.name} backend cannot hold {dtype} arrays ({exc}); "
                            "bf16 on CuPy needs CuPy 14 or later with ml_dtypes installed: upgrade CuPy, or use "
                            "precision='fp16-mixed'") from None
        self.backend, self.dtype = backend, dtype
        self.master: Any = None
        self.data: Any = None
        self.grad: Any = None
        self._bound: list[tuple[Parameter, Any, Any]] = []  # (param, half data view, half grad view)
        packed: set[int] = set()
        if optimizer is not None:
            total = int(optimizer.flat_data.shape[0])  # packs on first use
            self.master = optimizer.flat_data
            self.data, self.grad = xp.empty(total, dtype=dtype), xp.zeros(total, dtype=dtype)
            offset = 0
            for p in optimizer.params:
                n = int(p.size)
                self._bound.append((p, self.data[offset:offset + n].reshape(p.shape),
                                    self.grad[offset:offset + n].reshape(p.shape)))
                packed.add(id(p))
                offset += n
        self._own = [(p, xp.empty(p.shape, dtype=dtype), xp.zeros(p.shape, dtype=dtype))
                     for p in params if id(p) not in packed]
        self._bound.extend(self._own)
        self.key = self.key_for(params, optimizer, backend)

    @staticmethod
    def key_for(params: list[Parameter], optimizer: Optimizer | None, backend: Backend) -> tuple:
        """What the copy was made for: when it changes (a re-pack, a frozen layer, a move), re-make it."""
        master = optimizer.flat_data if optimizer is not None else None
        return (id(master), tuple(id(p) for p in params), id(backend))

    def refresh(self) -> None:
        """The 16-bit values of the current fp32 weights: one cast kernel over the flat buffer (and
        one per parameter the optimizer does not hold)."""
        be = self.backend
        if self.master is not None:
            be.cast_to_half(self.master, self.dtype, out=self.data)
        for p, data, _ in self._own:
            be.cast_to_half(be.xp.ascontiguousarray(p.data), self.dtype, out=data)

    def zero_grad(self) -> None:
        if self.grad is not None:
            self.grad.fill(0)
        for _, _, grad in self._own:
            grad.fill(0)

    @contextlib.contextmanager
    def bound(self, optimizer: Optimizer | None) -> Iterator[None]:
        """Parameters bound to their 16-bit views in this block, to what they held before after it."""
        before = [(p, p.data, p.grad) for p, _, _ in self._bound]
        for p, data, grad in self._bound:
            p.data, p.grad = data, grad
        if optimizer is not None:
            optimizer._swapped = True
        try:
            yield
        finally:
            for p, data, grad in before:
                p.data, p.grad = data, grad
            if optimizer is not None:
                optimizer._swapped = False


class MixedPrecision:
    """A precision policy applied to a model and its optimizer: see the module docstring.

    - `model`: a gpunn model or layer, float32;
    - `optimizer`: its optimizer (None for evaluation or prediction only);
    - `precision`: "fp32", "tf32", "bf16-mixed" or "fp16-mixed" (gpunn.precision.POLICIES);
    - `scaler`: fp16's GradScaler (default: torch's schedule, init scale 2^16; GradScaler(enabled=False)
      turns scaling off); refused for the other policies.
    """

    def __init__(self, model: Any, optimizer: Optimizer | None = None, precision: Any = "bf16-mixed", *,
                 scaler: GradScaler | None = None) -> None:
        where = "mixed_precision"
        self.policy: Policy = get_policy(precision, where)
        if not (callable(getattr(model, "forward", None)) and callable(getattr(model, "parameters", None))):
            raise TypeError(f"{where}: argument 'model' must be a gpunn model or layer, got {type(model).__name__}")
        dtype = np.dtype(getattr(model, "dtype", FLOAT32))
        if self.policy.mixed and dtype != FLOAT32:
            raise ValueError(f"{where}: argument 'model' computes in {dtype}; precision={self.policy.name!r} keeps "
                             "float32 master weights: build the model in float32")
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"{where}: argument 'optimizer' must be a gpunn Optimizer or None, got "
                            f"{type(optimizer).__name__}")
        if scaler is not None and not isinstance(scaler, GradScaler):
            raise TypeError(f"{where}: argument 'scaler' must be a gpunn.optim.GradScaler or None, got "
                            f"{type(scaler).__name__}")
        if scaler is not None and not self.policy.loss_scaling:
            raise ValueError(f"{where}: argument 'scaler' is for precision='fp16-mixed'; {self.policy.name!r} needs "
                             "no loss scaling")
        if optimizer is not None and not optimizer.bound:
            optimizer.bind(model)
        self.model, self.optimizer = model, optimizer
        self.scaler = scaler if scaler is not None else (GradScaler(backend=self.backend)
                                                          if self.policy.loss_scaling else None)
        self._half: HalfWeights | None = None

    @property
    def backend(self) -> Backend:
        backend = getattr(self.model, "backend", None)
        if not isinstance(backend, Backend):
            from gpunn.backend import get_backend  # a model without an owner runs on the current one
            backend = get_backend()
        return backend

    @property
    def half_weights(self) -> HalfWeights | None:
        """The 16-bit copy the last autocast block used (None before, or under fp32/tf32)."""
        return self._half

    def _weights(self, training: bool) -> HalfWeights:
        model, opt, backend = self.model, self.optimizer, self.backend
        params = list(model.parameters())
        if not params or not getattr(model, "built", True):
            raise RuntimeError(f"mixed_precision: the model is not built yet; build it first (model.build(input_shape) "
                               f"or one forward) so that its weights have a {self.policy.compute_dtype} copy")
        if opt is not None and opt.backend is not backend:
            opt.move_to(backend)
        packed = opt if opt is not None and (training or opt.params) else None
        if self._half is None or self._half.key != HalfWeights.key_for(params, packed, backend):
            self._half = HalfWeights(params, packed, self.policy.compute_dtype, backend)
        return self._half

    @contextlib.contextmanager
    def autocast(self, training: bool = True) -> Iterator[None]:
        """The block a step's forward and backward run in (see the module docstring); with
        training=False (evaluation, prediction) the half gradients are not zeroed and no optimizer
        is needed."""
        if training and self.optimizer is None:
            raise ValueError("mixed_precision.autocast: a training step needs the optimizer; pass it to "
                             "mixed_precision(model, optimizer, ...) or use autocast(training=False)")
        policy, backend = self.policy, self.backend
        with backend.matmul_precision_scope(policy.matmul_precision):
            if not policy.mixed:
                yield
                return
            half = self._weights(training)
            half.refresh()
            if training:
                half.zero_grad()
            scale = None
            if training and self._scaling:
                self.scaler.move_to(backend)
                scale = self.scaler.scale
            # a loss-scaled fp16 step may overflow on purpose (the scaler's check sees the inf and skips
            # the step): NumPy's floating-point warnings inside it say nothing the scaler does not handle
            quiet = np.errstate(over="ignore", invalid="ignore") if scale is not None else contextlib.nullcontext()
            with half.bound(self.optimizer if training else None), autocast_state(policy.compute_dtype, scale), quiet:
                yield

    def scale(self, grad: Any) -> Any:
        """The loss gradient times the loss scale (fp16; a device multiply), or `grad` as it is
        (other policies). A list (several outputs) is scaled element by element; None stays None."""
        if isinstance(grad, (list, tuple)):
            return [self.scale(g) for g in grad]
        if grad is None or not self._scaling:
            return grad
        self.scaler.move_to(self.backend)
        return grad * self.scaler.scale.astype(grad.dtype, copy=False)

    def step(self) -> None:
        """The optimizer's step for the gradients the last autocast block computed: prepare_step()
        on the host, then apply()."""
        self._need_optimizer("step")
        self.optimizer.prepare_step()
        self.apply()

    def apply(self) -> None:
        """The device half of the step (what a CUDA graph captures): unscale and check (fp16), the
        update (skipped on the device when a gradient was not finite), the scale's update."""
        opt = self._need_optimizer("apply")
        if not self.policy.mixed:
            opt.apply_step()
            return
        half = self._half
        if half is None or half.grad is None:
            raise RuntimeError("mixed_precision.apply: no gradients yet; run forward and backward inside "
                               "mp.autocast() first")
        if not self._scaling:
            opt.apply_step_mixed(half.grad)
            return
        with np.errstate(over="ignore", invalid="ignore"):  # a step to be skipped computes with inf/NaN
            opt.apply_step_mixed(half.grad, self.scaler.inv_scale(), self.scaler.found_inf)
        self.scaler.update()

    @property
    def _scaling(self) -> bool:
        return self.scaler is not None and self.scaler.enabled

    def _need_optimizer(self, name: str) -> Optimizer:
        if self.optimizer is None:
            raise ValueError(f"mixed_precision.{name}: this MixedPrecision has no optimizer; pass one to "
                             "mixed_precision(model, optimizer, ...)")
        return self.optimizer

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The policy's name and, under fp16, the scaler's state (torch's keys)."""
        return {"precision": self.policy.name, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict saved; the policy must be this one's."""
        where = "mixed_precision.load_state_dict"
        if not isinstance(state, dict) or set(state) != {"precision", "scaler"}:
            raise ValueError(f"{where}: argument 'state' must be a dict with keys ['precision', 'scaler'] from "
                             f"state_dict(), got {state!r}")
        if state["precision"] != self.policy.name:
            raise ValueError(f"{where}: argument 'state' was saved under precision={state['precision']!r}, this step "
                             f"runs {self.policy.name!r}")
        if self.scaler is not None:
            if not isinstance(state["scaler"], dict):
                raise ValueError(f"{where}: argument 'state[\"scaler\"]' must be the scaler's state dict, got "
                                 f"{state['scaler']!r}")
            self.scaler.load_state_dict(state["scaler"])

    def __repr__(self) -> str:
        return f"MixedPrecision(precision={self.policy.name!r})"


def float32_outputs(out: Any) -> Any:
    """A model's outputs with 16-bit arrays cast to float32 (a list or tuple element by element):
    what losses, metrics and predict() read under a mixed policy."""
    if isinstance(out, (list, tuple)):
        return type(out)(float32_outputs(o) for o in out)
    return out.astype(np.float32) if is_half(out) else out


def for_model(model: Any) -> MixedPrecision | None:
    """The MixedPrecision of a compiled model's policy (None under "fp32"), made again when the
    model's optimizer was replaced (the scaler's state carries over)."""
    policy = getattr(model, "_policy", None)
    if policy is None or policy.name == "fp32":
        return None
    mp = getattr(model, "_mp", None)
    if mp is None or mp.optimizer is not model.optimizer:
        scaler = mp.scaler if mp is not None else None
        mp = model._mp = MixedPrecision(model, model.optimizer, policy, scaler=scaler)
    return mp


def ensure_built(model: Any, x: Any) -> None:
    """Build a model that is not built yet by one inference forward on `x` in full precision (it
    touches no running statistics and draws no dropout mask): the half copy needs the weights."""
    if list(model.parameters()) and getattr(model, "built", True):
        return
    with full_precision():
        model.forward(x, training=False)


def mixed_precision(model: Any, optimizer: Optimizer | None = None, precision: Any = "bf16-mixed", *,
                    scaler: GradScaler | None = None) -> MixedPrecision:
    """A MixedPrecision for a custom training loop (see the module docstring)."""
    return MixedPrecision(model, optimizer, precision, scaler=scaler)
