"""Turn CUDA source into a host shared library: rewrite `__shared__`, add launchers, run g++, cache.

The cache key is a hash of the prepared source (which embeds the kernel source and the launchers),
`cuda_emu.h`, the compiler flags and the compiler's identity (resolved path, size and mtime: no
process is started to ask it its version). Libraries go to $GPUNN_EMU_CACHE or ~/.cache/gpunn/emu;
each is compiled under a temporary name in that directory and renamed into place, so concurrent
processes never see a half-written file.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from gpunn.emu.signature import KernelSig, mask_comments

HEADER = Path(__file__).with_name("cuda_emu.h")
ABI_VERSION = 1
BASE_FLAGS = ("-std=c++20", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-U_FORTIFY_SOURCE",
              "-ffp-contract=off", "-fno-strict-aliasing", "-Wl,-Bsymbolic")


class EmuCompileError(RuntimeError):
    """g++ rejected the kernel source, or no compiler is available; the message carries its output."""


def cache_dir() -> Path:
    env = os.environ.get("GPUNN_EMU_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "gpunn" / "emu"
    path.mkdir(parents=True, exist_ok=True)
    return path


def compiler() -> str:
    cxx = os.environ.get("GPUNN_EMU_CXX", "g++")
    found = shutil.which(cxx)
    if not found:
        raise EmuCompileError(f"the CUDA emulator needs a C++20 compiler: {cxx!r} is not on PATH "
                              "(install g++ or set GPUNN_EMU_CXX)")
    return found


def _compiler_identity(path: str) -> str:
    real = os.path.realpath(path)
    st = os.stat(real)
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


# --- option handling ------------------------------------------------------------------------
_EMU_OPTION = re.compile(r"--emu-(?P<key>[a-z-]+)(?:=(?P<value>.*))?$")


def translate_options(options: tuple[str, ...]) -> tuple[str, ...]:
    """NVRTC options -> g++ flags. -D/-U/-I pass through; --emu-* select emulator builds; the rest
    (-arch, --use_fast_math, -std, -lineinfo, ...) are device-only and ignored, though they still
    change the cache key."""
    if not isinstance(options, (tuple, list)) or not all(isinstance(o, str) for o in options):
        raise TypeError(f"options must be a tuple of str, got {options!r}")
    flags: list[str] = []
    threads = False
    for opt in options:
        m = _EMU_OPTION.match(opt)
        if opt.startswith(("-D", "-U", "-I")) and len(opt) > 2:
            flags.append(opt)
        elif m:
            key, value = m.group("key"), m.group("value")
            if key == "core" and value in ("fibers", "threads"):
                threads = threads or value == "threads"
            elif key == "sanitize" and value in ("thread", "address", "undefined"):
                flags += [f"-fsanitize={value}", "-g", "-fno-omit-frame-pointer"]
                # TSan and ASan cannot follow the fiber core's stack switches
                threads = threads or value in ("thread", "address")
            elif key == "stack-kb" and value and value.isdigit() and 16 <= int(value) <= 65536:
                flags.append(f"-DGPUNN_EMU_STACK_KB={int(value)}")
            else:
                raise ValueError(f"unknown emulator option {opt!r}; expected --emu-core=fibers|threads, "
                                 "--emu-sanitize=thread|address|undefined or --emu-stack-kb=N (16..65536)")
    if threads:
        flags += ["-DGPUNN_EMU_THREADS", "-pthread"]
    return tuple(flags)


def sanitizers(options: tuple[str, ...]) -> list[str]:
    """The sanitizers (`thread`, `address`, `undefined`) an option tuple asks for."""
    return [m.group("value") for o in options if (m := _EMU_OPTION.match(o)) and m.group("key") == "sanitize"]


def sanitizer_runtime(name: str) -> str:
    """Path of the compiler's runtime for sanitizer `name` ("thread" -> libtsan.so), which must be
    LD_PRELOADed into the Python process that loads a sanitized kernel library."""
    lib = {"thread": "libtsan.so", "address": "libasan.so", "undefined": "libubsan.so"}[name]
    proc = subprocess.run([compiler(), f"-print-file-name={lib}"], capture_output=True, text=True, timeout=60)
    path = proc.stdout.strip()
    if proc.returncode != 0 or not os.path.isabs(path) or not os.path.exists(path):
        raise EmuCompileError(f"the compiler has no {lib} (install the sanitizer runtime, e.g. libtsan2)")
    return path


def runtime_is_loaded(name: str) -> bool:
    """Whether the sanitizer runtime is mapped into this process (it must come first, by LD_PRELOAD)."""
    lib = {"thread": "libtsan", "address": "libasan", "undefined": "libubsan"}[name]
    try:
        return lib in Path("/proc/self/maps").read_text()
    except OSError:
        return False


# --- source preparation ---------------------------------------------------------------------
_ALIGN = r"__align__\s*\((?:[^()]|\([^()]*\))*\)"
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?P<decl>[^;{}()=]*?(?:" + _ALIGN + r"[^;{}=]*?)?)\s*(?P<name>[A-Za-z_]\w*)\s*\[\s*\]\s*;")
_STATIC_SHARED = re.compile(
    r"(?P<pre>(?:\b(?:static|volatile)\s+)*)__shared__\s+(?P<decl>(?:[^;{}()=,\[]|" + _ALIGN + r")*?)\s*"
    r"(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\];{}]*\]\s*)*);")


def _split_align(decl: str) -> tuple[str, int]:
    align = 0
    for m in re.finditer(_ALIGN, decl):
        inner = m.group(0)[m.group(0).index("(") + 1:-1].strip()
        if not inner.isdigit():
            raise EmuCompileError(f"__align__({inner}) in a __shared__ declaration: the emulator needs a literal")
        align = max(align, int(inner))
    return " ".join(re.sub(_ALIGN, " ", decl).split()), align


def _keep_lines(original: str, replacement: str) -> str:
    return replacement + "\n" * original.count("\n")


def rewrite_shared(code: str) -> str:
    """Rewrite shared-memory declarations onto the emulator's buffers (see cuda_emu.h)."""
    def on_masked(pattern: re.Pattern, text: str, make) -> str:
        masked = mask_comments(text)
        out, last = [], 0
        for m in pattern.finditer(masked):
            out.append(text[last:m.start()])
            out.append(_keep_lines(m.group(0), make(m)))
            last = m.end()
        out.append(text[last:])
        return "".join(out)

    def dynamic(m: re.Match) -> str:
        typ, _ = _split_align(m.group("decl"))
        return (f"{typ}* const {m.group('name')} = "
                f"reinterpret_cast<{typ}*>(::gpunn_emu::dyn_smem_buf);")

    def static(m: re.Match) -> str:
        typ, align = _split_align(m.group("decl"))
        if "volatile" in m.group("pre"):
            typ = "volatile " + typ
        dims = "".join(m.group("dims").split())
        return (f"auto& {m.group('name')} = "
                f"::gpunn_emu::shared_slot<{typ}{dims}, {max(align, 16)}>([]{{}});")

    code = on_masked(_EXTERN_SHARED, code, dynamic)
    code = on_masked(_STATIC_SHARED, code, static)
    masked = mask_comments(code)
    left = re.search(r"\b__shared__\b", masked)
    if left:
        line = code.count("\n", 0, left.start()) + 1
        text = code.splitlines()[line - 1].strip()
        raise EmuCompileError(f"line {line}: the emulator cannot parse this __shared__ declaration: {text!r}; "
                              "write one variable per statement, as `__shared__ T name[N];` or "
                              "`extern __shared__ T name[];`")
    return code


