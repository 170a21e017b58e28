"""A CUDA emulator: run the same `.cu` kernels on the CPU, on NumPy arrays, with CuPy's call syntax.

    from gpunn.emu import RawModule, RawKernel
    mod = RawModule(source)                       # like cupy.RawModule (nothing compiles yet)
    add = mod.get_function("vec_add")             # extern "C" __global__ void vec_add(...)
    add((blocks,), (256,), (x, y, out, np.int32(n)), shared_mem=0)

How it works
------------
* `signature.py` parses each `extern "C" __global__ void name(...)`; every call is checked before it
  runs: pointer parameters take a C-contiguous NumPy array of exactly the declared dtype (writable
  unless the pointer is const); scalar parameters take a NumPy scalar of exactly the declared type
  (np.int32 for int, np.float32 for float, ...). A Python int/float is refused, because CuPy would
  pass it as int64/double and silently corrupt an int/float parameter on a real GPU. Grid, block
  (<= 1024 threads) and shared memory (48 KiB static + dynamic unless `max_dynamic_shared_size_bytes`
  is raised) are checked too.
* `build.py` prepends `#include "cuda_emu.h"` to the unchanged source, rewrites the `__shared__`
  declarations onto the emulator's buffers, appends one C-ABI launcher per kernel and compiles with
  `g++ -std=c++20 -O2 -fPIC -shared`. Libraries are cached by a hash of source, header, options and
  compiler in $GPUNN_EMU_CACHE (default ~/.cache/gpunn/emu), written to a temporary name and renamed,
  so concurrent processes are safe. The cache must be private (ours, 0700): a library there that
  someone else could have written is rebuilt, never loaded (see build.py). Nothing compiles at import; the first launch (or `.compile()`)
  builds.
* `cuda_emu.h` runs each block's threads as fibers on one OS thread, switching at __syncthreads and
  warp intrinsics; blocks run in order, so results are deterministic. Deadlocks (threads at a
  barrier while others exited, barrier or warp divergence) raise `EmuLaunchError` instead of
  hanging. Shared memory is filled with 0xFF (NaN) before each block, so reading shared memory no
  thread wrote shows up as NaN. `--emu-core=threads` swaps in a std::thread + std::barrier core and
  `--emu-sanitize=thread` builds it under ThreadSanitizer, which reports a missing __syncthreads as
  a data race (the process must preload libtsan; see tests/emu/test_emu_tsan.py).

Half precision (cuda_fp16.h, cuda_bf16.h, mma.h; their #include lines are dropped by build.py and
cuda_emu.h provides them): `__half` / `__nv_bfloat16` (pointer parameters take np.float16 /
ml_dtypes.bfloat16 arrays, scalar parameters np.float16 / ml_dtypes.bfloat16 scalars) with the
conversion intrinsics in bit code, round-to-nearest-even, subnormals, overflow to inf and signed
zeros exactly as NumPy / ml_dtypes; NaN as CUDA (float->16-bit gives 0x7fff, half->float 0x7fffffff).
__hadd/__hsub/__hmul/__hdiv are fp32 math rounded once (= correctly rounded), __hfma is fused (one
rounding of the exact a*b+c). `wmma::__float_to_tf32` is cvt.rna (ties away from zero). WMMA
fragments: m16n16k16 with __half or __nv_bfloat16 a/b, m16n16k8 with precision::tf32 a/b, float
accumulators; load/store/mma_sync are warp-collective (all 32 lanes, same arguments, or an
EmuLaunchError). Lane l holds elements [l*n, (l+1)*n) of the fragment's row-major matrix, n =
num_elements = rows*cols/32 (CUDA leaves the mapping unspecified). mma_sync computes
d = c + sum_k a[i][k]*b[k][j] with one fp32 fmaf per k, k ascending - bit-exact and deterministic,
but not the tensor cores' internal order, so compare with real GPUs within a tolerance.

Options: NVRTC options are accepted; `-D`/`-U`/`-I` are passed to g++, the rest are device-only and
ignored. Emulator options: `--emu-core=fibers|threads`, `--emu-sanitize=thread|address|undefined`
(thread and address imply the thread core and need their runtime LD_PRELOADed into Python),
`--emu-stack-kb=N` (fiber stack size, default 64; a fiber that overflows it hits a guard page).

Limits: one kernel per `extern "C" __global__` definition (no templates/name_expressions); one
variable per `__shared__` statement; spin-waits on other threads without a barrier never yield, so
they hang the fiber core; `__activemask()` always answers the full warp; math comes from the host
libm, so it matches NumPy more closely than the GPU's ulp bounds do.

It sits at the bottom of gpunn's stack and imports nothing else of gpunn; its one user is the
emulated backend (gpunn/backend/cuda/emulated.py), which imports it when that backend is chosen.
"""
from gpunn.emu.build import EmuCacheError, EmuCompileError, build_library, cache_dir
from gpunn.emu.rawkernel import EmuLaunchError, RawKernel, RawModule
from gpunn.emu.signature import KernelSig, Param, find_kernels

__all__ = ["RawModule", "RawKernel", "EmuLaunchError", "EmuCacheError", "EmuCompileError", "cache_dir", "build_library",
           "find_kernels", "KernelSig", "Param"]
