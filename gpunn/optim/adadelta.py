"""Adadelta, in PyTorch's form.

PyTorch (and here):  s = rho*s + (1-rho)*g*g;  d = sqrt(u + eps) / sqrt(s + eps) * g;
                     u = rho*u + (1-rho)*d*d;  p -= lr * d
Zeiler's paper (and the seeds) has no lr (lr = 1.0, the default here).
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.optim.base import Optimizer


class Adadelta(Optimizer):
    """Step sizes from the ratio of running RMS of updates to running RMS of gradients.
    lr (or learning_rate) defaults to 1.0; `params` may be omitted (see Optimizer.bind)."""

    _state_names = ("square_avg", "acc_delta")
    _scratch_count = 2
    default_lr = 1.0

    def __init__(self, params: Any = None, lr: float | None = None, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, learning_rate=learning_rate, **kwargs)
        self.rho = real_arg(rho, "rho", "Adadelta", 0.0, 1.0, hi_open=True, type_error=True)
        self.eps = real_arg(eps, "eps", "Adadelta", 0, lo_open=True, type_error=True)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "rho": self.rho, "eps": self.eps}

    def _update(self, g: Any) -> None:
        xp = self.backend.xp
        rho = self.rho
        sq, acc = self._state["square_avg"], self._state["acc_delta"]
        std, delta = self._scratch
        sq *= rho
        xp.multiply(g, g, out=delta)
        delta *= 1.0 - rho
        sq += delta
        xp.add(sq, self.eps, out=std)
        xp.sqrt(std, out=std)
        xp.add(acc, self.eps, out=delta)
        xp.sqrt(delta, out=delta)
        delta /= std
        delta *= g
        acc *= rho
        xp.multiply(delta, delta, out=std)
        std *= 1.0 - rho
        acc += std
        delta *= self._slot_t("lr")  # from the device slot; subtracting gives the bits of adding -lr * ...
        self._flat_data -= delta
