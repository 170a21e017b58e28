"""The kernel plumbing: per-op switching, lazy compilation, source lookup, backend construction."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from gpunn.backend.cuda import source as kernel_source
from gpunn.backend.cuda.kernel_ops import KERNEL_OPS, resolve_use_kernels
from gpunn.errors import BackendUnavailableError
from tests.kernel_support import get_kernel_backend, reference


def _fresh(use_kernels=True):
    get_kernel_backend("emulated")  # skip cleanly without the emulator
    from gpunn.backend.cuda.emulated import EmulatedBackend
    return EmulatedBackend(use_kernels=use_kernels)


def test_resolve_use_kernels():
    assert resolve_use_kernels(True) == KERNEL_OPS
    assert resolve_use_kernels(False) == frozenset()
    assert resolve_use_kernels(["im2col", "adam_step"]) == {"im2col", "adam_step"}
    with pytest.raises(ValueError, match="'use_kernels' names ops without a kernel: \\['conv9d'\\]"):
        resolve_use_kernels({"im2col", "conv9d"})
    with pytest.raises(TypeError, match="'use_kernels' must be True, False or a set"):
        resolve_use_kernels("im2col")
    with pytest.raises(TypeError, match="'use_kernels'"):
        resolve_use_kernels(1)


def test_compiles_lazily_and_only_the_ops_switched_on():
    be = _fresh({"im2col"})
    assert be.kernels.compiled_families() == []  # nothing at construction
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(be.im2col(x, 3, 3, (1, 1), (0, 0), (1, 1)),
                                  reference().im2col(x, 3, 3, (1, 1), (0, 0), (1, 1)))
    y, arg = be.maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))  # switched off: the generic path
    assert be.kernels.compiled_families() == ["im2col"]
    be.use_kernels = True
    be.maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
    assert be.kernels.compiled_families() == ["im2col", "maxpool"]
    be.use_kernels = False
    assert be.use_kernels == frozenset()


def test_unsupported_dtype_takes_the_generic_path():
    be = _fresh()
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float16)
    # batch norm's 16-bit kernels take float32 running statistics: with float16 ones, the generic op
    # runs and nothing compiles (tests/backend/cuda/test_launchers_batchnorm_half.py has the kernel path)
    c = np.ones(2, np.float16)
    y = be.batchnorm_forward_infer(x, c, c * 0, c * 0, c, 1e-5)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, reference().batchnorm_forward_infer(x, c, c * 0, c * 0, c, 1e-5))
    assert be.kernels.compiled_families() == []
    # max-pool has one (maxpool.cu's GPUNN_HALF section): float16 now reaches it
    y, arg = be.maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
    y_ref, arg_ref = reference().maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    assert be.kernels.compiled_families() == ["maxpool"]


def test_emulated_backend_is_registered():
    get_kernel_backend("emulated")
    import gpunn
    with gpunn.use_backend("emulated") as be:
        from gpunn.emu.capture import device_numpy
        assert be.name == "emulated" and be.device == "cpu-emulated-cuda" and be.xp is device_numpy
        assert be.use_kernels == KERNEL_OPS


def test_emulated_backend_needs_gpp(monkeypatch):
    from gpunn.backend.cuda import emulated
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BackendUnavailableError, match="g\\+\\+"):
        emulated.EmulatedBackend()


def test_importing_the_backends_imports_no_cupy_and_compiles_nothing():
    code = ("import sys, gpunn.backend.cuda.cupy_backend, gpunn.backend.cuda.emulated, gpunn.backend.cuda.launchers; "
            "print('cupy' in sys.modules, 'gpunn.emu' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_kernel_dir_in_checkout_and_in_wheel(tmp_path, monkeypatch):
    assert kernel_source.kernel_dir().name == "kernels"
    assert "extern \"C\" __global__ void im2col_f32" in kernel_source.read_kernel_source("im2col")
    wheel_pkg = tmp_path / "site-packages" / "gpunn"
    (wheel_pkg / "_kernels").mkdir(parents=True)
    for family in kernel_source.KERNEL_FAMILIES:
        shutil.copy(kernel_source.kernel_path(family), wheel_pkg / "_kernels" / f"{family}.cu")
    monkeypatch.setattr(kernel_source, "_PACKAGE_DIR", wheel_pkg)
    assert kernel_source.kernel_dir() == wheel_pkg / "_kernels"
    monkeypatch.setattr(kernel_source, "_PACKAGE_DIR", tmp_path / "nowhere" / "gpunn")
    with pytest.raises(FileNotFoundError, match="gpunn/_kernels"):
        kernel_source.kernel_dir()
    with pytest.raises(ValueError, match="'family' must be one of"):
        kernel_source.kernel_path("softmax")


def test_mixed_dtypes_take_the_generic_path():
    be = _fresh()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    gamma, beta = np.ones(2, np.float64), np.zeros(2, np.float64)
    got = be.batchnorm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5)
    want = reference().batchnorm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert be.kernels.compiled_families() == []
