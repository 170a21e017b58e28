"""Turn CUDA source into a host shared library: rewrite `__shared__`, add launchers, run g++, cache.

The cache key is a hash of the prepared source (which embeds the kernel source and the launchers),
`cuda_emu.h`, the compiler flags and the compiler's identity (resolved path, size and mtime: no
process is started to ask it its version). Libraries go to $GPUNN_EMU_CACHE or ~/.cache/gpunn/emu;
each is compiled under a temporary name in that directory, made private (0700) and renamed into
place, so concurrent processes never see a half-written file.

Cache safety. A cached library is code this process will dlopen, so whoever can write the cache can
run code as us. Hence:
* The cache directory (symlinks resolved) must be owned by this user and writable by neither group
  nor others; a missing one is created 0700 (chmod after mkdir: mkdir's mode is umask-filtered).
  A directory that fails the check is refused with an EmuCacheError naming GPUNN_EMU_CACHE, the path
  and the fix, rather than silently swapped for a private fallback: a fallback would hide the
  misconfiguration and quietly recompile on every run, and a shared directory is exactly what lets
  another user plant a library. One exception: the default directory, when it is ours but group-
  writable (older versions created it with the umask's mode, 0775 under umask 002), is tightened to
  0700, since no one else can have a claim on it; a directory named by GPUNN_EMU_CACHE is never
  chmodded, as that would silently break whoever else it was shared with.
* An existing entry is loaded only when it is a non-empty regular file owned by us that neither
  group nor others can write. Anything else (another user's, loosened, a symlink, empty) is rebuilt
  and atomically replaced, which is safe because the directory is ours: no one else can swap the
  file between the check and the load. Rebuilding is friendlier than failing, and the refusal is still total: the
  untrusted bytes are never loaded. If the entry cannot be replaced, EmuCacheError says why.
* An entry that passes those checks but fails to load (garbage bytes: `ctypes.CDLL` raises OSError)
  is rebuilt once by the loader (rawkernel.py, `build_library(..., rebuild=True)`) instead of
  failing every later run; only a failure of the fresh build is raised.
Not checked: the directories above the cache. One that another user can write lets that user
replace the cache directory itself, as with any per-user cache; keep the cache under a private path.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
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


class EmuCacheError(EmuCompileError):
    """The build cache is unsafe (another user, or group/others, could write it) or unusable. A
    subclass of EmuCompileError, so that code handling "the emulator cannot build here" handles it."""


_PRIVATE_DIR = 0o700
_PRIVATE_LIB = 0o700  # what the linker gives a shared object, minus the group and other bits


def _unsafe_reason(st: os.stat_result, uid: int) -> str | None:
    """Why a cache directory or library with this stat must not be trusted, or None if it may be."""
    if st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its mode is {stat.S_IMODE(st.st_mode):04o}: group or others can write to it"
    return None


def _make_private_dir(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, _PRIVATE_DIR)
    except FileExistsError:
        return  # not ours to chmod: the caller checks it
    os.chmod(path, _PRIVATE_DIR)  # the umask may have taken bits off mkdir's mode


def cache_dir() -> Path:
    """The build cache directory, created 0700 if missing; EmuCacheError if it is unsafe (see the
    module docstring). The path is returned with symlinks resolved, so that a link someone else
    owns cannot be repointed between the check and the load."""
    env = os.environ.get("GPUNN_EMU_CACHE")
    origin = "GPUNN_EMU_CACHE" if env else "the default cache directory (GPUNN_EMU_CACHE is unset)"
    path = Path(os.path.realpath(env if env else Path.home() / ".cache" / "gpunn" / "emu"))
    try:
        _make_private_dir(path)
        st = os.lstat(path)
    except OSError as exc:
        raise EmuCacheError(f"{origin}: cannot create the CUDA emulator's build cache {path}: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise EmuCacheError(f"{origin}: the CUDA emulator's build cache {path} is not a directory")
    uid = os.getuid()
    reason = _unsafe_reason(st, uid)
    if reason and not env and st.st_uid == uid:
        os.chmod(path, _PRIVATE_DIR)  # our own default directory, left group-writable by an older version
        reason = None
    if reason:
        fix = (f"run `chmod go-w {path}` or point GPUNN_EMU_CACHE at a private directory" if st.st_uid == uid
               else "point GPUNN_EMU_CACHE at a directory of your own")
        raise EmuCacheError(
            f"{origin}: refusing to use {path} as the CUDA emulator's build cache: {reason}. Libraries "
            f"found there are loaded into this process, so it must be a directory owned by uid {uid} "
            f"that neither group nor others can write; {fix}")
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


# CUDA headers whose contents cuda_emu.h provides: their #include lines are blanked (line numbers kept).
PROVIDED_HEADERS = ("cuda_fp16.h", "cuda_bf16.h", "mma.h")
_PROVIDED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"](?:' + "|".join(map(re.escape, PROVIDED_HEADERS))
                               + r')[>"][^\n]*$', re.M)


def strip_provided_includes(code: str) -> str:
    """Blank `#include <cuda_fp16.h>`, `<cuda_bf16.h>` and `<mma.h>`: cuda_emu.h defines what they declare."""
    masked = mask_comments(code)
    out, last = [], 0
    for m in _PROVIDED_INCLUDE.finditer(masked):
        out.append(code[last:m.start()])
        out.append("/* provided by cuda_emu.h */")
        last = m.end()
    out.append(code[last:])
    return "".join(out)


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
        rewrite_shared(strip_provided_includes(code)),
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


def _library_problem(path: Path) -> str | None:
    """None if the cached `path` may be loaded; otherwise why not ("it is missing" when absent)."""
    try:
        st = os.lstat(path)  # lstat: a symlink is not a library we wrote
    except FileNotFoundError:
        return "it is missing"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_size == 0:
        return "it is empty"  # left by a crash or a full disk: rebuild rather than fail to load
    return _unsafe_reason(st, os.getuid())


def _compile_into(out: Path, source: str, cmd_head: list[str], stem: str, filename: str, problem: str) -> None:
    """Compile `source` to a temporary name in out's directory, make it private, rename it to `out`."""
    global compile_count
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out.parent) as tmp:
        src = Path(tmp) / f"{stem}.cpp"
        src.write_text(source)
        tmp_so = Path(tmp) / f"{stem}.so"
        cmd = [*cmd_head, str(src), "-o", str(tmp_so)]
        compile_count += 1
        proc = _run_compiler(cmd)
        if proc.returncode != 0:
            msg = proc.stderr.replace(str(src), filename)
            if len(msg) > 8000:
                msg = msg[:8000] + "\n... (truncated)"
            raise EmuCompileError(f"g++ could not compile {filename} for the CUDA emulator:\n{msg}")
        # The linker's mode follows the umask (0775 under umask 002), which the load check would
        # refuse; set it before the rename so that the entry is never visible with a looser mode.
        os.chmod(tmp_so, _PRIVATE_LIB)
        try:
            os.replace(tmp_so, out)
        except OSError as exc:
            raise EmuCacheError(
                f"cannot replace the cached library {out} ({problem}) in the CUDA emulator's build cache: "
                f"{exc}; remove it, or point GPUNN_EMU_CACHE at a private directory") from exc


