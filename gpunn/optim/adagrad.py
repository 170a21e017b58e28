"""Adagrad, in PyTorch's form.

PyTorch (and here):  s += g*g;  p -= lr_t * g / (sqrt(s) + eps),  lr_t = lr / (1 + (t - 1) * lr_decay)
The seeds write  theta -= lr * g / sqrt(s + eps): the same idea with eps inside the root; the
difference matters only while s is of the order of eps.
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.optim.base import Optimizer


class Adagrad(Optimizer):
    """Per-element step sizes shrinking with the accumulated squared gradient.
    lr (or learning_rate) defaults to 0.01; `params` may be omitted (see Optimizer.bind)."""

    _state_names = ("sum",)
    _scratch_count = 1
    #: the decayed step size lr_t, computed on the device each step from the lr and step slots
    _scalar_names = ("clr",)
    default_lr = 0.01

    def __init__(self, params: Any = None, lr: float | None = None, eps: float = 1e-10, weight_decay: float = 0.0,
                 lr_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, learning_rate=learning_rate, **kwargs)
        self.eps = real_arg(eps, "eps", "Adagrad", 0, lo_open=True, type_error=True)
        self.lr_decay = real_arg(lr_decay, "lr_decay", "Adagrad", 0.0, type_error=True)
        self.initial_accumulator_value = real_arg(initial_accumulator_value, "initial_accumulator_value",
                                                  "Adagrad", 0.0, type_error=True)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "eps": self.eps, "lr_decay": self.lr_decay,
                "initial_accumulator_value": self.initial_accumulator_value}

    def _init_state(self) -> None:
        self._state["sum"].fill(self.initial_accumulator_value)

    def _update_scalars(self) -> None:
        # clr = lr / (1 + (t - 1) * lr_decay), in float64 on the device, in the host formula's order
        xp = self.backend.xp
        views = self._slot_views
        clr = views["clr"]
        xp.subtract(views["step"], 1.0, out=clr)
        clr *= self.lr_decay
        clr += 1.0
        xp.divide(views["lr"], clr, out=clr)

    def _update(self, g: Any) -> None:
        xp = self.backend.xp
        s, tmp = self._state["sum"], self._scratch[0]
        xp.multiply(g, g, out=tmp)
        s += tmp
        xp.sqrt(s, out=tmp)
        tmp += self.eps
        xp.divide(g, tmp, out=tmp)
        tmp *= self._slot_t("clr")
        self._flat_data -= tmp
