"""RMSprop, in PyTorch's form (rho is PyTorch's `alpha`).

PyTorch (and here):  s = rho*s + (1-rho)*g*g;  avg = sqrt(s) + eps   (centered: sqrt(s - a*a) + eps,
                     a = rho*a + (1-rho)*g);  p -= lr * g / avg
                     with momentum:  b = momentum*b + g/avg;  p -= lr * b
The seeds write  theta -= lr * g / sqrt(s + eps): eps inside the root; Keras also puts it inside.
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.optim.base import Optimizer, one_name


class RMSprop(Optimizer):
    """Divides the gradient by a running RMS of recent gradients.
    lr (or learning_rate) defaults to 0.01, rho (or alpha, PyTorch's name) to 0.99; `params` may be
    omitted (see Optimizer.bind)."""

    default_lr = 0.01

    def __init__(self, params: Any = None, lr: float | None = None, rho: float | None = None, eps: float = 1e-8,
                 momentum: float = 0.0, centered: bool = False, weight_decay: float = 0.0,
                 learning_rate: float | None = None, alpha: float | None = None, **kwargs: Any) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, learning_rate=learning_rate, **kwargs)
        # rho (Keras's name) defaults to 0.99; alpha is PyTorch's name for it
        value, name = one_name(rho, "rho", alpha, "alpha", "RMSprop")
        self.rho = real_arg(0.99 if value is None else value, name, "RMSprop", 0.0, 1.0, hi_open=True,
                            type_error=True)
        self.eps = real_arg(eps, "eps", "RMSprop", 0, lo_open=True, type_error=True)
        self.momentum = real_arg(momentum, "momentum", "RMSprop", 0.0, 1.0, hi_open=True, type_error=True)
        self.centered = bool(centered)
        names = ["square_avg"]
        if self.centered:
            names.append("grad_avg")
        if self.momentum:
            names.append("momentum_buffer")
        self._state_names = tuple(names)
        self._scratch_count = 2

    @property
    def alpha(self) -> float:
        """PyTorch's name for `rho`: the same value."""
        return self.rho

    @alpha.setter
    def alpha(self, value: float) -> None:
        self.rho = real_arg(value, "alpha", "RMSprop.alpha", 0.0, 1.0, hi_open=True, type_error=True)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "rho": self.rho, "eps": self.eps, "momentum": self.momentum,
                "centered": self.centered}

    def _update(self, g: Any) -> None:
        xp = self.backend.xp
        rho = self.rho
        sq, avg, tmp = self._state["square_avg"], self._scratch[0], self._scratch[1]
        sq *= rho
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - rho
        sq += tmp
        if self.centered:
            ga = self._state["grad_avg"]
            ga *= rho
            xp.multiply(g, 1.0 - rho, out=tmp)
            ga += tmp
            xp.multiply(ga, ga, out=avg)
            xp.subtract(sq, avg, out=avg)
            # s - a*a >= 0 in exact arithmetic; rounding can dip below 0 where PyTorch would give NaN
            xp.maximum(avg, 0.0, out=avg)
            xp.sqrt(avg, out=avg)
        else:
            xp.sqrt(sq, out=avg)
        avg += self.eps
        xp.divide(g, avg, out=tmp)
        if self.momentum:
            buf = self._state["momentum_buffer"]
            buf *= self.momentum
            buf += tmp
            xp.multiply(buf, self._slot_t("lr"), out=tmp)
        else:
            tmp *= self._slot_t("lr")  # from the device slot; subtracting gives the bits of adding -lr * ...
        self._flat_data -= tmp
