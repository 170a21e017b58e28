"""The CPU backend: NumPy with the generic ops unchanged."""
from __future__ import annotations

import numpy as np

from gpunn.backend.base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    device = "cpu"

    def __init__(self) -> None:
        super().__init__(np)
