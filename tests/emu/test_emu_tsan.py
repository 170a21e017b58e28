"""Under ThreadSanitizer, the thread core turns a missing __syncthreads into a reported data race,
while a correctly synchronised kernel (barriers, shuffles, votes) runs clean."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpunn.emu import EmuCompileError, RawModule
from gpunn.emu.build import sanitizer_runtime

KERNELS = Path(__file__).with_name("selftest_kernels.cu")

SCRIPT = textwrap.dedent("""\
    import sys
    import numpy as np
    from pathlib import Path
    from gpunn.emu import RawModule
    mod = RawModule(Path(sys.argv[1]).read_text(), options=("--emu-sanitize=thread",),
                    filename="selftest_kernels.cu")
    x = np.arange(128, dtype=np.float32)
    sums = np.zeros(2, np.float32)
    mod.get_function("block_sum")(2, 64, (x, sums, np.int32(128)), shared_mem=256)
    assert (sums == x.reshape(2, 64).sum(axis=1)).all(), sums
    votes = np.zeros(6, np.uint32)
    mod.get_function("warp_ops")(1, 64, (x[:64] - 3, np.zeros(6 * 64, np.float32), votes))
    assert votes[0] == 0xFFFFFFF0, votes
    half = np.zeros(64, np.float32)
    mod.get_function("half_warp")(1, 64, (x[:64], half))  # a partial mask must not hang
    assert (half[:8] == x[:8] + 8).all(), half
    print("CLEAN-KERNELS-DONE", file=sys.stderr, flush=True)
    mod.get_function("missing_sync")(1, 64, (x[:64], np.zeros(64, np.float32)))
    """)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.slow
def test_missing_syncthreads_is_a_tsan_data_race():
    try:
        runtime = sanitizer_runtime("thread")
    except EmuCompileError as exc:
        pytest.skip(str(exc))
    env = dict(os.environ, LD_PRELOAD=runtime, TSAN_OPTIONS="halt_on_error=0 exitcode=66")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(KERNELS)], env=env, capture_output=True,
                          text=True, timeout=600)
    err = proc.stderr
    assert "CLEAN-KERNELS-DONE" in err, f"the clean kernels failed under TSan:\n{err[-4000:]}"
    clean, planted = err.split("CLEAN-KERNELS-DONE", 1)
    assert "ThreadSanitizer" not in clean, f"false positive on a synchronised kernel:\n{clean[-4000:]}"
    assert "WARNING: ThreadSanitizer: data race" in planted
    src = KERNELS.read_text()
    write = _line_of(src, "tile[threadIdx.x] = x[threadIdx.x];")
    read = _line_of(src, "out[threadIdx.x] = tile[(threadIdx.x + 1) % blockDim.x];")
    assert f"selftest_kernels.cu:{write}" in planted and f"selftest_kernels.cu:{read}" in planted
    assert proc.returncode == 66


def test_sanitized_build_without_preloaded_runtime_is_refused(monkeypatch):
    import gpunn.emu.rawkernel as rk
    monkeypatch.setattr(rk, "runtime_is_loaded", lambda name: False)
    with pytest.raises(EmuCompileError, match=r"--emu-sanitize=thread needs its runtime preloaded: .*LD_PRELOAD"):
        RawModule(KERNELS.read_text(), options=("--emu-sanitize=thread",)).compile()
