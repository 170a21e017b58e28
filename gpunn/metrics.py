"""Metrics for compile(metrics=[...]) and for direct use: see gpunn.train.metrics."""
from gpunn.train.metrics import (accuracy, binary_accuracy, confusion_matrix, get_metric, mae, mse,
                                 top_k_accuracy)

__all__ = ["accuracy", "binary_accuracy", "confusion_matrix", "get_metric", "mae", "mse", "top_k_accuracy"]
