"""Layers: the Layer base plus one module per family.

- base.py: Layer (build, forward, backward, parameters and buffers, state_dict, placement);
- container.py: Chain, the plain container (Residual branches and blocks are Chains);
- activations.py, conv.py, dense.py, dropout.py, maxout.py, normalization.py, pooling.py,
  reshape.py, residual.py, weight_norm.py, merge.py (Add, Concatenate, ...): one family each;
  kernel_options.py: what the weight-bearing layers share (the fused activation, the kernel
  regularizer and constraint);
- symbolic.py: Input and the symbolic tensors of the functional API; tape.py: recorded layer
  calls and their backward in reverse (gpunn.Model's graphs and subclasses run on it).

The model, Sequential (Chain + compile / fit / save), lives above in gpunn.train; the name
`gpunn.layers.Sequential` still resolves to it, with a DeprecationWarning. Layers compute through
the backend and import only what sits below them: gpunn.backend, gpunn.init, gpunn.regularizers,
gpunn.constraints, gpunn.parameter, gpunn.random, gpunn._checks.
"""
from gpunn.layers.activations import (ELU, GELU, SELU, Activation, CReLU, LeakyReLU, Linear, LogSoftmax, PReLU, ReLU,
                                      ReLU6, Sigmoid, SiLU, Softmax, Softplus, Softsign, Swish, Tanh, get_activation,
                                      output_activation, register_activation)
from gpunn.layers.base import Layer
from gpunn.layers.container import Chain
from gpunn.layers.conv import Conv2D
from gpunn.layers.data_format import image_data_format, use_image_data_format
from gpunn.layers.dense import Dense
from gpunn.layers.dropout import Dropout
from gpunn.layers.maxout import Maxout
from gpunn.layers.merge import Add, Average, Concatenate, Maximum, Multiply, Subtract
from gpunn.layers.normalization import BatchNorm, BatchNormalization, GroupNorm, InstanceNorm, LayerNorm
from gpunn.layers.pooling import AvgPool2D, GlobalAveragePooling2D, MaxPool2D
from gpunn.layers.reshape import Flatten
from gpunn.layers.residual import Residual, basic_block, projection_shortcut
from gpunn.layers.weight_norm import WeightNorm

# Keras's names for the same classes (a saved model records the class, so either name loads);
# BatchNormalization is a class of its own: Keras's momentum means the opposite of PyTorch's
MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D

__all__ = ["Activation", "Add", "Average", "AveragePooling2D", "AvgPool2D", "basic_block", "BatchNorm",
           "BatchNormalization", "Chain", "Concatenate", "Conv2D", "CReLU", "Dense", "Dropout", "ELU", "Flatten",
           "GELU", "get_activation", "GlobalAveragePooling2D", "GroupNorm", "image_data_format", "InstanceNorm",
           "Layer", "LayerNorm", "LeakyReLU", "Linear", "LogSoftmax", "Maximum", "Maxout", "MaxPool2D", "MaxPooling2D",
           "Multiply", "output_activation", "PReLU", "projection_shortcut", "register_activation", "ReLU", "ReLU6",
           "Residual", "SELU", "Sigmoid", "SiLU", "Softmax", "Softplus", "Softsign", "Subtract", "Swish", "Tanh",
           "use_image_data_format", "WeightNorm"]


def __getattr__(name: str) -> object:
    """`gpunn.layers.Sequential`, the name earlier releases documented, still resolves (with a
    DeprecationWarning) to the model, whose home is now gpunn.Sequential (gpunn/train/).

    It is looked up, not imported: gpunn.layers sits below gpunn.train, and `import gpunn`, which
    runs before any `from gpunn.layers import ...`, has already loaded it."""
    if name == "Sequential":
        import sys
        import warnings

        module = sys.modules.get("gpunn.train.sequential")
        if module is not None:
            warnings.warn("gpunn.layers.Sequential has moved: use gpunn.Sequential (or gpunn.train.Sequential); "
                          "gpunn.layers.Chain is the plain container", DeprecationWarning, stacklevel=2)
            return module.Sequential
    raise AttributeError(f"module 'gpunn.layers' has no attribute {name!r}")
