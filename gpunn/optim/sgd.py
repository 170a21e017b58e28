"""SGD with optional momentum and Nesterov momentum, in PyTorch's form.

PyTorch (and here):  b = momentum * b + g;  p -= lr * b          (Nesterov: p -= lr * (g + momentum * b))
The seeds' notation:  m = beta * m + lr * g;  theta -= m

The two agree step for step while lr is constant (m = lr * b); they differ only when lr changes
mid-run: here the new lr also scales the momentum already accumulated, in the seeds' form it only
scales new gradients.
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.optim.base import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent; `momentum` in [0, 1), `nesterov` needs momentum > 0.
    lr (or learning_rate) defaults to 0.01; `params` may be omitted (see Optimizer.bind)."""

    default_lr = 0.01

    def __init__(self, params: Any = None, lr: float | None = None, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, learning_rate=learning_rate, **kwargs)
        self.momentum = real_arg(momentum, "momentum", "SGD", 0.0, 1.0, hi_open=True, type_error=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("SGD: argument 'nesterov' needs argument 'momentum' > 0, got momentum=0.0")
        # a momentum buffer only when there is momentum; scratch for lr * direction (+ Nesterov's look-ahead)
        self._state_names = ("momentum_buffer",) if self.momentum else ()
        self._scratch_count = 2 if self.nesterov else 1

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, g: Any) -> None:
        xp = self.backend.xp
        d = g
        if self.momentum:
            buf = self._state["momentum_buffer"]
            buf *= self.momentum  # zero-initialised, so step 1 gives buf = g exactly, like PyTorch's clone
            buf += g
            d = buf
            if self.nesterov:
                d = self._scratch[1]
                xp.multiply(buf, self.momentum, out=d)
                d += g
        tmp = self._scratch[0]
        # lr from the device slot (a captured step replays it); p - d*lr has the bits of p + d*(-lr)
        xp.multiply(d, self._slot_t("lr"), out=tmp)
        self._flat_data -= tmp
