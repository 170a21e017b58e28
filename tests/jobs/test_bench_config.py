"""Hostile configuration of the benchmark command (`python -m gpunn bench`): bad values are refused
up front, with the option named, before any suite runs (the thread count and the backend from the
environment are in test_cpu_threads.py and test_backend_selection.py)."""
from __future__ import annotations

import pytest

from gpunn.jobs import bench


@pytest.fixture
def no_suites(monkeypatch):
    """Fail the test if a benchmark suite would start."""
    def refuse(*args, **kwargs):
        raise AssertionError("a suite started despite a bad option")
    monkeypatch.setattr(bench, "run_suite", refuse)
    monkeypatch.setattr(bench, "pick_peer_python", lambda requested: None)


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
