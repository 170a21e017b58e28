"""`python -m gpunn bench`: run the benchmark suites in bench/ and write a report.

For each of `--rounds` rounds it runs the gpunn suites (bench_ops, bench_e2e, bench_adam,
bench_kernels, bench_gemm, bench_conv, bench_cuda_graph, bench_mixed_precision) in one process and the PyTorch peers
(bench_peers, and the torch variants of bench_adam, bench_cuda_graph and bench_mixed_precision) in another, alternating
A, B, A, B: torch and NumPy in one process slow torch by ~30%, and on a shared machine alternation
spreads the noise over both. Each process gets the same thread count
(OPENBLAS_NUM_THREADS / OMP_NUM_THREADS for NumPy, torch.set_num_threads for torch) and runs with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (they halve NumPy's sgemm here); only these benchmark
subprocesses see that, never the tests.

Written into --out (bench/results by default), named <date>_<device>_<commit>:
- .json: every round's pytest-benchmark results in one pytest-benchmark file (fullnames carry
  "@r<round>"), for `pytest-benchmark compare`;
- .md: a table of medians (the median over rounds of each round's median, with the spread: the
  lowest and highest round medians) and the ratios GPU/CPU and gpunn/peer, as throughput
  ratios (> 1 means the first is faster); plus the BLAS kernel threadpoolctl reported;
- .png: a bar chart of those ratios (matplotlib, imported only here).

The peers' interpreter needs torch, pytest and pytest-benchmark, and gpunn's own dependencies
(bench_adam.py imports gpunn from this checkout). It comes from the first of these that is given:
1. `--python PATH` (a path, or a command on PATH). If it does not exist, is not executable, or cannot
   import what the peers need, the job stops before any suite runs (exit status 2): you asked for it.
2. the environment variable GPUNN_PEER_PYTHON (empty counts as unset). If it is bad, the job says
   so (the variable, its value, what is wrong, how to fix it) and runs the gpunn suites without the
   peer columns; it does not fall back to another interpreter.
3. this interpreter, if it can import torch (and the rest). Else none: the job says which sources
   it tried and how to name one, and runs the gpunn suites without the peer columns.
`--no-peers` skips the look-up altogether. The report's peer_python line names the interpreter and
where it came from, or why there was none.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GPUNN_SUITES = ("bench_ops.py", "bench_e2e.py", "bench_adam.py", "bench_kernels.py", "bench_gemm.py", "bench_conv.py",
                "bench_cuda_graph.py", "bench_mixed_precision.py")
# a suite in both lists: its gpunn cases (no "torch" in the name) run in the gpunn process, its torch ones in the peer's
PEER_SUITES = ("bench_peers.py", "bench_adam.py", "bench_cuda_graph.py", "bench_mixed_precision.py")
# graphed gpunn steps (bench_cuda_graph.py): impl -> ratio label; each is compared with these (impl, label)s
GRAPH_IMPLS = (("gpunn-graph", "graph"), ("gpunn-captured", "captured"))
GRAPH_BASES = (("torch", "torch"), ("torch-graph", "torch-graph"), ("gpunn", "eager"))
# mixed-precision steps (bench_mixed_precision.py): (impl, base, label); ratio "<label> <dev>" = base time / impl time
MIXED_RATIOS = (("gpunn-bf16", "torch-bf16", "bf16/torch-bf16"), ("gpunn-bf16", "gpunn", "bf16/fp32"),
                ("gpunn-bf16-graph", "torch-bf16", "bf16-graph/torch-bf16"),
                ("gpunn-fp16", "torch-fp16", "fp16/torch-fp16"))
UNSET_FOR_BENCH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
PEER_PYTHON_ENV = "GPUNN_PEER_PYTHON"
# what the peer suites import in the peer interpreter (bench_adam.py imports gpunn from this checkout)
PEER_MODULES = ("torch", "pytest", "pytest_benchmark", "gpunn")
PEER_PROBE_TIMEOUT = 120.0


# -- running --------------------------------------------------------------------------------------
def bench_env(threads: int, quick: bool, emulated: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a benchmark subprocess (never of tests): OpenBLAS variables unset."""
    env = dict(os.environ if base is None else base)
    for name in UNSET_FOR_BENCH:
        env.pop(name, None)
    # GPUNN_NUM_THREADS: gpunn's own CPU threads (every split op), else the BLAS count set here
    env.update({"OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
                "GPUNN_NUM_THREADS": str(threads),
                "GPUNN_BENCH_THREADS": str(threads), "GPUNN_BENCH_QUICK": "1" if quick else "0"})
    if emulated:
        env["GPUNN_BENCH_EMULATED"] = "1"
    else:  # suites test it for truth: unset, not "0"
        env.pop("GPUNN_BENCH_EMULATED", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


# -- the peers' interpreter --------------------------------------------------------------------
@dataclass(frozen=True)
class PeerPython:
    """The interpreter the PyTorch peers run under and where it came from, or why there is none."""
    python: str | None  # an absolute path; None: no peers run
    source: str  # "--python", "GPUNN_PEER_PYTHON", "this interpreter" or "--no-peers"
    value: str = ""  # what that source named
    reason: str = ""  # when python is None: what is wrong with `value` ("does not exist", ...)
    message: str = ""  # when python is None (not for --no-peers): the whole message, the fix included

    def summary(self) -> str:
        """The report's peer_python line."""
        if self.python:
            return f"{self.python} (from {self.source})"
        if self.source == "--no-peers":
            return "none (--no-peers)"
        return f"none: {self.source} {self.value!r} {self.reason}"


# Run in the candidate: one marker line with the modules it could not import (JSON), so noise a
# sitecustomize prints does not confuse it.
_PROBE = r"""
import importlib, json
missing = []
for name in %r:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        missing.append([name, type(exc).__name__ + ": " + str(exc), getattr(exc, "name", None) or name])
print("gpunn-peer-probe:" + json.dumps(missing))
"""

_PIP_NAMES = {"pytest_benchmark": "pytest-benchmark"}


def locate_interpreter(value: str) -> tuple[str | None, str]:
    """(absolute path, "") for an interpreter named by a path or a command on PATH, else (None, why).
    The path is made absolute, never resolved: a virtualenv's python is a symlink to the base one."""
    if not value.strip():
        return None, "is empty"
    path = Path(value).expanduser()
    if os.sep not in value and (os.altsep is None or os.altsep not in value) and not path.exists():
        found = shutil.which(value)
        if found is None:
            return None, "does not exist (no such file, and no such command on PATH)"
        path = Path(found)
    if not path.exists():
        return None, "does not exist"
    if path.is_dir():
        return None, "is a folder, not an interpreter (name its bin/python)"
    if not os.access(path, os.X_OK):
        return None, "is not executable (chmod +x it, or name the Python interpreter itself)"
    return os.path.abspath(path), ""


def peer_python_problem(python: str, timeout: float = PEER_PROBE_TIMEOUT) -> str:
    """"" when `python` runs and imports everything the peer suites need; else what is wrong and
    how to fix it. Runs the interpreter, as the suites will: with this checkout on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    try:
        out = subprocess.run([python, "-c", _PROBE % (PEER_MODULES,)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"did not finish importing {', '.join(PEER_MODULES)} within {timeout:.0f} s"
    except OSError as exc:
        return f"could not be started ({type(exc).__name__}: {exc.strerror or exc})"
    marker = [line for line in out.stdout.splitlines() if line.startswith("gpunn-peer-probe:")]
    if not marker:
        last = (out.stderr.strip().splitlines() or [""])[-1]
        return (f"is not a Python interpreter that could run the peers (it exited with status {out.returncode}"
                + (f": {last}" if last else "") + ")")
    missing = json.loads(marker[-1].split(":", 1)[1])
    if not missing:
        return ""
    names = ", ".join(name for name, _, _ in missing)
    details = "; ".join(error for _, error, _ in missing)
    pip = sorted({_PIP_NAMES.get(dist, dist) for _, _, dist in missing if dist != "gpunn"})
    fix = f" (install with: {python} -m pip install {' '.join(pip)})" if pip else ""
    return f"cannot import {names}: {details}{fix}"


def find_peer_python(requested: str | None, environ: dict[str, str] | None = None,
                     current: str | None = None, timeout: float = PEER_PROBE_TIMEOUT) -> PeerPython:
    """The peers' interpreter: `requested` (--python), else $GPUNN_PEER_PYTHON, else `current` (this
    interpreter) if it can import torch and the rest; the first source present decides, a bad one is
    not passed over for the next. See the module docstring for what main does with a bad one."""
    environ = os.environ if environ is None else environ
    current = sys.executable if current is None else current
    if requested is not None:
        source, value = "--python", requested
    elif environ.get(PEER_PYTHON_ENV, "").strip():
        source, value = PEER_PYTHON_ENV, environ[PEER_PYTHON_ENV]
    else:
        source, value = "this interpreter", current
    python, problem = locate_interpreter(value)
    if python is not None:
        problem = peer_python_problem(python, timeout)
    if not problem:
        return PeerPython(python, source, value)
    needs = "an interpreter that has torch, pytest and pytest-benchmark (and gpunn's dependencies)"
    if source == "--python":
        message = (f"bench: argument --python: {value!r} {problem}; nothing was run. Name {needs}, "
                   "or pass --no-peers to run without the PyTorch peers.")
    elif source == PEER_PYTHON_ENV:
        message = (f"bench: {PEER_PYTHON_ENV}={value!r} (from the environment) {problem}; the PyTorch peers are "
                   f"skipped and only the gpunn suites run. To fix, point {PEER_PYTHON_ENV} at {needs}, or pass "
                   f"--python PATH; to run without peers and without this message, unset it or pass --no-peers.")
    else:
        message = (f"bench: no interpreter for the PyTorch peers: --python was not given, {PEER_PYTHON_ENV} is not "
                   f"set, and this interpreter ({value}) {problem}. The peers are skipped and only the gpunn suites "
                   f"run. To compare with PyTorch, pass --python PATH or set {PEER_PYTHON_ENV}=PATH, naming {needs}; "
                   "--no-peers skips them without this message.")
    return PeerPython(None, source, value, problem, message)


def _k_expr(base: str | None, only: str | None) -> list[str]:
    parts = [f"({p})" for p in (base, only) if p]
    return ["-k", " and ".join(parts)] if parts else []


def run_suite(python: str, files: list[Path], json_path: Path, env: dict[str, str], k_base: str | None,
              only: str | None, timeout: float) -> int:
    cmd = [python, "-m", "pytest", *map(str, files), "--benchmark-enable", f"--benchmark-json={json_path}",
           "-p", "no:cacheprovider", "-q", "--benchmark-columns=median,iqr,rounds", *_k_expr(k_base, only)]
    print("$ " + " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        print(f"bench: {files} ran past {timeout:.0f} s; its results are left out", file=sys.stderr)
        return 124


# -- reading results ------------------------------------------------------------------------------
def _device_of(text: str) -> str:
    if "emulated" in text:
        return "emulated"
    return "cuda" if ("cuda" in text or "cupy" in text) else "cpu"


def describe(bench: dict[str, Any]) -> tuple[str, str, str]:
    """(key, impl, device) of one pytest-benchmark entry. The suites here tag their results
    (extra_info key/impl/device); others are keyed by group (else name): 'torch' in the name marks
    a peer, a backend parameter (numpy, cupy-..., emulated) a gpunn run, and in a group any other
    parameter names the implementation (e.g. bench_adam's plain "numpy" variant)."""
    info = bench.get("extra_info") or {}
    name = str(bench.get("name", "?"))
    param = str(bench.get("param") or "")
    if info.get("key"):
        return str(info["key"]), str(info.get("impl", "gpunn")), str(info.get("device", "cpu"))
    group = bench.get("group")
    key = str(group or name)
    if "torch" in name:
        return key, "torch", _device_of(name)
    if group and param and param != "gpunn":
        return key, param, _device_of(name) if "cuda" in name else "cpu"
    return key, "gpunn", _device_of(param or name)


def collect(runs: list[tuple[int, dict[str, Any]]]) -> dict[str, dict[tuple[str, str], list[float]]]:
    """key -> (impl, device) -> the median seconds of each round."""
    table: dict[str, dict[tuple[str, str], list[float]]] = {}
    for _round, data in runs:
        for bench in data.get("benchmarks", []):
            median = (bench.get("stats") or {}).get("median")
            if median is None:
                continue
            key, impl, device = describe(bench)
            table.setdefault(key, {}).setdefault((impl, device), []).append(float(median))
    return table


def merge_json(runs: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """One pytest-benchmark document holding every round (fullname suffixed with @r<round>)."""
    if not runs:
        return {"benchmarks": []}
    merged = {k: v for k, v in runs[0][1].items() if k != "benchmarks"}
    merged["benchmarks"] = []
    merged["peer_machine_info"] = [d.get("machine_info") for _, d in runs[1:2]]
    for rnd, data in runs:
        for bench in data.get("benchmarks", []):
            entry = dict(bench)
            entry["fullname"] = f"{bench.get('fullname', bench.get('name'))}@r{rnd}"
            entry["extra_info"] = {**(bench.get("extra_info") or {}), "round": rnd}
            # the raw per-call timings (thousands for a GPU kernel) would make the file megabytes
            entry["stats"] = {k: v for k, v in (bench.get("stats") or {}).items() if k != "data"}
            merged["benchmarks"].append(entry)
    return merged


# -- reporting ------------------------------------------------------------------------------------
def _fmt_time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def summarize(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "lo": min(samples), "hi": max(samples), "n": len(samples)}


def ratio_rows(table: dict[str, dict[tuple[str, str], list[float]]]) -> list[dict[str, Any]]:
    """One row per key: each (impl, device)'s summary, and throughput ratios where both sides exist:
    gpu_over_cpu = gpunn cpu time / gpunn cuda time; vs_peer_<dev> = torch time / gpunn time;
    kernel/generic <dev> = the generic (use_kernels=False) time / the custom kernel's time;
    graph/<base> <dev> (captured/<base> <dev>) = the base's time / the gpunn-graph (gpunn-captured)
    time, for the bases torch (eager), torch-graph and eager (gpunn eager); see GRAPH_IMPLS;
    bf16/torch-bf16, bf16/fp32, bf16-graph/torch-bf16, fp16/torch-fp16 <dev> = the base's time / the
    mixed-precision gpunn step's time (bench_mixed_precision.py); see MIXED_RATIOS."""
    rows = []
    for key in sorted(table):
        cells = {col: summarize(v) for col, v in table[key].items()}
        row: dict[str, Any] = {"key": key, "cells": cells, "ratios": {}}
        med = {col: c["median"] for col, c in cells.items()}
        if ("gpunn", "cpu") in med and ("gpunn", "cuda") in med:
            row["ratios"]["GPU/CPU gpunn"] = med[("gpunn", "cpu")] / med[("gpunn", "cuda")]
        for dev in ("cpu", "cuda"):
            if ("gpunn", dev) in med and ("torch", dev) in med:
                row["ratios"][f"gpunn/torch {dev}"] = med[("torch", dev)] / med[("gpunn", dev)]
            if ("gpunn", dev) in med and ("gpunn-generic", dev) in med:  # custom kernel vs generic xp path
                row["ratios"][f"kernel/generic {dev}"] = med[("gpunn-generic", dev)] / med[("gpunn", dev)]
            for impl, label in GRAPH_IMPLS:  # a graphed gpunn step vs torch eager / graphed and gpunn eager
                for base, base_label in GRAPH_BASES:
                    if (impl, dev) in med and (base, dev) in med:
                        row["ratios"][f"{label}/{base_label} {dev}"] = med[(base, dev)] / med[(impl, dev)]
            for impl, base, label in MIXED_RATIOS:  # a mixed-precision step vs torch autocast / gpunn fp32
                if (impl, dev) in med and (base, dev) in med:
                    row["ratios"][f"{label} {dev}"] = med[(base, dev)] / med[(impl, dev)]
        rows.append(row)
    return rows


def _blas_line(machine_info: dict[str, Any]) -> str:
    pools = machine_info.get("threadpools")
    if not isinstance(pools, list) or not pools:
        return str(pools or "unknown")
    return "; ".join(f"{p.get('internal_api')} {p.get('version')} kernel={p.get('architecture')} "
                     f"threads={p.get('num_threads')}" for p in pools)


def render_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    cols = sorted({col for r in rows for col in r["cells"]}, key=lambda c: (c[0] != "gpunn", c[1], c[0]))
    ratio_names = sorted({name for r in rows for name in r["ratios"]})
    lines = [f"# gpunn benchmarks {meta.get('stem', '')}", ""]
    for label in ("date", "commit", "device", "machine", "blas", "threads", "rounds", "env", "peer_python"):
        if meta.get(label) is not None:
            lines.append(f"- {label}: {meta[label]}")
    lines += ["", "Medians over rounds (each round is one process; the spread in brackets is the lowest and "
              "highest round median). Ratios are throughput ratios: > 1 means gpunn (or the GPU) is faster.", ""]
    header = ["key", *[f"{impl} {dev}" for impl, dev in cols], *ratio_names]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in rows:
        cells = []
        for col in cols:
            c = r["cells"].get(col)
            cells.append(f"{_fmt_time(c['median'])} [{_fmt_time(c['lo'])}-{_fmt_time(c['hi'])}]" if c else "")
        cells += [f"{r['ratios'][name]:.2f}x" if name in r["ratios"] else "" for name in ratio_names]
        lines.append("| " + " | ".join([r["key"], *cells]) + " |")
    rates = meta.get("rates") or {}
    if rates:
        lines += ["", "Effective rates (gpunn, median round) next to the roofline measured in the same run:", ""]
        lines += [f"- {key} ({dev}): {text}" for (key, dev), text in sorted(rates.items())]
    return "\n".join(lines) + "\n"


def rates_of(runs: list[tuple[int, dict[str, Any]]]) -> dict[tuple[str, str], str]:
    """The effective GFLOP/s or GB/s (and % of roofline) each tagged benchmark reported, last round."""
    out: dict[tuple[str, str], str] = {}
    for _rnd, data in runs:
        for bench in data.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            key, impl, device = describe(bench)
            parts = []
            if "gflops" in info:
                parts.append(f"{info['gflops']} GFLOP/s ({info.get('pct_of_sgemm', '?')}% of sgemm "
                             f"{info.get('roofline_sgemm_gflops', '?')})")
            if "gbs" in info:
                parts.append(f"{info['gbs']} GB/s ({info.get('pct_of_copy', '?')}% of copy "
                             f"{info.get('roofline_copy_gbs', '?')})")
            if "items_per_s" in info:
                parts.append(f"{info['items_per_s']} img/s")
            if parts:
                out[(key, f"{impl} {device}")] = "; ".join(parts)
    return out


def render_chart(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """A horizontal bar chart of every ratio; False when matplotlib is missing or nothing to plot."""
    bars = [(f"{r['key']} - {name}", value) for r in rows for name, value in sorted(r["ratios"].items())]
    if not bars:
        return False
    try:
        import matplotlib  # noqa: PLC0415 - an optional dependency, only the report needs it
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("bench: matplotlib is not installed; no chart (pip install 'gpunn[bench]')", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(bars) + 1.5))
    labels, values = zip(*bars)
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(bars)), values, color=colors)
    ax.set_yticks(range(len(bars)), labels, fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("throughput ratio (> 1: gpunn / the GPU is faster)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(runs: list[tuple[int, dict[str, Any]]], out_dir: Path, stem: str, meta: dict[str, Any]) -> dict:
    """Write <stem>.json, .md and .png into out_dir; returns their paths and the rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ratio_rows(collect(runs))
    meta = {**meta, "stem": stem, "rates": rates_of(runs)}
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps(merge_json(runs), indent=1, default=str))
    paths["md"].write_text(render_markdown(rows, meta))
    if not render_chart(rows, paths["png"], f"gpunn {stem}"):
        paths.pop("png")
    return {"paths": paths, "rows": rows}


# -- naming ---------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_slug() -> str:
    from gpunn.backend import cuda_status  # noqa: PLC0415 - keep `import gpunn.jobs.bench` light
    status = cuda_status()
    if status.usable and status.device_name:
        return _slug(status.device_name)
    return f"cpu-{os.cpu_count() or 1}c"


def commit_slug() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=30)
        return out.stdout.strip() or "nogit"
    except (OSError, subprocess.TimeoutExpired):
        return "nogit"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


# -- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpunn bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches, few rounds: a smoke run")
    parser.add_argument("--only", default=None, help="a pytest -k expression selecting benchmarks")
    parser.add_argument("--python", default=None, metavar="PATH",
                        help=f"the interpreter, with torch, for the PyTorch peers (default: ${PEER_PYTHON_ENV}, else "
                             "this interpreter if it has torch, else none); a bad one stops the job")
    parser.add_argument("--no-peers", action="store_true", help="skip the PyTorch peers (and the look-up)")
    parser.add_argument("--rounds", type=int, default=None, help="A/B alternations (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="threads for NumPy and torch alike "
                        "(default: the CPU count)")
    parser.add_argument("--emulated", action="store_true", help="also the emulated CUDA backend (slow)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where results go")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per suite process")
    args = parser.parse_args(argv)
    bench_dir = REPO / "bench"
    if not (bench_dir / "bench_ops.py").exists():
        print(f"bench: the suites are not here ({bench_dir}); run from a source checkout", file=sys.stderr)
        return 2
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        print(f"bench: argument --rounds must be >= 1, got {rounds}", file=sys.stderr)
        return 2
    threads = args.threads if args.threads is not None else (os.cpu_count() or 1)  # 0 is refused, not the default
    if threads < 1:
        print(f"bench: argument --threads must be >= 1, got {threads}", file=sys.stderr)
        return 2
    if not (args.timeout > 0 and args.timeout < float("inf")):  # NaN fails both
        print(f"bench: argument --timeout must be a positive number of seconds, got {args.timeout}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():  # found now, not after hours of benchmarks
        print(f"bench: argument --out: {args.out} is an existing file, not a folder", file=sys.stderr)
        return 2
    env = bench_env(threads, args.quick, args.emulated)
    peer = PeerPython(None, "--no-peers") if args.no_peers else find_peer_python(args.python)
    if peer.message:
        print(peer.message, file=sys.stderr)
        if peer.source == "--python":  # asked for by name: stop now, not after the gpunn suites ran
            return 2
    peer_python = peer.python
    gpunn_files = [bench_dir / f for f in GPUNN_SUITES if (bench_dir / f).exists()]
    peer_files = [bench_dir / f for f in PEER_SUITES if (bench_dir / f).exists()]
    runs: list[tuple[int, dict[str, Any]]] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="gpunn-bench-") as tmp:
        for rnd in range(rounds):
            jobs = [("gpunn", sys.executable, gpunn_files, "not torch")]
            if peer_python:
                jobs.append(("peer", peer_python, peer_files, "torch"))
            for label, python, files, k_base in jobs:
                path = Path(tmp) / f"{label}-{rnd}.json"
                rc = run_suite(python, files, path, env, k_base, args.only, args.timeout)
                failed += rc not in (0, 5)
                if path.exists():
                    runs.append((rnd, json.loads(path.read_text())))
        stem = f"{_dt.date.today().isoformat()}_{device_slug()}_{commit_slug()}"
        machine = (runs[0][1].get("machine_info") or {}) if runs else {}
        meta = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "commit": commit_slug(),
                "device": device_slug(), "machine": cpu_model(), "blas": _blas_line(machine), "threads": threads,
                "rounds": rounds, "env": f"unset {', '.join(UNSET_FOR_BENCH)} for the benchmark processes",
                "peer_python": peer.summary()}
        result = write_report(runs, args.out, stem, meta)
    for kind, path in result["paths"].items():
        print(f"bench: wrote {kind}: {path}")
    print(shutil.get_terminal_size().columns * "-")
    print(Path(result["paths"]["md"]).read_text())
    return 1 if failed else 0
