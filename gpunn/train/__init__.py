"""The Keras-style training workflow: TrainingMixin (compile/fit/evaluate/predict), callbacks,
metrics, history plots, safe checkpoints, diagnostics, random search and ensembles.

gpunn.layers.container imports gpunn.train.model while gpunn.layers is still initialising, so
this package imports nothing eagerly; its public names are resolved on first access.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingMixin": "model",
    "Callback": "callbacks", "CallbackList": "callbacks", "EarlyStopping": "callbacks", "ModelCheckpoint": "callbacks",
    "LearningRateScheduler": "callbacks", "ReduceLROnPlateau": "callbacks", "TerminateOnNaN": "callbacks",
    "CSVLogger": "callbacks", "LambdaCallback": "callbacks", "ProgbarLogger": "callbacks",
    "History": "history", "TrainingMonitor": "monitor",
    "save_model": "io", "load_model": "io", "save_weights": "io", "load_weights": "io", "CheckpointError": "io",
    "read_safetensors": "safetensors", "write_safetensors": "safetensors", "SafetensorsError": "safetensors",
    "random_search": "tune", "LogUniform": "tune", "Uniform": "tune", "Choice": "tune", "SearchResult": "tune",
    "Ensemble": "ensemble",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gpunn.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gpunn.train' has no attribute {name!r}")
