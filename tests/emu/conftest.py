"""Shared fixtures for the emulator self-tests: the self-test kernels compile once per session
(and once per machine, through the build cache)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

KERNELS = Path(__file__).with_name("selftest_kernels.cu")


def _have_compiler() -> bool:
    return shutil.which("g++") is not None


requires_gxx = pytest.mark.skipif(not _have_compiler(), reason="the CUDA emulator needs g++")


@pytest.fixture(scope="session")
def selftest_source() -> str:
    return KERNELS.read_text()


@pytest.fixture(scope="session")
def selftest_module(selftest_source):
    if not _have_compiler():
        pytest.skip("the CUDA emulator needs g++")
    from gpunn.emu import RawModule
    mod = RawModule(selftest_source, filename=KERNELS.name)
    mod.compile()
    return mod
