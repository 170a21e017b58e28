"""Learning-rate schedules: they set `optimizer.lr` per epoch or per step (whichever you call them on).

Every schedule remembers the optimizer's lr at construction as `base_lr`, sets the lr for count 0
at once, and then:
- `step()` advances the count by one and sets the lr for the new count (ReduceLROnPlateau's
  `step(metric)` takes the monitored value instead);
- `schedule(count)` jumps to `count`, sets that lr and returns it;
- `lr_at(count)` only computes it.
Counts start at 0, as PyTorch's `last_epoch` does after construction.
"""
from __future__ import annotations

import bisect
import math
from typing import Any

from gpunn._checks import int_arg, real_arg

_LR = "a finite float >= 0"  # how an lr argument is worded (as the optimizers word theirs)


def _count(value: Any, name: str, where: str, minimum: int = 0) -> int:
    """A count or step size: a Python int (a NumPy integer is refused) >= minimum."""
    return int_arg(value, name, where, minimum, numpy=False)


class Schedule:
    """Base: subclasses implement `lr_at(count)` from `self.base_lr`."""

    def __init__(self, optimizer: Any) -> None:
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(self).__name__}: argument 'optimizer' must have an 'lr' attribute, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.count = 0

    def lr_at(self, count: int) -> float:
        raise NotImplementedError

    def _apply(self) -> float:
        lr = self.lr_at(self.count)
        self.optimizer.lr = lr
        return lr

    def step(self) -> float:
        """Advance one epoch (or step) and set its lr; returns it."""
        self.count += 1
        return self._apply()

    def __call__(self, count: int) -> float:
        self.count = _count(count, "count", type(self).__name__)
        return self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = _count(state["count"], "state['count']", f"{type(self).__name__}.load_state_dict")
        self.base_lr = real_arg(state["base_lr"], "state['base_lr']", f"{type(self).__name__}.load_state_dict", 0,
                                want=_LR, type_error=True)
        self._apply()


class StepDecay(Schedule):
    """lr = base_lr * gamma ** (count // step_size): AlexNet's divide-by-10 every step_size epochs."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        self.step_size = _count(step_size, "step_size", "StepDecay", 1)
        self.gamma = real_arg(gamma, "gamma", "StepDecay", 0.0, 1.0, type_error=True)
        self._apply()

    def lr_at(self, count: int) -> float:
        return self.base_lr * self.gamma ** (count // self.step_size)


class MultiStep(Schedule):
    """lr = base_lr * gamma ** (number of milestones <= count)."""

    def __init__(self, optimizer: Any, milestones: list[int], gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        ms = list(milestones)
        for i, m in enumerate(ms):
            _count(m, f"milestones[{i}]", "MultiStep", 1)
        if ms != sorted(set(ms)):
            raise ValueError(f"MultiStep: argument 'milestones' must be strictly increasing, got {milestones!r}")
        self.milestones = ms
        self.gamma = real_arg(gamma, "gamma", "MultiStep", 0.0, 1.0, type_error=True)
        self._apply()

    def lr_at(self, count: int) -> float:
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, count)


class ExponentialDecay(Schedule):
    """lr = base_lr * gamma ** count."""

    def __init__(self, optimizer: Any, gamma: float) -> None:
        super().__init__(optimizer)
        self.gamma = real_arg(gamma, "gamma", "ExponentialDecay", 0.0, 1.0, type_error=True)
        self._apply()

    def lr_at(self, count: int) -> float:
        return self.base_lr * self.gamma ** count


def _warmup_factor(count: int, warmup: int, start: float) -> float:
    return start + (1.0 - start) * min(count, warmup) / warmup


class LinearWarmup(Schedule):
    """Linear ramp from start_factor * base_lr at count 0 to base_lr at count warmup_steps, then flat.

    The default start_factor, 1 / (warmup_steps + 1), gives lr = base_lr * (count + 1) / (warmup_steps + 1):
    no step is wasted at lr 0. (PyTorch's LinearLR with that start_factor.)
    """

    def __init__(self, optimizer: Any, warmup_steps: int, start_factor: float | None = None) -> None:
        super().__init__(optimizer)
        self.warmup_steps = _count(warmup_steps, "warmup_steps", "LinearWarmup", 1)
        self.start_factor = (1.0 / (self.warmup_steps + 1) if start_factor is None else
                             real_arg(start_factor, "start_factor", "LinearWarmup", 0.0, 1.0, type_error=True))
        self._apply()

    def lr_at(self, count: int) -> float:
        return self.base_lr * _warmup_factor(count, self.warmup_steps, self.start_factor)


class CosineAnnealing(Schedule):
    """Optional linear warmup (as LinearWarmup's default) for `warmup_steps`, then half a cosine from
    base_lr down to eta_min over T_max counts, then eta_min (held, not restarted):

        lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * min(count - warmup_steps, T_max) / T_max)) / 2
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, warmup_steps: int = 0) -> None:  # noqa: N803
        super().__init__(optimizer)
        self.T_max = _count(T_max, "T_max", "CosineAnnealing", 1)
        self.eta_min = real_arg(eta_min, "eta_min", "CosineAnnealing", 0, want=_LR, type_error=True)
        self.warmup_steps = _count(warmup_steps, "warmup_steps", "CosineAnnealing", 0)
        self._apply()

    def lr_at(self, count: int) -> float:
        w = self.warmup_steps
        if count < w:
            return self.base_lr * (count + 1) / (w + 1)
        k = min(count - w, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * k / self.T_max)) / 2.0


