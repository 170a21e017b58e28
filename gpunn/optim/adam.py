"""Adam and AdamW: one `backend.adam_step_device` call over the flat buffers per step (lr and step
read from the optimizer's device scalars, so a captured step replays the current ones).

PyTorch (and here):  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
                     p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
The seeds (and the Adam paper's Algorithm 1) write  p -= lr * m_hat / (sqrt(v_hat) + eps)  with
m_hat = m/(1-b1^t), v_hat = v/(1-b2^t): the same formula. AMSGrad keeps the running maximum of v.
Adam's weight_decay is coupled L2 (added to g); AdamW's is decoupled: p *= 1 - lr*weight_decay.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import real_arg
from gpunn.optim.base import Optimizer


def check_betas(beta1: Any, beta2: Any, where: str, betas: Any = None) -> tuple[float, float]:
    """(beta1, beta2), each in [0, 1), defaulting to (0.9, 0.999); `betas`, PyTorch's pair, is the
    same setting as the two (give one or the other)."""
    if betas is not None:
        if beta1 is not None or beta2 is not None:
            raise ValueError(f"{where}: argument 'betas' is the same setting as 'beta1' and 'beta2'; give one, got "
                             f"betas={betas!r} and beta1={beta1!r}, beta2={beta2!r}")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{where}: argument 'betas' must be a pair (beta1, beta2), got {betas!r}")
        beta1, beta2 = betas
        names = ("betas[0]", "betas[1]")
    else:
        names = ("beta1", "beta2")
    return (real_arg(0.9 if beta1 is None else beta1, names[0], where, 0.0, 1.0, hi_open=True, type_error=True),
            real_arg(0.999 if beta2 is None else beta2, names[1], where, 0.0, 1.0, hi_open=True, type_error=True))


class Adam(Optimizer):
    """Adaptive moments; `amsgrad` uses the running maximum of the second moment.
    lr (or learning_rate) defaults to 1e-3, (beta1, beta2) (or betas=, PyTorch's pair) to
    (0.9, 0.999); `params` may be omitted (see Optimizer.bind)."""

    _decoupled = False
    default_lr = 1e-3

    def __init__(self, params: Any = None, lr: float | None = None, beta1: float | None = None,
                 beta2: float | None = None, eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 learning_rate: float | None = None, betas: tuple[float, float] | None = None, **kwargs: Any) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, learning_rate=learning_rate, **kwargs)
        where = type(self).__name__
        self.beta1, self.beta2 = check_betas(beta1, beta2, where, betas)
        self.eps = real_arg(eps, "eps", where, 0, lo_open=True, type_error=True)
        self.amsgrad = bool(amsgrad)
        self._unit: Any = None  # bf16's fused step: (inv_scale = 1, found_inf = 0) device constants
        self._state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if self.amsgrad else ("exp_avg", "exp_avg_sq")

    # adam_step folds weight decay in itself (coupled or decoupled), so the base adds none
    _coupled_decay = False

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "amsgrad": self.amsgrad}

    def _update(self, g: Any) -> None:
        s = self._state
        # slots 0 and 1 of _scalars are lr and step: the op computes the bias corrections on the device
        self.backend.adam_step_device(self._flat_data, g, s["exp_avg"], s["exp_avg_sq"], self._scalars, self.beta1,
                                      self.beta2, self.eps, self.weight_decay, self._decoupled, zero_grad=False,
                                      max_v=s.get("max_exp_avg_sq"))


    def apply_step_mixed(self, half_grad: Any, inv_scale: Any = None, found_inf: Any = None) -> None:
        """Optimizer.apply_step_mixed with the unscale and the skip inside the fused update: one
        check pass over the 16-bit gradient (fp16: found_inf), then one kernel reading the 16-bit
        gradient, unscaling it in registers and returning at once when found_inf is set
        (`adam_step_mixed`). The float32 `.grad` views are not written on this path. Gradient
        clipping (which needs the unscaled float32 gradient) takes the base class's path."""
        if self.clipnorm is not None or self.clipvalue is not None or self.grad_sync is not None:
            super().apply_step_mixed(half_grad, inv_scale, found_inf)
            return
        self._check_mixed_args(half_grad, inv_scale, found_inf)
        backend = self.backend
        xp = backend.xp
        scaled = found_inf is not None
        if not scaled:
            if self._unit is None or not backend.is_native(self._unit[0]):
                self._unit = (xp.ones((1,), dtype=np.float32), xp.zeros((1,), dtype=np.int32))  # at the eager step
            inv_scale, found_inf = self._unit
        else:
            backend.nonfinite_check(half_grad, inv_scale, found_inf)
        step = self._slot_views["step"]
        if scaled:
            step += 1 - found_inf  # a skipped step does not count, as torch's skipped optimizer.step()
        else:
            step += 1.0
        s = self._state
        backend.adam_step_mixed(self._flat_data, half_grad, s["exp_avg"], s["exp_avg_sq"], self._scalars,
                                self.beta1, self.beta2, self.eps, self.weight_decay, self._decoupled, inv_scale,
                                found_inf, max_v=s.get("max_exp_avg_sq"))
        if scaled:
            self._step_unsure = True
        self._apply_constraints()


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): p *= 1 - lr*weight_decay before the step.
    lr (or learning_rate) defaults to 1e-3, weight_decay to 0.01 (PyTorch's; Keras's is 0.004)."""

    _decoupled = True

    def __init__(self, params: Any = None, lr: float | None = None, beta1: float | None = None,
                 beta2: float | None = None, eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False,
                 learning_rate: float | None = None, betas: tuple[float, float] | None = None, **kwargs: Any) -> None:
        super().__init__(params, lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, learning_rate=learning_rate, betas=betas, **kwargs)
