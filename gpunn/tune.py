"""Hyper-parameter random search: see gpunn.train.tune."""
from gpunn.train.tune import Choice, LogUniform, SearchResult, Trial, Uniform, random_search

__all__ = ["Choice", "LogUniform", "SearchResult", "Trial", "Uniform", "random_search"]