class OneCycle(Schedule):
    """Smith's one-cycle policy, PyTorch's OneCycleLR (two phases, lr only, no momentum cycling).

    From max_lr / div_factor up to max_lr over the first pct_start of total_steps, then down to
    max_lr / div_factor / final_div_factor at count total_steps - 1; held there afterwards (PyTorch
    raises instead). `anneal` is "cos" or "linear". max_lr defaults to the optimizer's lr.
    """

    def __init__(self, optimizer: Any, total_steps: int, max_lr: float | None = None, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, anneal: str = "cos") -> None:
        super().__init__(optimizer)
        where = "OneCycle"
        self.total_steps = _count(total_steps, "total_steps", where, 2)
        self.max_lr = (self.base_lr if max_lr is None
                       else real_arg(max_lr, "max_lr", where, 0, want=_LR, type_error=True))
        self.pct_start = real_arg(pct_start, "pct_start", where, 0.0, 1.0, hi_open=True, type_error=True)
        for name, val in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            real_arg(val, name, where, 1.0, type_error=True)
        if anneal not in ("cos", "linear"):
            raise ValueError(f"{where}: argument 'anneal' must be 'cos' or 'linear', got {anneal!r}")
        self.anneal = anneal
        self.initial_lr = self.max_lr / float(div_factor)
        self.min_lr = self.initial_lr / float(final_div_factor)
        self.peak_step = self.pct_start * self.total_steps - 1.0
        if not 0.0 < self.peak_step < self.total_steps - 1:
            raise ValueError(f"{where}: arguments 'pct_start' * 'total_steps' must be in (1, total_steps), got "
                             f"{self.pct_start} * {self.total_steps}; more steps or another pct_start")
        self._apply()

    def _interp(self, start: float, end: float, pct: float) -> float:
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)
        return (end - start) * pct + start

    def lr_at(self, count: int) -> float:
        count = min(count, self.total_steps - 1)
        if count <= self.peak_step:
            return self._interp(self.initial_lr, self.max_lr, count / self.peak_step)
        last = self.total_steps - 1
        return self._interp(self.max_lr, self.min_lr, (count - self.peak_step) / (last - self.peak_step))


class ReduceLROnPlateau:
    """Multiply the lr by `factor` once the metric has not improved for more than `patience` calls
    to `step(metric)` (PyTorch's semantics: relative `threshold`, `cooldown`, floor at `min_lr`)."""

    def __init__(self, optimizer: Any, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 min_lr: float = 0.0, threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0) -> None:
        where = "ReduceLROnPlateau"
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{where}: argument 'optimizer' must have an 'lr' attribute, got {type(optimizer).__name__}")
        if mode not in ("min", "max"):
            raise ValueError(f"{where}: argument 'mode' must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{where}: argument 'threshold_mode' must be 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = real_arg(factor, "factor", where, 0.0, 1.0, hi_open=True, type_error=True)
        self.patience = _count(patience, "patience", where, 0)
        self.min_lr = real_arg(min_lr, "min_lr", where, 0, want=_LR, type_error=True)
        self.threshold = real_arg(threshold, "threshold", where, 0.0, type_error=True)
        self.cooldown = _count(cooldown, "cooldown", where, 0)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_counter = 0

    def _better(self, a: float) -> bool:
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return a < (self.best * (1.0 - self.threshold) if rel else self.best - self.threshold)
        return a > (self.best * (1.0 + self.threshold) if rel else self.best + self.threshold)

    def step(self, metric: float) -> float:
        """Record this epoch's `metric`; returns the (possibly reduced) lr."""
        try:
            a = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: argument 'metric' must be a number, got {metric!r}") from None
        if math.isnan(a):
            raise ValueError("ReduceLROnPlateau.step: argument 'metric' is NaN")
        if self._better(a):
            self.best, self.num_bad = a, 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            old = float(self.optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > 1e-8:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
        return float(self.optimizer.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "num_bad": self.num_bad, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.num_bad = int(state["num_bad"])
        self.cooldown_counter = int(state["cooldown_counter"])
