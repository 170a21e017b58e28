"""Adam and AdamW: one `backend.adam_step` call over the flat buffers per step.

PyTorch (and here):  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
                     p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
The seeds (and the Adam paper's Algorithm 1) write  p -= lr * m_hat / (sqrt(v_hat) + eps)  with
m_hat = m/(1-b1^t), v_hat = v/(1-b2^t): the same formula. AMSGrad keeps the running maximum of v.
Adam's weight_decay is coupled L2 (added to g); AdamW's is decoupled: p *= 1 - lr*weight_decay.
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.optim.base import Optimizer


def check_betas(beta1: Any, beta2: Any, where: str) -> tuple[float, float]:
    return (real_arg(beta1, "beta1", where, 0.0, 1.0, hi_open=True, type_error=True),
            real_arg(beta2, "beta2", where, 0.0, 1.0, hi_open=True, type_error=True))


class Adam(Optimizer):
    """Adaptive moments; `amsgrad` uses the running maximum of the second moment."""

    _decoupled = False

    def __init__(self, params: Any, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, **kwargs)
        where = type(self).__name__
        self.beta1, self.beta2 = check_betas(beta1, beta2, where)
        self.eps = real_arg(eps, "eps", where, 0, lo_open=True, type_error=True)
        self.amsgrad = bool(amsgrad)
        self._state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if self.amsgrad else ("exp_avg", "exp_avg_sq")

    # adam_step folds weight decay in itself (coupled or decoupled), so the base adds none
    _coupled_decay = False

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "amsgrad": self.amsgrad}

    def _update(self, g: Any) -> None:
        s = self._state
        self.backend.adam_step(self._flat_data, g, s["exp_avg"], s["exp_avg_sq"], self._lr, self.beta1,
                                self.beta2, self.eps, self.weight_decay, self.step_count, self._decoupled,
                                zero_grad=False, max_v=s.get("max_exp_avg_sq"))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): p *= 1 - lr*weight_decay before the step."""

    _decoupled = True

    def __init__(self, params: Any, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(params, lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, **kwargs)
