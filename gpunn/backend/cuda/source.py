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


#: the CUDA headers a kernel source may include that NVRTC (no default include path) must be shown
_CUDA_HEADER = re.compile(r"^[ \t]*#[ \t]*include[ \t]*<(cuda_fp16|cuda_bf16|mma)\.h>", re.M)


def _include_candidates() -> list[Path]:
    """Folders that may hold cuda_fp16.h / cuda_bf16.h / mma.h, in order of preference: $CUDA_PATH,
    $CUDA_HOME (the toolkit whose NVRTC CuPy most likely uses), the pip wheels' headers
    (nvidia-cuda-runtime-cu12: nvidia/cuda_runtime/include; CUDA 13 wheels: nvidia/cu13/include),
    then /usr/local/cuda/include. Only the filesystem is looked at: nothing touches CUDA."""
    import os  # noqa: PLC0415 - only the CuPy compile path needs these
    import sys  # noqa: PLC0415
    import sysconfig  # noqa: PLC0415

    found: list[Path] = [Path(os.environ[v]) / "include" for v in ("CUDA_PATH", "CUDA_HOME") if os.environ.get(v)]
    roots = {Path(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    roots.update(Path(p) for p in sys.path if p.endswith("site-packages"))
    found += [root / "nvidia" / sub / "include" for root in sorted(roots) for sub in ("cuda_runtime", "cu13", "cu12")]
    found.append(Path("/usr/local/cuda/include"))
    return found


_INCLUDE_CACHE: dict[bool, Path | None] = {}


def find_cuda_include(need_mma: bool = False) -> Path | None:
    """The first candidate folder (see _include_candidates) holding cuda_fp16.h and cuda_bf16.h, and
    with need_mma also mma.h and the crt/mma.h it includes (the pip runtime wheel lacks crt/mma.h);
    None when there is none. Looked up once per process, on first use (never at import)."""
    if need_mma not in _INCLUDE_CACHE:
        headers = ("cuda_fp16.h", "cuda_bf16.h") + (("mma.h", "crt/mma.h") if need_mma else ())
        _INCLUDE_CACHE[need_mma] = next(
            (inc for inc in _include_candidates() if all((inc / h).is_file() for h in headers)), None)
    return _INCLUDE_CACHE[need_mma]


def nvrtc_include_options(source: str) -> tuple[str, ...]:
    """The `-I<folder>` NVRTC needs to compile `source`: none unless it includes cuda_fp16.h,
    cuda_bf16.h or mma.h (the 16-bit and tensor-core modules), and none when no folder is found
    (the compile then fails with NVRTC's own "cannot open source file" error)."""
    names = set(_CUDA_HEADER.findall(source))
    if not names:
        return ()
    inc = find_cuda_include(need_mma="mma" in names)
    return () if inc is None else (f"-I{inc}",)


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
