"""A failing rank ends a 2-rank job with a clear error within the timeout, never a hang."""
from __future__ import annotations

import time

import pytest

from tests.distributed import launch

pytestmark = pytest.mark.mpi
TIMEOUT = 3.0  # the collectives' deadline in these jobs (seconds)
BOUND = 90.0  # start-up of two Python processes on a busy 2-core machine, plus the deadline


def _run(mode: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    done = launch.run("fault.py", mode, str(TIMEOUT), timeout=120)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - t0


def test_a_rank_that_raises_aborts_the_job() -> None:
    code, out, took = _run("raise")
    assert code != 0 and took < BOUND
    assert "rank 1 of 2 raised; aborting every rank" in out and "rank 1 fails on purpose" in out
    assert "finished" not in out


def test_a_killed_rank_ends_the_job() -> None:
    code, out, took = _run("kill")
    assert code != 0 and took < BOUND
    assert "finished" not in out


def test_a_hung_rank_times_out_the_others() -> None:
    code, out, took = _run("hang")
    assert code != 0 and TIMEOUT <= took < BOUND
    assert "DistributedTimeoutError" in out and f"did not complete within {TIMEOUT:g} s" in out


def test_a_model_that_differs_across_ranks_fails_at_start() -> None:
    code, out, took = _run("mismatch")
    assert code != 0 and took < BOUND
    assert "the model differs across ranks" in out
