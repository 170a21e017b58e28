"""Backend detection and selection, with each missing CUDA piece simulated."""
from __future__ import annotations

import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import gpunn
from gpunn.backend import detect, registry
from gpunn.errors import BackendUnavailableError


@pytest.fixture
def fresh_detection(monkeypatch):
    """Forget cached detection and backend choices before and after the test."""
    detect._reset_cache()
    registry._reset_for_tests()
    yield
    detect._reset_cache()
    registry._reset_for_tests()


def _fake_cupy(driver=True, devices=1, nvrtc=True) -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "99.0-fake"

    def driver_version():
        if not driver:
            raise RuntimeError("cudaErrorInsufficientDriver")
        return 12040

    def device_count():
        return devices

    runtime = types.SimpleNamespace(driverGetVersion=driver_version, getDeviceCount=device_count,
                                    getDeviceProperties=lambda i: {"name": b"Fake GPU", "totalGlobalMem": 2**34},
                                    runtimeGetVersion=lambda: 12040)

    def nvrtc_version():
        if not nvrtc:
            raise OSError("libnvrtc.so.12: cannot open shared object file")
        return (12, 4)

    cupy.cuda = types.SimpleNamespace(runtime=runtime, nvrtc=types.SimpleNamespace(getVersion=nvrtc_version))

    class RawKernel:
        def __init__(self, code, name):
            pass

        def compile(self):
            pass

    cupy.RawKernel = RawKernel
    return cupy


@pytest.mark.parametrize("fake, missing, words", [
    (None, "package", "not installed"),
    (_fake_cupy(driver=False), "driver", "driver"),
    (_fake_cupy(devices=0), "device", "no CUDA device"),
    (_fake_cupy(nvrtc=False), "nvrtc", "NVRTC"),
])
def test_cuda_status_names_the_missing_piece(monkeypatch, fresh_detection, fake, missing, words):
    monkeypatch.setitem(sys.modules, "cupy", fake)  # None makes `import cupy` raise ImportError
    status = gpunn.cuda_status()
    assert not status.usable
    assert status.missing == missing
    assert words in status.reason
    with pytest.raises(BackendUnavailableError, match=f"missing {missing}"):
        gpunn.set_backend("cupy")
    # auto falls back to NumPy and says why
    assert gpunn.set_backend("auto").name == "numpy"
    assert missing == "package" or words in registry.selection_reason()


def test_cuda_status_usable_with_working_cupy(monkeypatch, fresh_detection):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    status = gpunn.cuda_status()
    assert status.usable and status.device_name == "Fake GPU" and status.missing is None


def test_cuda_status_is_cached_and_never_raises(monkeypatch, fresh_detection):
    calls = []

    def exploding_probe():
        calls.append(1)
        raise SystemError("boom")

    monkeypatch.setattr(detect, "_probe", exploding_probe)
    first = gpunn.cuda_status()
    second = gpunn.cuda_status()
    assert not first.usable and "boom" in first.reason
    assert first is second and len(calls) == 1


def test_cuda_status_does_not_hang(monkeypatch, fresh_detection):
    release = threading.Event()
    monkeypatch.setattr(detect, "PROBE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(detect, "_probe", lambda: release.wait(5) or detect.CudaStatus(True, "late"))
    status = gpunn.cuda_status()
    release.set()
    assert not status.usable and status.missing == "timeout"


def test_set_and_get_backend(fresh_detection):
    be = gpunn.set_backend("numpy")
    assert gpunn.get_backend() is be
    assert be.name == "numpy" and be.xp is np and be.default_dtype == np.float32


def test_use_backend_is_scoped_and_restores(fresh_detection):
    gpunn.set_backend("numpy")
    outer = gpunn.get_backend()
    with gpunn.use_backend("numpy") as inner:
        assert gpunn.get_backend() is inner
    assert gpunn.get_backend() is outer


def test_use_backend_is_per_thread(fresh_detection):
    seen = []
    with gpunn.use_backend("numpy"):
        t = threading.Thread(target=lambda: seen.append(registry._local.__dict__.get("stack")))
        t.start()
        t.join()
    assert seen == [None]


def test_unknown_backend_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"argument 'name' must be one of .*'numpy'"):
        gpunn.set_backend("tpu")
    with pytest.raises(TypeError, match="argument 'name' must be a str"):
        gpunn.set_backend(3)


