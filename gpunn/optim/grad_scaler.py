"""Dynamic loss scaling with torch.amp.GradScaler's schedule, its state kept in device memory.

The fp16-mixed policy (gpunn/train/mixed_precision.py) scales the loss gradient by `scale` before
backward, unscales the 16-bit gradients into the fp32 flat gradient with `inv_scale()` and
`found_inf` (Optimizer.apply_step_mixed; `unscale_` is the same for any float array), skips the
update of a step whose gradients hold an inf or NaN on the device, and `update()`s the scale.
Every piece of state is a device array and every operation a device op, so that the whole
sequence can sit inside a captured step (a CUDA graph) with nothing read back to the host.

The schedule, as torch's `_amp_update_scale_`:
- a step whose gradients are not all finite: scale *= backoff_factor (0.5), growth tracker = 0;
- otherwise the tracker counts clean steps; at growth_interval (2000) of them in a row the scale is
  multiplied by growth_factor (2.0), if that product is finite, and the tracker restarts at 0.
The scale is float32, as torch keeps it, and starts at init_scale (2^16).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import is_int, real_arg
from gpunn.backend import Backend, get_backend, to_host


class GradScaler:
    """See the module docstring. `backend` (default: the current one) holds the state; `enabled`
    False turns loss scaling off (as torch's)."""

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, *, enabled: bool = True, backend: Backend | None = None) -> None:
        where = "GradScaler"
        if not isinstance(enabled, bool):
            raise TypeError(f"{where}: argument 'enabled' must be True or False, got {enabled!r}")
        #: False: no loss scaling at all (torch's GradScaler(enabled=False)): fp16 gradients as backward
        #: gives them, no inf check, no skipped step. For experiments (it overflows or underflows).
        self.enabled = enabled
        self.init_scale = real_arg(init_scale, "init_scale", where, 0, lo_open=True, type_error=True)
        self.growth_factor = real_arg(growth_factor, "growth_factor", where, 1.0, lo_open=True, type_error=True)
        self.backoff_factor = real_arg(backoff_factor, "backoff_factor", where, 0.0, 1.0, lo_open=True,
                                       hi_open=True, type_error=True)
        if not is_int(growth_interval) or isinstance(growth_interval, bool) or growth_interval < 1:
            raise ValueError(f"{where}: argument 'growth_interval' must be an int >= 1, got {growth_interval!r}")
        self.growth_interval = int(growth_interval)
        self.backend = backend if backend is not None else get_backend()
        xp = self.backend.xp
        self.scale = xp.full((1,), self.init_scale, dtype=np.float32)  # read by the loss scaling and unscale_
        self.growth_tracker = xp.zeros((1,), dtype=np.int32)
        self.found_inf = xp.zeros((1,), dtype=np.int32)  # 1 when this step's gradients hold inf or NaN
        self._inv = xp.ones((1,), dtype=np.float32)

    # -- per step, device only ------------------------------------------------------------------
    def inv_scale(self) -> Any:
        """1 / scale (float32, as torch's reciprocal of its float32 scale) into a 1-element device
        array, returned: what the unscale kernels multiply by."""
        self.backend.xp.divide(np.float32(1.0), self.scale, out=self._inv)
        return self._inv

    def unscale_(self, grad: Any, out: Any = None) -> Any:
        """`grad / scale` into `out` (default: in place), and found_inf set when any value of the
        result is inf or NaN (ORed into found_inf, so several buffers may be unscaled per step;
        update() clears it). Returns `out`."""
        xp = self.backend.xp
        out = grad if out is None else out
        xp.multiply(grad, self.inv_scale().astype(out.dtype, copy=False), out=out)
        bad = xp.logical_not(xp.isfinite(out)).any(keepdims=True).reshape(1)
        xp.maximum(self.found_inf, bad.astype(np.int32), out=self.found_inf)
        return out

    def update(self) -> None:
        """The scale for the next step from this step's found_inf (see the module docstring); then
        found_inf is cleared."""
        xp = self.backend.xp
        inf = self.found_inf != 0
        clean = self.growth_tracker + 1
        with np.errstate(over="ignore"):  # a scale that would overflow is refused below, not warned about
            grown = self.scale * np.float32(self.growth_factor)
        grow = xp.logical_and(xp.logical_not(inf), clean == self.growth_interval)
        new_scale = xp.where(inf, self.scale * np.float32(self.backoff_factor),
                             xp.where(xp.logical_and(grow, xp.isfinite(grown)), grown, self.scale))
        new_tracker = xp.where(xp.logical_or(inf, grow), 0, clean)
        xp.copyto(self.scale, new_scale.astype(np.float32, copy=False))
        xp.copyto(self.growth_tracker, new_tracker.astype(np.int32, copy=False))
        self.found_inf.fill(0)

    # -- host side ------------------------------------------------------------------------------
    def move_to(self, backend: Backend) -> None:
        """Keep the state on `backend` from now on (a model moved with to()), values kept."""
        if backend is self.backend:
            return
        state = self.state_dict()
        self.backend = backend
        xp = backend.xp
        self.scale = xp.full((1,), self.init_scale, dtype=np.float32)
        self.growth_tracker = xp.zeros((1,), dtype=np.int32)
        self.found_inf = xp.zeros((1,), dtype=np.int32)
        self._inv = xp.ones((1,), dtype=np.float32)
        self.load_state_dict(state)

    def get_scale(self) -> float:
        """The current scale (one read of device memory)."""
        return float(to_host(self.scale)[0])

    def state_dict(self) -> dict[str, Any]:
        """torch's keys: scale, growth_factor, backoff_factor, growth_interval, _growth_tracker."""
        return {"scale": self.get_scale(), "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval,
                "_growth_tracker": int(to_host(self.growth_tracker)[0])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict saved (also torch's GradScaler.state_dict()); validates first."""
        where = "GradScaler.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{where}: argument 'state' must be a dict, got {type(state).__name__}")
        missing = [k for k in ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
                   if k not in state]
        if missing:
            raise KeyError(f"{where}: argument 'state' is missing keys {missing}")
        check = GradScaler(state["scale"], state["growth_factor"], state["backoff_factor"], state["growth_interval"],
                           backend=self.backend)  # the same checks as construction
        tracker = state["_growth_tracker"]
        if not is_int(tracker) or isinstance(tracker, bool) or not 0 <= tracker < check.growth_interval:
            raise ValueError(f"{where}: argument 'state[\"_growth_tracker\"]' must be an int in "
                             f"[0, growth_interval), got {tracker!r}")
        self.growth_factor, self.backoff_factor = check.growth_factor, check.backoff_factor
        self.growth_interval = check.growth_interval
        self.backend.host_to_device(self.scale, float(state["scale"]))
        self.backend.host_to_device(self.growth_tracker, int(tracker))
        self.found_inf.fill(0)
