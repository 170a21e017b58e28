"""Saving and loading models and weights: safetensors plus JSON, never pickle.

- checkpoint.py: save_model / load_model / save_weights / load_weights, the file format;
- config.py: architectures as plain JSON (get_config / model_from_config), checked before
  anything is constructed;
- graph_check.py: the graph of a functional gpunn.Model (and a subclass's build shapes), checked
  as hostile JSON before anything is built;
- registry.py: the only classes a config or checkpoint may name;
- meta.py: CheckpointError and the validation of a checkpoint's metadata;
- safetensors.py: the tensor file, written and read with the `safetensors` package, plus gpunn's
  checksum and its validation (files of gpunn's earlier, hand-written codec still load);
- atomic.py: the atomic write (a temporary file renamed over the target);
- onnx.py: export_onnx / to_onnx, a built model as an ONNX graph that ONNX Runtime runs (the
  `onnx` extra, imported when exporting).

It sits below gpunn.train: a model is saved through the methods it has, and gpunn.train
registers Sequential and Model here so that a checkpoint can name them.
"""
from gpunn.io.checkpoint import load_model, load_weights, save_model, save_weights
from gpunn.io.config import ConfigError, model_from_config
from gpunn.io.meta import CheckpointError
from gpunn.io.onnx import OnnxExportError, export_onnx, to_onnx
from gpunn.io.registry import register_serializable
from gpunn.io.safetensors import SafetensorsError, read_safetensors, write_safetensors

__all__ = ["CheckpointError", "ConfigError", "SafetensorsError", "load_model", "load_weights", "model_from_config",
           "OnnxExportError", "export_onnx", "read_safetensors", "register_serializable", "save_model", "save_weights",
           "to_onnx", "write_safetensors"]
