"""Where the CUDA sources live, and a lazy per-backend cache of compiled kernel modules.

In a source checkout the kernels are `<repo>/kernels/*.cu`; in an installed wheel, hatch's
force-include puts them at `gpunn/_kernels/`. Nothing here compiles at import: a module is built
the first time one of its kernels is asked for, through whatever loader the backend supplies
(`cupy.RawModule` for CuPy, `gpunn.emu.RawModule` for the emulator), and kept for the backend's life.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parents[2]  # .../gpunn
KERNEL_FAMILIES = ("im2col", "maxpool", "batchnorm", "adam", "conv", "gemm", "philox", "cast", "gemm_tc")

# A loader takes the CUDA source text and returns an object with get_function(name).
ModuleLoader = Callable[[str], Any]


def kernel_dir() -> Path:
    """The folder holding the .cu files: the wheel's copy first, then the checkout's."""
    for candidate in (_PACKAGE_DIR / "_kernels", _PACKAGE_DIR.parent / "kernels"):
        if (candidate / "im2col.cu").is_file():
            return candidate
    raise FileNotFoundError(
        "gpunn: cannot find the CUDA kernel sources: looked for gpunn/_kernels/ (installed wheel) and "
        f"kernels/ next to the package (source checkout) under {_PACKAGE_DIR.parent}")


def kernel_path(family: str) -> Path:
    if family not in KERNEL_FAMILIES:
        raise ValueError(f"kernel_path: argument 'family' must be one of {KERNEL_FAMILIES}, got {family!r}")
    return kernel_dir() / f"{family}.cu"


#: a family's 16-bit (__half / __nv_bfloat16) variants sit between these marker lines: they need
#: cuda_fp16.h and cuda_bf16.h, which a CUDA install may not hand NVRTC, so the float32/float64
#: kernels compile in a module without them and the 16-bit ones in a second module, on first use
_HALF_BLOCK = re.compile(r"^[ \t]*// GPUNN_HALF_BEGIN.*?^[ \t]*// GPUNN_HALF_END[^\n]*$", re.M | re.S)
HALF_SUFFIXES = ("_f16", "_bf16")


def read_kernel_source(family: str, half: bool = True) -> str:
    """The text of kernels/<family>.cu; with half=False, without its 16-bit sections (each kept as
    blank lines, so compiler line numbers still match the file)."""
    text = kernel_path(family).read_text(encoding="utf-8")
    if half:
        return text
    return _HALF_BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)


class KernelCache:
    """Compiled modules of one backend, built on first use and cached by family name."""

    def __init__(self, loader: ModuleLoader) -> None:
        self._loader = loader
        self._modules: dict[str, Any] = {}
        self._functions: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def function(self, family: str, name: str) -> Any:
        """The kernel `name` from `kernels/<family>.cu`, compiling the family if needed."""
        key = (family, name)
        fn = self._functions.get(key)
        if fn is not None:
            return fn
        half = name.endswith(HALF_SUFFIXES)
        module_key = f"{family}:half" if half else family
        with self._lock:
            module = self._modules.get(module_key)
            if module is None:
                module = self._loader(read_kernel_source(family, half=half))
                self._modules[module_key] = module
            fn = self._functions[key] = module.get_function(name)
        return fn

    def compiled_families(self) -> list[str]:
        """The families with a compiled module (a family whose 16-bit variants were used too is
        listed once)."""
        return sorted({k.split(":")[0] for k in self._modules})