def _env_without_backend() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if k != "GPUNN_BACKEND"}


def _run(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = _env_without_backend()
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_env_var_selects_backend():
    out = _run("import gpunn; print(gpunn.get_backend().name)", {"GPUNN_BACKEND": "numpy"})
    assert out.returncode == 0 and out.stdout.strip() == "numpy"
    bad = _run("import gpunn; gpunn.get_backend()", {"GPUNN_BACKEND": "nonsense"})
    assert bad.returncode != 0 and "must be one of" in bad.stderr


@pytest.fixture
def process_default(monkeypatch, fresh_detection):
    """get_backend() answers the process default, not the test's use_backend("numpy") block."""
    monkeypatch.setattr(registry, "_local", threading.local())


@pytest.mark.parametrize("value", ["garbage", "tpu", "numpy,cupy"])
def test_a_bad_env_backend_names_the_variable_the_value_and_the_choices(monkeypatch, process_default, value):
    """GPUNN_BACKEND=garbage used to be reported as set_backend's argument 'name', which the user
    never passed."""
    monkeypatch.setenv("GPUNN_BACKEND", value)
    with pytest.raises(ValueError) as info:
        registry.get_backend()
    msg = str(info.value)
    assert msg.startswith("environment variable GPUNN_BACKEND must be one of ")
    assert repr(value) in msg and all(repr(n) in msg for n in registry.available_names())
    assert "set_backend" not in msg
    with pytest.raises(ValueError, match="GPUNN_BACKEND"):  # not cached: every call says so
        registry.get_backend()


def test_env_backend_is_case_and_space_tolerant_and_empty_means_auto(monkeypatch, process_default):
    monkeypatch.setenv("GPUNN_BACKEND", " NumPy ")
    assert registry.get_backend().name == "numpy"
    registry._reset_for_tests()
    monkeypatch.setenv("GPUNN_BACKEND", "  ")
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert registry.get_backend().name == "numpy" and registry.selection_reason().startswith("auto")


def test_an_unusable_env_backend_names_the_variable(monkeypatch, process_default):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setenv("GPUNN_BACKEND", "cupy")
    with pytest.raises(BackendUnavailableError, match=r"^environment variable GPUNN_BACKEND='cupy': .*missing package"):
        registry.get_backend()


def test_a_bad_env_backend_in_the_cli_is_one_line_without_traceback():
    out = subprocess.run([sys.executable, "-m", "gpunn", "info"], capture_output=True, text=True, timeout=120,
                         env={**_env_without_backend(), "GPUNN_BACKEND": "garbage"})
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: environment variable GPUNN_BACKEND must be one of ['auto', 'numpy', 'cupy', 'emulated'] (or unset), "
        "got 'garbage'"]


def test_info_with_an_unknown_backend_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "gpunn", "info", "--backend", "tpu"], capture_output=True, text=True,
                         timeout=120, env=_env_without_backend())
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "argument --backend: must be one of auto, numpy, cupy, emulated, got 'tpu'" in out.stderr


def test_import_does_not_import_cupy_or_touch_cuda():
    out = _run("import sys, gpunn, gpunn.layers, gpunn.losses, gpunn.testing; "
               "print('cupy' in sys.modules, gpunn.backend.detect._cache is None)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_manual_seed_reproduces_dropout_and_init():
    from gpunn.layers import Dense, Dropout
    outs = []
    for _ in range(2):
        gpunn.manual_seed(7)
        layer, drop = Dense(4), Dropout(0.5)
        x = np.ones((3, 5), np.float32)
        outs.append((layer.forward(x), drop.forward(x, training=True)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    with pytest.raises(ValueError, match="argument 'seed'"):
        gpunn.manual_seed(-1)


def test_info_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "gpunn", "info", "--backend", "numpy"], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "backend: numpy" in ok.stdout
    if not gpunn.cuda_status().usable:
        bad = subprocess.run([sys.executable, "-m", "gpunn", "info", "--backend", "cupy"], capture_output=True,
                             text=True, timeout=120)
        assert bad.returncode != 0
        assert bad.stderr.count("\n") == 1 and "cannot run here" in bad.stderr
