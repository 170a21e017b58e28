"""Layers: the Layer base plus one module per family."""
from gpunn.layers.activations import Activation, Linear, ReLU, Sigmoid, Softmax, Tanh, get_activation
from gpunn.layers.base import Layer
from gpunn.layers.container import Sequential
from gpunn.layers.conv import Conv2D
from gpunn.layers.dense import Dense
from gpunn.layers.dropout import Dropout
from gpunn.layers.pooling import AvgPool2D, MaxPool2D
from gpunn.layers.reshape import Flatten

__all__ = ["Activation", "AvgPool2D", "Conv2D", "Dense", "Dropout", "Flatten", "Layer", "Linear", "MaxPool2D",
           "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh", "get_activation"]
