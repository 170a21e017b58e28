"""Optimizers over flat parameter buffers, gradient clipping, and learning-rate schedules.

- base.py: Optimizer, which packs the trainable parameters into one flat data buffer and one flat
  grad buffer, so a fused backend op (`adam_step_device`) updates the whole model in one launch;
  its per-step values (lr, step count, bias corrections) live in device memory, so a step splits
  into `prepare_step()` (host) and `apply_step()` (device, what a CUDA graph captures);
- sgd.py, adagrad.py, rmsprop.py, adadelta.py, adam.py (Adam, AdamW), nadam.py: one each, in
  PyTorch's form and defaults; built on parameters (PyTorch) or without them and bound later by
  `bind` / compile (Keras), with `lr` or `learning_rate`;
- registry.py: optimizers by name for `compile(optimizer="adam")`, with Keras's defaults for the
  name on request (`KERAS_DEFAULTS`, `get_optimizer(..., keras_defaults=True)`);
- clip.py: gradient clipping; schedules.py: learning-rate schedules; grad_scaler.py: fp16's
  dynamic loss scaling (GradScaler, torch's schedule, state on the device).

It imports only the backend (whose ops/optim.py holds the update arithmetic) and the bottom of
the stack (gpunn.parameter, gpunn._checks); layers, models and training are above it.
"""
from gpunn.optim import schedules
from gpunn.optim.adadelta import Adadelta
from gpunn.optim.adagrad import Adagrad
from gpunn.optim.adam import Adam, AdamW
from gpunn.optim.base import Optimizer
from gpunn.optim.clip import clip_grad_norm, clip_grad_value
from gpunn.optim.distributed import DistributedOptimizer, GradientSync
from gpunn.optim.grad_scaler import GradScaler
from gpunn.optim.nadam import Nadam
from gpunn.optim.registry import KERAS_DEFAULTS, OPTIMIZERS, get_optimizer, register_optimizer
from gpunn.optim.rmsprop import RMSprop
from gpunn.optim.schedules import (CosineAnnealing, ExponentialDecay, LinearWarmup, MultiStep, OneCycle,
                                   ReduceLROnPlateau, Schedule, StepDecay)
from gpunn.optim.sgd import SGD

__all__ = ["KERAS_DEFAULTS", "OPTIMIZERS", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "CosineAnnealing", "DistributedOptimizer", "ExponentialDecay", "GradScaler", "GradientSync",
           "LinearWarmup", "MultiStep", "Nadam", "OneCycle", "Optimizer", "RMSprop", "ReduceLROnPlateau", "Schedule",
           "StepDecay", "clip_grad_norm", "clip_grad_value", "get_optimizer", "register_optimizer", "schedules"]
