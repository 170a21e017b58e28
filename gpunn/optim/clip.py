"""Gradient clipping over a list of parameters (or a model), for use without an optimizer.

An optimizer's own `clip_grad_norm` / `clip_grad_value` methods, and its `clipnorm` / `clipvalue`
settings, work on the flat gradient buffer in one op; these functions loop over parameters.
"""
from __future__ import annotations

import math
from typing import Any

from gpunn._checks import real_arg
from gpunn.backend import Backend, get_backend
from gpunn.parameter import Parameter


def _grads(params: Any, where: str) -> list[Any]:
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, Parameter):
        params = [params]
    out = []
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{where}: argument 'params[{i}]' must be a gpunn.Parameter, got {type(p).__name__}")
        if p.trainable:
            out.append(p.grad)
    return out


def clip_grad_norm(params: Any, max_norm: float) -> float:
    """Scale the gradients of the trainable `params` together so their global L2 norm is at most
    `max_norm` (PyTorch's clip_grad_norm_, with its 1e-6 guard); returns the norm before clipping."""
    where = "clip_grad_norm"
    max_norm = real_arg(max_norm, "max_norm", where, 0, lo_open=True, type_error=True)
    grads = _grads(params, where)
    owner = getattr(params, "backend", None)
    backend = owner if isinstance(owner, Backend) else get_backend()
    total = math.fsum(backend.squared_norm(g.ravel()) for g in grads)
    norm = math.sqrt(total)
    if not math.isfinite(norm):
        raise FloatingPointError(f"{where}: the gradient norm is {norm}; the gradients hold inf or NaN")
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef
    return norm


def clip_grad_value(params: Any, clip_value: float) -> None:
    """Clamp every gradient element of the trainable `params` into [-clip_value, clip_value], on
    the backend of `params` when it is a model or layer, else on the current one."""
    where = "clip_grad_value"
    clip_value = real_arg(clip_value, "clip_value", where, 0, lo_open=True, type_error=True)
    owner = getattr(params, "backend", None)
    xp = (owner if isinstance(owner, Backend) else get_backend()).xp
    for g in _grads(params, where):
        xp.clip(g, -clip_value, clip_value, out=g)
