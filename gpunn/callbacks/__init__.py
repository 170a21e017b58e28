"""Callbacks for fit(): the hooks it calls at the start and end of training, of each epoch and
of each batch.

- base.py: the protocol (Callback, CallbackList) and LambdaCallback;
- builtin.py: EarlyStopping, ModelCheckpoint, LearningRateScheduler, ReduceLROnPlateau,
  TerminateOnNaN, CSVLogger, ProgbarLogger;
- history.py: History (what fit() returns) and its plots; monitor.py: TrainingMonitor, the
  diagnostics of activations and gradients; tensorboard.py: TensorBoard, event files through
  tensorboardX (the `tensorboard` extra, imported when the callback is made).

It sits below gpunn.train: a callback sees the model only through the methods it calls.
"""
from gpunn.callbacks.base import Callback, CallbackList, LambdaCallback
from gpunn.callbacks.builtin import (CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint, ProgbarLogger,
                                     ReduceLROnPlateau, TerminateOnNaN)
from gpunn.callbacks.history import History
from gpunn.callbacks.monitor import TrainingMonitor
from gpunn.callbacks.tensorboard import TensorBoard

__all__ = ["CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History", "LambdaCallback",
           "LearningRateScheduler", "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau", "TensorBoard",
           "TerminateOnNaN", "TrainingMonitor"]