def build_library(code: str, kernels: list[KernelSig], options: tuple[str, ...] = (),
                  filename: str = "kernel.cu", *, rebuild: bool = False) -> Path:
    """The path of a shared library exporting gpunn_emu_launch_<name> for each kernel; built once.

    A cached library is reused only if it is safe to load (see the module docstring); otherwise, or
    with `rebuild` (the loader asks for it when the cached file does not load), it is compiled again
    and atomically replaced."""
    flags = translate_options(tuple(options))
    source = prepare_source(code, kernels, filename)
    cxx = compiler()
    key = hashlib.sha256("\0".join([
        str(ABI_VERSION), HEADER.read_text(), source, " ".join(BASE_FLAGS), " ".join(flags),
        " ".join(options), _compiler_identity(cxx)]).encode()).hexdigest()[:32]
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(filename).stem)[:40] or "kernel"
    out = cache_dir() / f"{stem}-{key}.so"
    if not rebuild and _library_problem(out) is None:
        return out
    with _compile_lock:  # one compile at a time inside a process; other processes may race: rename
        problem = "it does not load" if rebuild else _library_problem(out)
        if problem is None:
            return out
        _compile_into(out, source, [cxx, *BASE_FLAGS, *flags, f"-I{HEADER.parent}"], stem, filename, problem)
    return out
