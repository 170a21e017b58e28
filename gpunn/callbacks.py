"""Callbacks for fit(): see gpunn.train.callbacks, gpunn.train.history and gpunn.train.monitor."""
from gpunn.train.callbacks import (Callback, CSVLogger, EarlyStopping, LambdaCallback, LearningRateScheduler,
                                   ModelCheckpoint, ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN)
from gpunn.train.history import History
from gpunn.train.monitor import TrainingMonitor

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LambdaCallback", "LearningRateScheduler",
           "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau", "TerminateOnNaN", "TrainingMonitor"]
