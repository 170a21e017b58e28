"""Nadam (Adam with Nesterov momentum), in PyTorch's form (Dozat 2016 with momentum decay).

PyTorch (and here), t the 1-based step:
    mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay));  mu_prod_t = mu_1 * ... * mu_t
    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  denom = sqrt(v / (1-b2^t)) + eps
    p -= lr * (1-mu_t) / (1-mu_prod_t) * g / denom + lr * mu_{t+1} / (1-mu_prod_{t+1}) * m / denom
The seeds' Nadam (Adam with the look-ahead m_hat = b1*m_hat + (1-b1)*g_hat) is the special case
momentum_decay = 0 up to the schedule of mu.
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.backend.ops.optim import update_moments
from gpunn.optim.adam import check_betas
from gpunn.optim.base import Optimizer


class Nadam(Optimizer):
    """Adam with Nesterov momentum and PyTorch's momentum-decay schedule (momentum_decay=1.0 is
    Keras's schedule, mu_t = beta1 * (1 - 0.5 * 0.96^t)).
    lr (or learning_rate) defaults to 2e-3, (beta1, beta2) (or betas=) to (0.9, 0.999); `params` may
    be omitted (see Optimizer.bind)."""

    _state_names = ("exp_avg", "exp_avg_sq")
    _scratch_count = 2
    default_lr = 2e-3

    def __init__(self, params: Any = None, lr: float | None = None, beta1: float | None = None,
                 beta2: float | None = None, eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 learning_rate: float | None = None, betas: tuple[float, float] | None = None, **kwargs: Any) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2 = check_betas(beta1, beta2, "Nadam", betas)
        self.eps = real_arg(eps, "eps", "Nadam", 0, lo_open=True, type_error=True)
        self.momentum_decay = real_arg(momentum_decay, "momentum_decay", "Nadam", 0.0, type_error=True)
        self.mu_product = 1.0

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "momentum_decay": self.momentum_decay}

    def _extra_state(self) -> dict[str, float]:
        return {"mu_product": self.mu_product}

    def _load_extra_state(self, extra: dict[str, float]) -> None:
        self.mu_product = float(extra.get("mu_product", 1.0))

    def _update(self, g: Any) -> None:
        xp = self.backend.xp
        b1, b2, t = self.beta1, self.beta2, self.step_count
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.momentum_decay))
        self.mu_product *= mu
        mu_product_next = self.mu_product * mu_next
        m, v = self._state["exp_avg"], self._state["exp_avg_sq"]
        denom, tmp = self._scratch
        update_moments(xp, m, v, g, b1, b2, tmp)
        xp.divide(v, 1.0 - b2 ** t, out=denom)
        xp.sqrt(denom, out=denom)
        denom += self.eps
        p = self._flat_data
        xp.divide(g, denom, out=tmp)
        tmp *= -self._lr * (1.0 - mu) / (1.0 - self.mu_product)
        p += tmp
        xp.divide(m, denom, out=tmp)
        tmp *= -self._lr * mu_next / (1.0 - mu_product_next)
        p += tmp
