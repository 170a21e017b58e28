"""Saving and loading models and weights (safetensors + JSON, never pickle): see gpunn.train.io."""
from gpunn.train.io import CheckpointError, load_model, load_weights, save_model, save_weights
from gpunn.train.safetensors import SafetensorsError, read_safetensors, write_safetensors

__all__ = ["CheckpointError", "SafetensorsError", "load_model", "load_weights", "read_safetensors", "save_model",
           "save_weights", "write_safetensors"]
