"""The NVRTC compile gate: every kernels/*.cu compiles for sm_80 and sm_90 with no register spills,
and reports registers, shared memory and occupancy (resident blocks and warps per SM) per kernel.

NVRTC is driven through ctypes on libnvrtc from the `nvidia-cuda-nvrtc-cu12` wheel, so no driver or
GPU is needed (CuPy's compile path needs a driver). The CUBIN is built with `--ptxas-options=-v`,
whose log gives the registers, shared memory and spills per kernel; an NVRTC too old for that
option still gets the compile check, and the spill check is skipped with a reason.

NVRTC has no default include path. The half-precision kernels include <cuda_fp16.h> / <cuda_bf16.h>
(mma.h for the tensor-core ones): the gate passes `-I` for the first CUDA include folder it finds
(the `nvidia-cuda-runtime` / `cuda-toolkit` wheels' nvidia/cu13/include or nvidia/cuda_runtime/include,
then $CUDA_HOME / $CUDA_PATH, then /usr/local/cuda); a source that includes a CUDA header with none
of them present is skipped with that reason.

Run `python tests/backend/cuda/test_nvrtc_gate.py` to print the per-kernel table.
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

KERNEL_DIR = Path(__file__).resolve().parents[3] / "kernels"
ARCHS = ("sm_80", "sm_90")
BASE_OPTIONS = ("--std=c++17",)


def _find_libnvrtc() -> Path | None:
    roots = {Path(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    roots.update(Path(p) for p in sys.path if p.endswith("site-packages"))
    for root in sorted(roots):
        libdir = root / "nvidia" / "cuda_nvrtc" / "lib"
        for pattern in ("libnvrtc.so.*", "libnvrtc.so", "nvrtc64_*.dll"):
            hits = sorted(p for p in libdir.glob(pattern) if ".alt." not in p.name and "builtins" not in p.name)
            if hits:
                return hits[0]
    return None


def _find_cuda_include() -> Path | None:
    """A folder holding cuda_fp16.h and cuda_bf16.h for NVRTC's -I, or None."""
    roots = {Path(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    roots.update(Path(p) for p in sys.path if p.endswith("site-packages"))
    candidates = [root / "nvidia" / sub / "include" for root in sorted(roots)
                  for sub in ("cu13", "cuda_runtime", "cu12")]
    candidates += [Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    candidates.append(Path("/usr/local/cuda/include"))
    # Prefer a folder that also has mma.h and the crt/mma.h it includes (the tensor-core kernels,
    # gemm_tc.cu): the nvidia-cuda-runtime wheel ships mma.h without crt/mma.h.
    full = ("cuda_fp16.h", "cuda_bf16.h", "mma.h", "crt/mma.h")
    for headers in (full, full[:2]):
        for inc in candidates:
            if all((inc / h).is_file() for h in headers):
                return inc
    return None


CUDA_INCLUDE = _find_cuda_include()
_CUDA_HEADER = re.compile(r"^\s*#\s*include\s*<(cuda_fp16|cuda_bf16|mma)\.h>", re.M)


def include_options(source: str) -> tuple[str, ...]:
    """The -I NVRTC needs for `source`: none unless it includes a CUDA header."""
    if not _CUDA_HEADER.search(source):
        return ()
    if CUDA_INCLUDE is None:
        pytest.skip("the source includes CUDA headers and no CUDA include folder (cuda_fp16.h) was found")
    return (f"-I{CUDA_INCLUDE}",)


@dataclass
class CompileResult:
    ok: bool
    log: str
    cubin_bytes: int


class Nvrtc:
    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        self.path = path

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        return major.value, minor.value

    def compile(self, source: str, name: str, options: tuple[str, ...]) -> CompileResult:
        lib = self.lib
        prog = ctypes.c_void_p()
        rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
        assert rc == 0, f"nvrtcCreateProgram failed with code {rc}"
        try:
            opts = [o.encode() for o in options]
            rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace")
            cubin = ctypes.c_size_t(0)
            if rc == 0:
                lib.nvrtcGetCUBINSize(prog, ctypes.byref(cubin))
            return CompileResult(rc == 0, log, cubin.value)
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


@dataclass
class KernelStats:
    name: str
    registers: int
    smem_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int


_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas_log(log: str) -> list[KernelStats]:
    """Per-kernel figures from a `ptxas -v` log (the same text NVRTC returns with --ptxas-options=-v)."""
    stats: list[KernelStats] = []
    current: dict | None = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            current = {"name": m.group(1), "stack": 0, "st": 0, "ld": 0}
        elif current is not None and (m := _FRAME.search(line)):
            current["stack"], current["st"], current["ld"] = (int(g) for g in m.groups())
        elif current is not None and (m := _USED.search(line)):
            stats.append(KernelStats(current["name"], int(m.group(1)), int(m.group(2) or 0), current["stack"],
                                     current["st"], current["ld"]))
            current = None
    return stats


# Per-SM limits of the occupancy calculator: sm_80 (A100) and sm_90 (H100 / H200). Registers are
# allocated per warp in units of 256; each block also reserves 1 KB of shared memory.
SM_LIMITS = {"sm_80": {"smem": 164 * 1024}, "sm_90": {"smem": 228 * 1024}}
SM_REGS, SM_WARPS, SM_BLOCKS, REG_UNIT, SMEM_RESERVED = 65536, 64, 32, 256, 1024
DEFAULT_THREADS = 256  # launchers.BLOCK: what a kernel without __launch_bounds__ is launched with
_BOUNDS = re.compile(r'extern\s+"C"\s+__global__\s+(?:void\s+)?__launch_bounds__\s*\(\s*(\w+)[^)]*\)\s*(?:void\s+)?(\w+)')


def occupancy(registers: int, smem_bytes: int, threads: int, arch: str) -> tuple[int, float]:
    """(resident blocks per SM, the share of the SM's 64 warp slots they fill) for a kernel."""
    warps = -(-threads // 32)
    regs_per_warp = -(-max(registers, 1) * 32 // REG_UNIT) * REG_UNIT
    by_regs = (SM_REGS // regs_per_warp) // warps
    by_warps = SM_WARPS // warps
    by_smem = SM_LIMITS[arch]["smem"] // (smem_bytes + SMEM_RESERVED) if smem_bytes else SM_BLOCKS
    blocks = min(by_regs, by_warps, by_smem, SM_BLOCKS)
    return blocks, blocks * warps / SM_WARPS


def block_threads(source: str) -> dict[str, int]:
    """Kernel name -> threads per block: its __launch_bounds__ (a number or a #define), else 256."""
    defines = dict(re.findall(r"#define\s+(\w+)\s+(\d+)", source))
    out = {}
    for value, name in _BOUNDS.findall(source):
        out[name] = int(defines.get(value, value)) if (value.isdigit() or value in defines) else DEFAULT_THREADS
    return out


def test_occupancy_matches_the_calculator() -> None:
    assert occupancy(128, 0, 256, "sm_90") == (2, 0.25)  # 4096 registers a warp: 16 warps fit
    assert occupancy(32, 0, 256, "sm_90") == (8, 1.0)  # the 2048-thread limit
    assert occupancy(40, 48 * 1024, 256, "sm_80") == (3, 0.375)  # shared memory: 164 KB / 49 KB
    assert occupancy(40, 48 * 1024, 256, "sm_90") == (4, 0.5)


_LIB = _find_libnvrtc()
needs_nvrtc = pytest.mark.skipif(_LIB is None, reason="the nvidia-cuda-nvrtc wheel is not installed here")
SOURCES = sorted(KERNEL_DIR.glob("*.cu"))


@pytest.fixture(scope="module")
def nvrtc() -> Nvrtc:
    assert _LIB is not None
    return Nvrtc(_LIB)


def _compile_verbose(nvrtc: Nvrtc, source: str, name: str, arch: str) -> tuple[CompileResult, bool]:
    """Compile to CUBIN with ptxas -v when this NVRTC supports it; returns (result, verbose_ok)."""
    opts = (f"--gpu-architecture={arch}", *BASE_OPTIONS, *include_options(source))
    result = nvrtc.compile(source, name, (*opts, "--ptxas-options=-v"))
    if result.ok or "ptxas-options" not in result.log:
        return result, result.ok
    return nvrtc.compile(source, name, opts), False  # old NVRTC: compile check only


def test_every_family_has_a_source() -> None:
    assert {p.stem for p in SOURCES} >= {"im2col", "maxpool", "batchnorm", "adam", "cast"}


@needs_nvrtc
def test_half_headers_are_found(nvrtc: Nvrtc) -> None:
    """The 16-bit kernels need cuda_fp16.h / cuda_bf16.h: without -I NVRTC cannot open them."""
    src = '#include <cuda_fp16.h>\nextern "C" __global__ void k(const __half* a, float* f) { f[0] = __half2float(a[0]); }'
    bare = nvrtc.compile(src, "h.cu", ("--gpu-architecture=sm_90",))
    assert not bare.ok and "cuda_fp16.h" in bare.log
    result = nvrtc.compile(src, "h.cu", ("--gpu-architecture=sm_90", *include_options(src)))
    assert result.ok, result.log


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_kernel_compiles_without_spills(nvrtc: Nvrtc, path: Path, arch: str) -> None:
    source = path.read_text(encoding="utf-8")
    result, verbose = _compile_verbose(nvrtc, source, path.name, arch)
    assert result.ok, f"NVRTC rejected {path.name} for {arch}:\n{result.log}"
    assert result.cubin_bytes > 0
    if not verbose:
        pytest.skip(f"NVRTC {nvrtc.version()} has no --ptxas-options; compiled, spill check skipped")
    stats = parse_ptxas_log(result.log)
    # __launch_bounds__(...) may sit between `void` and the name (CUDA's documented spelling)
    declared = set(re.findall(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^()]*\)\s*)?(\w+)',
                              source))
    assert {s.name for s in stats} == declared, f"ptxas log does not cover every kernel of {path.name}"
    threads = block_threads(source)
    for s in stats:
        blocks, occ = occupancy(s.registers, s.smem_bytes, threads.get(s.name, DEFAULT_THREADS), arch)
        print(f"{arch} {path.name:14s} {s.name:22s} regs={s.registers:3d} smem={s.smem_bytes:5d}B "
              f"stack={s.stack_bytes}B spills={s.spill_stores}/{s.spill_loads} blocks/SM={blocks} occupancy={occ:.0%}")
        assert blocks >= 1, f"{s.name} cannot be resident on {arch}: {s}"
        assert s.spill_stores == 0 and s.spill_loads == 0, f"{s.name} spills registers on {arch}: {s}"
        assert s.stack_bytes == 0, f"{s.name} uses a {s.stack_bytes}-byte stack frame on {arch}"


@needs_nvrtc
def test_gate_catches_nvrtc_only_errors(nvrtc: Nvrtc) -> None:
    # g++ would accept INFINITY from <cmath>; NVRTC has no such macro. The gate must see the difference.
    bad = 'extern "C" __global__ void k(float* x) { x[0] = -INFINITY; }'
    result = nvrtc.compile(bad, "bad.cu", ("--gpu-architecture=sm_90",))
    assert not result.ok and "INFINITY" in result.log


@needs_nvrtc
def test_gate_reports_spills(nvrtc: Nvrtc) -> None:
    # Starving a real kernel of registers forces spills: the parser must see them, or the gate is blind.
    source = (KERNEL_DIR / "im2col.cu").read_text(encoding="utf-8")
    result = nvrtc.compile(source, "im2col.cu", ("--gpu-architecture=sm_90", "--maxrregcount=16",
                                                 "--ptxas-options=-v", *include_options(source)))
    if not result.ok and "ptxas-options" in result.log:
        pytest.skip("no --ptxas-options in this NVRTC")
    assert result.ok, result.log
    stats = parse_ptxas_log(result.log)
    assert stats and any(s.spill_stores > 0 for s in stats), stats


def main() -> int:
    if _LIB is None:
        print("nvidia-cuda-nvrtc wheel not installed; nothing to check")
        return 0
    nv, failures = Nvrtc(_LIB), 0
    print(f"NVRTC {nv.version()} from {nv.path}")
    for arch in ARCHS:
        for path in SOURCES:
            try:
                result, verbose = _compile_verbose(nv, path.read_text(encoding="utf-8"), path.name, arch)
            except pytest.skip.Exception as exc:
                print(f"SKIP  {arch} {path.name}: {exc}")
                continue
            if not result.ok:
                failures += 1
                print(f"FAIL {arch} {path.name}\n{result.log}")
                continue
            threads = block_threads(path.read_text(encoding="utf-8"))
            for s in parse_ptxas_log(result.log) if verbose else []:
                bad = s.spill_stores or s.spill_loads or s.stack_bytes
                failures += bool(bad)
                blocks, occ = occupancy(s.registers, s.smem_bytes, threads.get(s.name, DEFAULT_THREADS), arch)
                print(f"{'SPILL' if bad else 'ok':5s} {arch} {path.name:14s} {s.name:24s} regs={s.registers:3d} "
                      f"smem={s.smem_bytes:5d}B spills={s.spill_stores}/{s.spill_loads} "
                      f"threads={threads.get(s.name, DEFAULT_THREADS)} blocks/SM={blocks} occupancy={occ:.0%}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
