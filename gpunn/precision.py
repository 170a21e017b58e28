"""Precision policies: what a training step stores and computes in which floating-point format.

    model.compile(loss, "adam", precision="bf16-mixed")      # or "fp32" (default), "tf32", "fp16-mixed"

The four policies, named as PyTorch Lightning names them:

| policy       | weights (masters, optimizer state) | layer compute, activations, grads | matrix products          | loss scaling |
|--------------|------------------------------------|-----------------------------------|--------------------------|--------------|
| "fp32"       | float32                            | float32                           | float32                  | no           |
| "tf32"       | float32                            | float32                           | TF32 operands, fp32 acc  | no           |
| "bf16-mixed" | float32                            | bfloat16                          | bf16 operands, fp32 acc  | no           |
| "fp16-mixed" | float32                            | float16                           | fp16 operands, fp32 acc  | dynamic      |

In every policy, batch-norm statistics, softmax (the Softmax and LogSoftmax layers), the losses
and the metrics compute in float32, as under torch.autocast. This module holds the policy table
and the thread-local *autocast state* that layers read while a mixed-precision step runs (the
dtype to compute in, and the device loss scale that weight penalties' gradients are multiplied
by); the training-side plumbing (half copies of the weights, the scaler, the update) is
gpunn/train/mixed_precision.py. It imports nothing of gpunn, so every layer of the stack may read it.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

FLOAT32 = np.dtype(np.float32)
FLOAT16 = np.dtype(np.float16)
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True)
class Policy:
    """One precision policy (see the module docstring's table)."""

    name: str
    compute_dtype: np.dtype  # what layers compute in and activations and gradients are stored in
    matmul_precision: str  # the backend's float32 matmul setting while the step runs: "highest" or "tf32"
    loss_scaling: bool  # dynamic loss scaling (fp16's narrow exponent range needs it)

    @property
    def mixed(self) -> bool:
        """Whether layers compute in a 16-bit format (a half copy of the weights is kept)."""
        return self.compute_dtype != FLOAT32

    def __str__(self) -> str:
        return self.name


POLICIES: dict[str, Policy] = {
    "fp32": Policy("fp32", FLOAT32, "highest", False),
    "tf32": Policy("tf32", FLOAT32, "tf32", False),
    "bf16-mixed": Policy("bf16-mixed", BFLOAT16, "highest", False),
    "fp16-mixed": Policy("fp16-mixed", FLOAT16, "highest", True),
}


def get_policy(precision: Any, where: str = "precision") -> Policy:
    """The Policy named `precision` (one of POLICIES' names, or a Policy); an error naming the
    argument and the names otherwise."""
    if isinstance(precision, Policy):
        return precision
    if isinstance(precision, str) and precision in POLICIES:
        return POLICIES[precision]
    raise ValueError(f"{where}: argument 'precision' must be one of {sorted(POLICIES)}, got {precision!r}")


def accumulation_dtype(dtype: Any) -> np.dtype:
    """What a sum over many values of `dtype` accumulates in: float32 for the 16-bit formats
    (their reductions, such as a bias gradient over a batch, are fp32 as on tensor cores), else dtype."""
    dt = np.dtype(dtype)
    return FLOAT32 if dt in (FLOAT16, BFLOAT16) else dt


# -- the autocast state, per thread ------------------------------------------------------------
_state = threading.local()


def autocast_dtype() -> np.dtype | None:
    """The 16-bit dtype layers compute in inside `autocast(...)`, or None (outside: each layer's own)."""
    return getattr(_state, "dtype", None)


def grad_scale() -> Any:
    """The loss scale (a 1-element float32 device array) of the running fp16 step, or None.

    Gradients that do not come from the loss's backward, such as a kernel_regularizer's, are
    multiplied by it, so that unscaling divides every part of the gradient by the same factor."""
    return getattr(_state, "scale", None)


@contextlib.contextmanager
def _state_as(dtype: np.dtype | None, scale: Any) -> Iterator[None]:
    previous = (autocast_dtype(), grad_scale())
    _state.dtype, _state.scale = dtype, scale
    try:
        yield
    finally:
        _state.dtype, _state.scale = previous


def autocast(dtype: Any, scale: Any = None) -> contextlib.AbstractContextManager:
    """Layers compute in `dtype` (float16 or bfloat16) in this block, in this thread; `scale`: the
    device loss scale (see grad_scale), or None. Nests: the previous state is restored on exit."""
    dt = np.dtype(dtype)
    if dt not in (FLOAT16, BFLOAT16):
        raise TypeError(f"autocast: argument 'dtype' must be float16 or bfloat16 (ml_dtypes.bfloat16), got {dtype!r}")
    return _state_as(dt, scale)


def full_precision() -> contextlib.AbstractContextManager:
    """No autocast in this block (each layer computes in its own dtype), whatever encloses it."""
    return _state_as(None, None)
