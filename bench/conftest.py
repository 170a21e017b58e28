"""Collect the pytest-benchmark suites here (files named bench_*.py) and print their summary lines."""
from __future__ import annotations

import sys

import pytest


def pytest_collect_file(parent, file_path):
    # files named on the command line are collected by pytest itself; only add the others
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter):
    for name, module in list(sys.modules.items()):
        results = getattr(module, "RESULTS", None)
        if name.split(".")[-1].startswith("bench_") and results and hasattr(module, "summary"):
            terminalreporter.write_line(module.summary(results))
