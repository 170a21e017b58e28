"""Optimizers over flat parameter buffers, gradient clipping, and learning-rate schedules."""
from gpunn.optim import schedules
from gpunn.optim.adadelta import Adadelta
from gpunn.optim.adagrad import Adagrad
from gpunn.optim.adam import Adam, AdamW
from gpunn.optim.base import Optimizer
from gpunn.optim.clip import clip_grad_norm, clip_grad_value
from gpunn.optim.nadam import Nadam
from gpunn.optim.registry import OPTIMIZERS, get_optimizer, register_optimizer
from gpunn.optim.rmsprop import RMSprop
from gpunn.optim.schedules import (CosineAnnealing, ExponentialDecay, LinearWarmup, MultiStep, OneCycle,
                                   ReduceLROnPlateau, Schedule, StepDecay)
from gpunn.optim.sgd import SGD

__all__ = ["OPTIMIZERS", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "CosineAnnealing", "ExponentialDecay",
           "LinearWarmup", "MultiStep", "Nadam", "OneCycle", "Optimizer", "RMSprop", "ReduceLROnPlateau", "Schedule",
           "StepDecay", "clip_grad_norm", "clip_grad_value", "get_optimizer", "register_optimizer", "schedules"]
