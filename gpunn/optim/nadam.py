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
from gpunn.backend import to_host
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
        self._mu_product_host = 1.0  # until packing; then the device slot "mu_product" holds it

    #: mu_product is running state (saved); the rest are this step's values, computed on the device
    _scalar_names = ("mu_product", "mu", "mu_next", "bc2", "c1", "c2", "work")

    @property
    def mu_product(self) -> float:
        """mu_1 * ... * mu_t so far (read from the device once packed: not inside a step)."""
        if self._scalars is None:
            return self._mu_product_host
        return float(to_host(self._slot_views["mu_product"])[0])

    @mu_product.setter
    def mu_product(self, value: float) -> None:
        self._mu_product_host = float(value)
        if self._scalars is not None:
            self.backend.host_to_device(self._slot_views["mu_product"], self._mu_product_host)

    def _initial_scalars(self) -> dict[str, float]:
        return {"mu_product": self._mu_product_host}

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "momentum_decay": self.momentum_decay}

    def _extra_state(self) -> dict[str, float]:
        return {"mu_product": self.mu_product}

    def _load_extra_state(self, extra: dict[str, float]) -> None:
        self.mu_product = float(extra.get("mu_product", 1.0))

    def _update_scalars(self) -> None:
        # PyTorch's schedule, in float64 on the device from the step slot t (after the increment):
        #   mu = b1 * (1 - 0.5 * 0.96^(t*md)), mu_next likewise at t+1, mu_product *= mu,
        #   bc2 = 1 - b2^t, c1 = lr * (1 - mu) / (1 - mu_product),
        #   c2 = lr * mu_next / (1 - mu_product * mu_next)
        xp = self.backend.xp
        sv = self._slot_views
        b1, md = self.beta1, self.momentum_decay
        t, lr, mu, mu_next, prod, work = sv["step"], sv["lr"], sv["mu"], sv["mu_next"], sv["mu_product"], sv["work"]
        for out, shift in ((mu, 0.0), (mu_next, 1.0)):
            xp.add(t, shift, out=out)
            out *= md
            xp.power(0.96, out, out=out)
            out *= 0.5
            xp.subtract(1.0, out, out=out)
            out *= b1
        prod *= mu
        bc2 = sv["bc2"]
        xp.power(self.beta2, t, out=bc2)
        xp.subtract(1.0, bc2, out=bc2)
        c1, c2 = sv["c1"], sv["c2"]
        xp.subtract(1.0, mu, out=c1)
        xp.multiply(lr, c1, out=c1)
        xp.subtract(1.0, prod, out=work)
        xp.divide(c1, work, out=c1)
        xp.multiply(prod, mu_next, out=work)
        xp.subtract(1.0, work, out=work)
        xp.multiply(lr, mu_next, out=c2)
        xp.divide(c2, work, out=c2)

    def _update(self, g: Any) -> None:
        xp = self.backend.xp
        m, v = self._state["exp_avg"], self._state["exp_avg_sq"]
        denom, tmp = self._scratch
        update_moments(xp, m, v, g, self.beta1, self.beta2, tmp)
        xp.divide(v, self._slot_t("bc2"), out=denom)
        xp.sqrt(denom, out=denom)
        denom += self.eps
        p = self._flat_data
        # p -= c1 * g / denom + c2 * m / denom: the bits of adding -c1 * ... and -c2 * ... as before
        xp.divide(g, denom, out=tmp)
        tmp *= self._slot_t("c1")
        p -= tmp
        xp.divide(m, denom, out=tmp)
        tmp *= self._slot_t("c2")
        p -= tmp
