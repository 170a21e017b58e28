"""The self-test kernels are real CUDA: NVRTC (from the nvidia-cuda-nvrtc wheel, no driver needed)
compiles them, so what the emulator accepts here is also what the GPU compiler accepts."""
from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).with_name("selftest_kernels.cu")


def _libnvrtc() -> Path | None:
    for root in map(Path, sys.path):
        libdir = root / "nvidia" / "cuda_nvrtc" / "lib"
        hits = sorted(p for p in libdir.glob("libnvrtc.so*") if "builtins" not in p.name and ".alt." not in p.name)
        if hits:
            return hits[0]
    return None


def _nvrtc_compile(source: str, name: str, options: list[str]) -> tuple[int, str]:
    path = _libnvrtc()
    if path is None:
        pytest.skip("NVRTC wheel (nvidia-cuda-nvrtc-cu12) is not installed")
    lib = ctypes.CDLL(str(path))
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None) == 0
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        rc = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        return rc, log.value.decode(errors="replace")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def test_selftest_kernels_compile_under_nvrtc():
    rc, log = _nvrtc_compile(KERNELS.read_text(), KERNELS.name, ["--gpu-architecture=compute_80", "--std=c++17"])
    assert rc == 0, f"NVRTC rejected {KERNELS.name}:\n{log}"


def test_nvrtc_and_emulator_both_reject_infinity():
    rc, log = _nvrtc_compile('extern "C" __global__ void k(float* o) { o[0] = INFINITY; }', "inf.cu",
                             ["--gpu-architecture=compute_80"])
    assert rc != 0 and "INFINITY" in log
