"""Hostile configuration of the benchmark command (`python -m gpunn bench`): bad values are refused
up front, with the option named, before any suite runs (the thread count and the backend from the
environment are in tests/backend/cpu/test_threads.py and tests/backend/test_registry.py).

A bad `--python` stops the job (exit status 2) before any suite; a bad GPUNN_PEER_PYTHON is reported
and the gpunn suites run without the peers. Every interpreter here is real: this one, a wrapper of
it, a script that is not executable, a path that does not exist."""
from __future__ import annotations

import os
import sys

import pytest

from gpunn.jobs import bench
from tests.jobs.test_bench import make_interpreter, posix_only


@pytest.fixture
def no_suites(monkeypatch):
    """Fail the test if a benchmark suite would start."""
    def refuse(*args, **kwargs):
        raise AssertionError("a suite started despite a bad option")
    monkeypatch.setattr(bench, "run_suite", refuse)


@pytest.mark.parametrize("argv, message", [
    # --threads 0 used to mean "the CPU count" ('0 or os.cpu_count()'), silently
    (["--threads", "0"], "argument --threads must be >= 1, got 0"),
    (["--timeout", "nan"], "argument --timeout must be a positive number of seconds, got nan"),
    (["--timeout", "-5"], "argument --timeout must be a positive number of seconds, got -5.0"),
    (["--timeout", "inf"], "argument --timeout must be a positive number of seconds, got inf"),
])
def test_bad_bench_options_are_refused_before_any_suite_runs(argv, message, no_suites, capsys):
    assert bench.main(argv) == 2
    assert message in capsys.readouterr().err


def test_bench_out_must_not_be_a_file(tmp_path, no_suites, capsys):
    # used to fail with FileExistsError in write_report, after every round had run
    afile = tmp_path / "results"
    afile.write_text("x")
    assert bench.main(["--out", str(afile), "--no-peers"]) == 2
    assert f"argument --out: {afile} is an existing file, not a folder" in capsys.readouterr().err


def _not_executable(tmp_path):
    script = tmp_path / "python-not-executable"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    script.chmod(0o644)
    return script


def _not_python(tmp_path):
    script = tmp_path / "not-python"
    script.write_text("#!/bin/sh\necho 'not an interpreter' >&2\nexit 3\n")
    script.chmod(0o755)
    return script


BAD_PYTHONS = [
    pytest.param(lambda tmp: tmp / "no" / "such" / "python", "does not exist", id="nonexistent"),
    pytest.param(lambda tmp: "gpunn-no-such-python-command",
                 "does not exist (no such file, and no such command on PATH)", id="no-such-command"),
    pytest.param(lambda tmp: "", "is empty", id="empty"),
    pytest.param(lambda tmp: tmp, "is a folder, not an interpreter", id="folder"),
    pytest.param(_not_executable, "is not executable (chmod +x it", marks=posix_only, id="not-executable"),
    pytest.param(_not_python, "is not a Python interpreter that could run the peers (it exited with status 3: "
                 "not an interpreter)", marks=posix_only, id="not-python"),
    pytest.param(lambda tmp: make_interpreter(tmp / "w", torch_imports=False),
                 "cannot import torch: ModuleNotFoundError: No module named 'torch'", marks=posix_only,
                 id="without-torch"),
]


@pytest.mark.parametrize("make, problem", BAD_PYTHONS)
def test_a_bad_python_flag_stops_the_job_before_any_suite(make, problem, tmp_path, no_suites, monkeypatch, capsys):
    monkeypatch.delenv(bench.PEER_PYTHON_ENV, raising=False)
    value = str(make(tmp_path))
    assert bench.main(["--python", value, "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert f"bench: argument --python: {value!r} {problem}" in err
    assert "nothing was run" in err and "--no-peers" in err
    assert not (tmp_path / "results").exists()


@posix_only
def test_a_relative_python_is_made_absolute_not_resolved(tmp_path, monkeypatch):
    # the suites run from the repository root, and a virtualenv's python is a symlink to the base one
    script = make_interpreter(tmp_path / "venv", torch_imports=True)
    link = tmp_path / "venv" / "python3"
    link.symlink_to(script)
    monkeypatch.chdir(tmp_path)
    peer = bench.find_peer_python(os.path.join("venv", "python3"), environ={})
    assert peer.python == str(link) and peer.message == ""


@pytest.mark.parametrize("make, problem", [p for p in BAD_PYTHONS if p.id != "empty"])  # "": unset
def test_a_bad_environment_variable_is_reported_and_not_passed_over(make, problem, tmp_path):
    value = str(make(tmp_path))
    peer = bench.find_peer_python(None, environ={bench.PEER_PYTHON_ENV: value}, current=sys.executable)
    assert peer.python is None and peer.source == bench.PEER_PYTHON_ENV  # not this interpreter instead
    assert f"bench: GPUNN_PEER_PYTHON={value!r} (from the environment) {problem}" in peer.message
    assert "the PyTorch peers are skipped and only the gpunn suites run" in peer.message
    assert "point GPUNN_PEER_PYTHON at an interpreter that has torch" in peer.message
    assert "--python PATH" in peer.message and "unset it or pass --no-peers" in peer.message


@pytest.mark.parametrize("no_peers", [False, True])
def test_a_bad_environment_variable_still_runs_the_gpunn_suites(no_peers, tmp_path, monkeypatch, capfd):
    """Through main, with real suite processes: a -k expression that matches no benchmark keeps it short.
    --no-peers skips the look-up, and with it the message."""
    missing = tmp_path / "no-such-python"
    monkeypatch.setenv(bench.PEER_PYTHON_ENV, str(missing))
    out = tmp_path / "results"
    argv = ["--quick", "--only", "no_such_benchmark_xyz", "--out", str(out)] + (["--no-peers"] if no_peers else [])
    assert bench.main(argv) == 0
    captured = capfd.readouterr()
    assert "bench_ops.py" in captured.out and "bench_peers.py" not in captured.out
    (md,) = out.glob("*.md")
    if no_peers:
        assert "GPUNN_PEER_PYTHON" not in captured.err
        assert "- peer_python: none (--no-peers)" in md.read_text()
    else:
        assert f"bench: GPUNN_PEER_PYTHON={str(missing)!r} (from the environment) does not exist" in captured.err
        assert f"- peer_python: none: GPUNN_PEER_PYTHON {str(missing)!r} does not exist" in md.read_text()
