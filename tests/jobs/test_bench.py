"""`python -m gpunn bench`: its reporting, on small fake pytest-benchmark results (no benchmark runs), and
how it finds the peers' interpreter (--python, else GPUNN_PEER_PYTHON, else this one if it has torch)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gpunn.jobs import bench


def _entry(name, median, key=None, impl=None, device=None, group=None, param=None, **info):
    extra = dict(info)
    if key:
        extra.update({"key": key, "impl": impl, "device": device})
    return {"name": name, "fullname": f"bench/x.py::{name}", "group": group, "param": param,
            "stats": {"median": median, "min": median, "max": median}, "extra_info": extra}


def _runs():
    gpunn_r0 = {"machine_info": {"threadpools": [{"internal_api": "openblas", "version": "0.3", "architecture":
                                                   "SkylakeX", "num_threads": 2}]},
                "benchmarks": [_entry("test_train_step[numpy-lenet5]", 0.010, "train_step/lenet5", "gpunn", "cpu",
                                      items_per_s=12800.0),
                               _entry("test_train_step[cupy-lenet5]", 0.001, "train_step/lenet5", "gpunn", "cuda"),
                               _entry("test_conv2d[numpy-fwd-x]", 0.004, "conv2d_fwd/x", "gpunn", "cpu", gflops=50.0,
                                      pct_of_sgemm=25.0, roofline_sgemm_gflops=200.0),
                               _entry("test_adam_step_10m[gpunn]", 0.030, group="adam-10M", param="gpunn")]}
    peer_r0 = {"benchmarks": [_entry("test_train_step[torch-cpu-lenet5]", 0.020, "train_step/lenet5", "torch", "cpu"),
                              _entry("test_adam_step_10m[torch_fused]", 0.015, group="adam-10M",
                                     param="torch_fused")]}
    gpunn_r1 = {"benchmarks": [_entry("test_train_step[numpy-lenet5]", 0.014, "train_step/lenet5", "gpunn", "cpu")]}
    peer_r1 = {"benchmarks": [_entry("test_train_step[torch-cpu-lenet5]", 0.022, "train_step/lenet5", "torch",
                                     "cpu")]}
    return [(0, gpunn_r0), (0, peer_r0), (1, gpunn_r1), (1, peer_r1)]


def test_rows_pair_implementations_and_take_the_median_over_rounds():
    rows = {r["key"]: r for r in bench.ratio_rows(bench.collect(_runs()))}
    lenet = rows["train_step/lenet5"]
    cpu = lenet["cells"][("gpunn", "cpu")]
    assert cpu["median"] == pytest.approx(0.012) and (cpu["lo"], cpu["hi"]) == (0.010, 0.014)
    torch_cpu = lenet["cells"][("torch", "cpu")]["median"]
    assert lenet["ratios"]["gpunn/torch cpu"] == pytest.approx(torch_cpu / 0.012)
    assert lenet["ratios"]["GPU/CPU gpunn"] == pytest.approx(0.012 / 0.001)
    # bench_adam.py does not tag: paired by its group, the torch variant recognized by name
    assert rows["adam-10M"]["ratios"]["gpunn/torch cpu"] == pytest.approx(0.5)
    assert "gpunn/torch cpu" not in rows["conv2d_fwd/x"]["ratios"]  # no peer measured: no ratio


def test_kernel_rows_pair_the_custom_kernel_with_the_generic_path():
    run = {"benchmarks": [_entry("test_adam_step[cupy-kernels]", 0.002, "kernel_adam/large", "gpunn", "cuda"),
                          _entry("test_adam_step[cupy-generic]", 0.010, "kernel_adam/large", "gpunn-generic",
                                 "cuda")]}
    row = bench.ratio_rows(bench.collect([(0, run)]))[0]
    assert row["ratios"] == {"kernel/generic cuda": pytest.approx(5.0)}


def test_describe_untagged_entries():
    assert bench.describe(_entry("test_k[cupy-kernels]", 1.0, param="cupy-kernels")) == \
        ("test_k[cupy-kernels]", "gpunn", "cuda")
    assert bench.describe(_entry("test_a[numpy]", 1.0, group="adam", param="numpy")) == ("adam", "numpy", "cpu")
    assert bench.describe(_entry("test_k[emulated]", 1.0, param="emulated"))[2] == "emulated"


def test_write_report_makes_table_json_and_chart(tmp_path):
    meta = {"date": "2026-01-01", "commit": "abc1234", "device": "cpu-2c", "blas": "openblas SkylakeX",
            "threads": 2, "rounds": 2}
    out = bench.write_report(_runs(), tmp_path, "2026-01-01_cpu-2c_abc1234", meta)
    md = (tmp_path / "2026-01-01_cpu-2c_abc1234.md").read_text()
    assert "| train_step/lenet5 | 12.00 ms [10.00 ms-14.00 ms]" in md
    assert "1.75x" in md  # torch 21 ms / gpunn 12 ms
    assert "12.00x" in md  # GPU/CPU
    assert "SkylakeX" in md and "50.0 GFLOP/s (25.0% of sgemm 200.0)" in md
    data = json.loads((tmp_path / "2026-01-01_cpu-2c_abc1234.json").read_text())
    names = [b["fullname"] for b in data["benchmarks"]]
    assert len(names) == len(set(names)) == 8 and names[0].endswith("@r0")
    assert data["machine_info"]["threadpools"][0]["architecture"] == "SkylakeX"
    pytest.importorskip("matplotlib")
    png = out["paths"]["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_ratios_has_no_chart(tmp_path):
    runs = [(0, {"benchmarks": [_entry("t", 0.5, "k", "gpunn", "cpu")]})]
    out = bench.write_report(runs, tmp_path, "s", {})
    assert "png" not in out["paths"] and "| k | 500.00 ms" in out["paths"]["md"].read_text()


def test_bench_env_unsets_openblas_overrides_only_for_the_benchmarks():
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1", "PATH": "/bin", "GPUNN_BENCH_EMULATED": "1"}
    env = bench.bench_env(threads=3, quick=True, emulated=False, base=base)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["OPENBLAS_NUM_THREADS"] == env["GPUNN_BENCH_THREADS"] == "3" and env["GPUNN_BENCH_QUICK"] == "1"
    assert env["GPUNN_NUM_THREADS"] == "3"  # gpunn's own CPU threads too (fused Adam)
    assert "GPUNN_BENCH_EMULATED" not in env and env["PATH"] == "/bin"
    assert base["OPENBLAS_CORETYPE"] == "Haswell"  # the caller's environment is untouched


@pytest.mark.parametrize("argv, message", [(["--rounds", "0"], "--rounds"), (["--threads", "-1"], "--threads")])
def test_bad_arguments_are_refused(argv, message, capsys):
    assert bench.main(argv) == 2
    assert message in capsys.readouterr().err


def test_merged_json_keeps_the_summary_statistics_not_the_raw_timings():
    entry = _entry("test_k[cupy-kernels]", 0.001)
    entry["stats"]["data"] = [0.001] * 5000
    merged = bench.merge_json([(0, {"benchmarks": [entry]})])
    stats = merged["benchmarks"][0]["stats"]
    assert "data" not in stats and stats["median"] == 0.001
    assert entry["stats"]["data"]  # the input is left as it was


# -- the peers' interpreter: --python, else GPUNN_PEER_PYTHON, else this interpreter if it has torch ---------------
# Real interpreters throughout: this one, wrapped by a shell script that puts a stand-in `torch` package on its
# path (one that imports, or one that fails as a missing torch does), so the outcome does not depend on whether
# torch happens to be installed here.
posix_only = pytest.mark.skipif(os.name != "posix", reason="the interpreter wrappers are POSIX shell scripts")


def make_interpreter(folder: Path, torch_imports: bool) -> Path:
    """An executable wrapper around sys.executable whose `import torch` succeeds or fails."""
    stub = folder / "stub"
    (stub / "torch").mkdir(parents=True)
    (stub / "torch" / "__init__.py").write_text(
        "__version__ = '0+stub'\n" if torch_imports else
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    script = folder / "python"
    script.write_text("#!/bin/sh\n"
                      f"PYTHONPATH={shlex.quote(str(stub))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
                      "export PYTHONPATH\n"
                      f"exec {shlex.quote(sys.executable)} \"$@\"\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def with_torch(tmp_path) -> Path:
    return make_interpreter(tmp_path / "with-torch", torch_imports=True)


@pytest.fixture
def without_torch(tmp_path) -> Path:
    return make_interpreter(tmp_path / "without-torch", torch_imports=False)


@posix_only
def test_the_flag_wins_over_the_environment_variable(with_torch, tmp_path):
    env = {bench.PEER_PYTHON_ENV: str(tmp_path / "missing-python")}
    peer = bench.find_peer_python(str(with_torch), environ=env)
    assert (peer.python, peer.source, peer.message) == (str(with_torch), "--python", "")
    # and a bad flag is not rescued by a good variable
    peer = bench.find_peer_python(str(tmp_path / "missing-python"), environ={bench.PEER_PYTHON_ENV: str(with_torch)})
    assert peer.python is None and peer.source == "--python" and "missing-python" in peer.message
    assert str(with_torch) not in peer.message


@posix_only
def test_the_environment_variable_wins_over_this_interpreter(with_torch, without_torch):
    peer = bench.find_peer_python(None, environ={bench.PEER_PYTHON_ENV: str(with_torch)}, current=str(without_torch))
    assert (peer.python, peer.source) == (str(with_torch), bench.PEER_PYTHON_ENV)
    assert peer.summary() == f"{with_torch} (from GPUNN_PEER_PYTHON)"


@posix_only
def test_this_interpreter_when_it_has_torch_and_nothing_is_named(with_torch):
    for env in ({}, {bench.PEER_PYTHON_ENV: ""}):  # an empty variable counts as unset
        peer = bench.find_peer_python(None, environ=env, current=str(with_torch))
        assert (peer.python, peer.source) == (str(with_torch), "this interpreter")


@posix_only
def test_the_message_when_no_interpreter_is_found(without_torch):
    peer = bench.find_peer_python(None, environ={}, current=str(without_torch))
    assert peer.python is None and peer.source == "this interpreter"
    message = peer.message
    # which sources were tried, what is missing, how to fix it
    assert "--python was not given" in message and "GPUNN_PEER_PYTHON is not set" in message
    assert f"this interpreter ({without_torch}) cannot import torch" in message
    assert "No module named 'torch'" in message and f"{without_torch} -m pip install torch" in message
    assert "only the gpunn suites run" in message
    assert "pass --python PATH or set GPUNN_PEER_PYTHON=PATH" in message and "--no-peers" in message
    assert peer.summary().startswith("none: this interpreter") and "cannot import torch" in peer.summary()


def test_sys_executable_is_taken_exactly_when_it_imports_torch():
    has_torch = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
    peer = bench.find_peer_python(None, environ={})
    assert (peer.python is not None) == has_torch
    if not has_torch:
        assert sys.executable in peer.message and "cannot import torch" in peer.message


@posix_only
def test_job_without_a_peer_interpreter_says_so_and_runs_the_gpunn_suites(without_torch, tmp_path):
    """End to end, nothing replaced: `python -m gpunn bench` under an interpreter without torch, nothing named;
    a -k expression that matches no benchmark keeps it to collection."""
    env = {k: v for k, v in os.environ.items() if k != bench.PEER_PYTHON_ENV}
    out = subprocess.run([str(without_torch), "-m", "gpunn", "bench", "--quick", "--only", "no_such_benchmark_xyz",
                          "--out", str(tmp_path / "results")], cwd=bench.REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "bench: no interpreter for the PyTorch peers: --python was not given" in out.stderr
    assert "bench_ops.py" in out.stdout and "bench_peers.py" not in out.stdout  # gpunn ran, the peers did not
    (md,) = (tmp_path / "results").glob("*.md")
    assert "- peer_python: none: this interpreter" in md.read_text()


def test_graphed_steps_get_ratios_against_torch_eager_torch_graphed_and_gpunn_eager():
    key = "train_step_graph/lenet5"
    runs = [(0, {"benchmarks": [_entry("g", 0.0002, key, "gpunn-graph", "cuda"),
                                _entry("c", 0.0001, key, "gpunn-captured", "cuda"),
                                _entry("e", 0.0020, key, "gpunn", "cuda")]}),
            (0, {"benchmarks": [_entry("test_torch_step[eager]", 0.0016, key, "torch", "cuda"),
                                _entry("test_torch_step[graph]", 0.0004, key, "torch-graph", "cuda")]})]
    (row,) = bench.ratio_rows(bench.collect(runs))
    r = row["ratios"]
    assert r["graph/torch cuda"] == pytest.approx(8.0) and r["graph/torch-graph cuda"] == pytest.approx(2.0)
    assert r["graph/eager cuda"] == pytest.approx(10.0) and r["captured/torch-graph cuda"] == pytest.approx(4.0)
    assert r["gpunn/torch cuda"] == pytest.approx(0.8)  # eager against eager, as for every key


def test_mixed_precision_steps_get_ratios_against_torch_autocast_and_gpunn_fp32():
    key = "train_step_amp/cifar_cnn"
    runs = [(0, {"benchmarks": [_entry("test_gpunn_amp_step[bf16]", 0.001, key, "gpunn-bf16", "cuda"),
                                _entry("test_gpunn_amp_step[bf16-graph]", 0.0005, key, "gpunn-bf16-graph", "cuda"),
                                _entry("test_gpunn_amp_step[fp16]", 0.002, key, "gpunn-fp16", "cuda"),
                                _entry("test_gpunn_amp_step[fp32]", 0.003, key, "gpunn", "cuda")]}),
            (0, {"benchmarks": [_entry("test_torch_amp_step[bf16]", 0.0015, key, "torch-bf16", "cuda"),
                                _entry("test_torch_amp_step[fp16]", 0.001, key, "torch-fp16", "cuda"),
                                _entry("test_torch_amp_step[fp32]", 0.006, key, "torch", "cuda")]})]
    (row,) = bench.ratio_rows(bench.collect(runs))
    r = row["ratios"]
    assert r["bf16/torch-bf16 cuda"] == pytest.approx(1.5) and r["bf16/fp32 cuda"] == pytest.approx(3.0)
    assert r["bf16-graph/torch-bf16 cuda"] == pytest.approx(3.0) and r["fp16/torch-fp16 cuda"] == pytest.approx(0.5)
    assert r["gpunn/torch cuda"] == pytest.approx(2.0)  # fp32 against fp32, as for every key
    assert not any(name.startswith("graph/") for name in r)  # the graphed bf16 step is not a cuda_graph case


def test_mixed_precision_ratios_need_both_sides_and_keep_devices_apart():
    key = "train_step_amp/lenet5"
    runs = [(0, {"benchmarks": [_entry("test_gpunn_amp_step_cpu[fp32]", 0.02, key, "gpunn", "cpu"),
                                _entry("test_gpunn_amp_step_cpu[bf16]", 0.04, key, "gpunn-bf16", "cpu")]})]
    (row,) = bench.ratio_rows(bench.collect(runs))
    assert row["ratios"] == {"bf16/fp32 cpu": pytest.approx(0.5)}  # no torch-bf16, no cuda: nothing else


def test_mixed_precision_suite_runs_in_both_processes():
    assert "bench_mixed_precision.py" in bench.GPUNN_SUITES and "bench_mixed_precision.py" in bench.PEER_SUITES
    assert (bench.REPO / "bench" / "bench_mixed_precision.py").exists()
