"""Helpers the DLPack tests share: a memory address, and a producer that speaks only DLPack."""
from __future__ import annotations

import numpy as np


def ptr(a: np.ndarray) -> int:
    """The address of `a`'s first element: equal addresses mean shared memory, no copy."""
    return a.__array_interface__["data"][0]


class DLPackOnly:
    """A CPU array that offers nothing but __dlpack__ / __dlpack_device__ (no __array__)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (1, 0)
