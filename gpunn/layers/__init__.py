"""Layers: the Layer base plus one module per family."""
from gpunn.layers.activations import (ELU, GELU, SELU, Activation, CReLU, LeakyReLU, Linear, LogSoftmax, PReLU, ReLU,
                                      ReLU6, Sigmoid, SiLU, Softmax, Softplus, Softsign, Swish, Tanh, get_activation,
                                      register_activation)
from gpunn.layers.base import Layer
from gpunn.layers.container import Sequential
from gpunn.layers.conv import Conv2D
from gpunn.layers.dense import Dense
from gpunn.layers.dropout import Dropout
from gpunn.layers.maxout import Maxout
from gpunn.layers.normalization import BatchNorm, GroupNorm, InstanceNorm, LayerNorm
from gpunn.layers.pooling import AvgPool2D, MaxPool2D
from gpunn.layers.reshape import Flatten
from gpunn.layers.residual import Residual, basic_block, projection_shortcut
from gpunn.layers.weight_norm import WeightNorm

__all__ = ["ELU", "GELU", "SELU", "Activation", "AvgPool2D", "BatchNorm", "CReLU", "Conv2D", "Dense", "Dropout",
           "Flatten", "GroupNorm", "InstanceNorm", "Layer", "LayerNorm", "LeakyReLU", "Linear", "LogSoftmax",
           "MaxPool2D", "Maxout", "PReLU", "ReLU", "ReLU6", "Residual", "Sequential", "SiLU", "Sigmoid",
           "Softmax", "Softplus", "Softsign", "Swish", "Tanh", "WeightNorm", "basic_block", "get_activation",
           "projection_shortcut", "register_activation"]