def prepare_source(code: str, kernels: list[KernelSig], filename: str = "kernel.cu") -> str:
    launchers = [
        f"GPUNN_EMU_EXPORT int gpunn_emu_launch_{k.name}(const unsigned* grid, const unsigned* block, "
        "unsigned long long dyn, unsigned long long limit, void** args, char* err, unsigned long long errlen) {\n"
        f"    return ::gpunn_emu::launch_kernel(&{k.name}, grid, block, dyn, limit, args, err, errlen);\n}}"
        for k in kernels]
    safe_name = filename.replace("\\", "/").replace('"', "")
    return "\n".join([
        '#include "cuda_emu.h"',
        f'#line 1 "{safe_name}"',
        rewrite_shared(code),
        '#line 1 "gpunn_emu_launchers"',
        f"GPUNN_EMU_EXPORT int gpunn_emu_abi_version() {{ return {ABI_VERSION}; }}",
        *launchers,
        "",
    ])


# --- compile and cache ------------------------------------------------------------------------
_compile_lock = threading.Lock()
compile_count = 0  # how many times this process ran the compiler (the cache test reads it)


def _run_compiler(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def build_library(code: str, kernels: list[KernelSig], options: tuple[str, ...] = (),
                  filename: str = "kernel.cu") -> Path:
    """The path of a shared library exporting gpunn_emu_launch_<name> for each kernel; built once."""
    global compile_count
    flags = translate_options(tuple(options))
    source = prepare_source(code, kernels, filename)
    cxx = compiler()
    key = hashlib.sha256("\0".join([
        str(ABI_VERSION), HEADER.read_text(), source, " ".join(BASE_FLAGS), " ".join(flags),
        " ".join(options), _compiler_identity(cxx)]).encode()).hexdigest()[:32]
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(filename).stem)[:40] or "kernel"
    out = cache_dir() / f"{stem}-{key}.so"
    if out.exists():
        return out
    with _compile_lock:  # one compile at a time inside a process; other processes may race: rename
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(prefix=".build-", dir=out.parent) as tmp:
            src = Path(tmp) / f"{stem}.cpp"
            src.write_text(source)
            tmp_so = Path(tmp) / f"{stem}.so"
            cmd = [cxx, *BASE_FLAGS, *flags, f"-I{HEADER.parent}", str(src), "-o", str(tmp_so)]
            compile_count += 1
            proc = _run_compiler(cmd)
            if proc.returncode != 0:
                msg = proc.stderr.replace(str(src), filename)
                if len(msg) > 8000:
                    msg = msg[:8000] + "\n... (truncated)"
                raise EmuCompileError(f"g++ could not compile {filename} for the CUDA emulator:\n{msg}")
            os.replace(tmp_so, out)
    return out
