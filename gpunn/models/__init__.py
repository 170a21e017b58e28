"""The model zoo: reference networks as `gpunn.Sequential` models, built for their input shape.

mlp.py (mlp), cnn.py (lenet5, vgg_small, alexnet_small), resnet.py (resnet_small), and
_common.py (their argument checks and build step); `get_model(name)` and MODELS for the jobs.
It sits above gpunn.train (the models are Sequentials) and imports gpunn.layers and gpunn.train.
"""
from gpunn.models.cnn import alexnet_small, lenet5, vgg_small
from gpunn.models.mlp import mlp
from gpunn.models.resnet import resnet_small

MODELS = {"mlp": mlp, "lenet5": lenet5, "vgg_small": vgg_small, "alexnet_small": alexnet_small,
          "resnet_small": resnet_small}


def get_model(name: str, **kwargs):
    """Build a zoo model by name (see MODELS) with keyword arguments."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ValueError(f"get_model: argument 'name' must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[key](**kwargs)


__all__ = ["MODELS", "alexnet_small", "get_model", "lenet5", "mlp", "resnet_small", "vgg_small"]
