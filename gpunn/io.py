"""Saving and loading models and weights (safetensors + JSON, never pickle): see gpunn.train.io."""
from gpunn.train.config import ConfigError, model_from_config
from gpunn.train.io import CheckpointError, load_model, load_weights, save_model, save_weights
from gpunn.train.registry import register_serializable
from gpunn.train.safetensors import SafetensorsError, read_safetensors, write_safetensors

__all__ = ["CheckpointError", "ConfigError", "SafetensorsError", "load_model", "load_weights", "model_from_config",
           "read_safetensors", "register_serializable", "save_model", "save_weights", "write_safetensors"]
