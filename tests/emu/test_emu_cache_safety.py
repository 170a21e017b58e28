"""The build cache holds code this process dlopens, so it must not be writable by anyone else: a
planted, loosened, foreign or corrupt entry is rebuilt (never loaded), new entries are private and
appear atomically, and a cache directory that others can write is refused.

Entries are planted through build_library itself with a fake compiler, so the tests find the cache
name without knowing how it is computed; only the rebuilds run the real compiler."""
from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gpunn.emu.build as build
from gpunn.emu import EmuCompileError, RawModule, find_kernels

TINY = 'extern "C" __global__ void fill(float* out, float v) { out[threadIdx.x] = v + SHIFT; }\n'
OPTS = ("-DSHIFT=1.0f",)

# The attacker's library: it exports the launcher the emulator looks up, and writes 666 instead.
EVIL = r"""
extern "C" __attribute__((visibility("default"))) int gpunn_emu_launch_fill(
        const unsigned*, const unsigned*, unsigned long long, unsigned long long, void** args, char*,
        unsigned long long) {
    float* out = *static_cast<float**>(args[0]);
    for (int i = 0; i < 4; ++i) out[i] = 666.0f;
    return 0;
}
"""


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_EMU_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def evil_library(tmp_path_factory) -> bytes:
    tmp = tmp_path_factory.mktemp("evil")
    (tmp / "evil.cpp").write_text(EVIL)
    subprocess.run([build.compiler(), "-shared", "-fPIC", str(tmp / "evil.cpp"), "-o", str(tmp / "evil.so")],
                   check=True, timeout=120)
    return (tmp / "evil.so").read_bytes()


def _fake_compiler(content: bytes, mode: int | None = None):
    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        target = Path(cmd[cmd.index("-o") + 1])
        target.write_bytes(content)
        if mode is not None:
            os.chmod(target, mode)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def _plant(monkeypatch, content: bytes, mode: int) -> Path:
    """Put `content` where the cache keeps TINY's library, with `mode`, as an attacker or a crash would."""
    with monkeypatch.context() as m:
        m.setattr(build, "_run_compiler", _fake_compiler(content))
        path = build.build_library(TINY, list(find_kernels(TINY).values()), OPTS)
    os.chmod(path, mode)
    return path


def _run_fill() -> np.ndarray:
    out = np.zeros(4, np.float32)
    RawModule(TINY, options=OPTS).get_function("fill")(1, 4, (out, np.float32(2)))
    return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _forbid_compiler(monkeypatch):
    def refuse(cmd):
        raise AssertionError(f"the compiler ran again: {cmd}")
    monkeypatch.setattr(build, "_run_compiler", refuse)


# --- cached libraries ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o666, 0o620], ids=["world-writable", "group-writable"])
def test_writable_cached_library_is_replaced_not_loaded(fresh_cache, monkeypatch, evil_library, mode):
    planted = _plant(monkeypatch, evil_library, mode)
    before = build.compile_count
    np.testing.assert_array_equal(_run_fill(), 3.0, err_msg="the planted library was loaded")
    assert build.compile_count == before + 1
    assert planted.read_bytes() != evil_library, "the planted library must be replaced by our build"
    assert _mode(planted) == 0o700


def test_cached_library_of_another_user_is_replaced_not_loaded(fresh_cache, monkeypatch, evil_library):
    planted = _plant(monkeypatch, evil_library, 0o700)  # private mode, but "someone else's" file
    real_lstat, other = os.lstat, os.getuid() + 1

    def lstat(path, *args, **kwargs):
        st = real_lstat(path, *args, **kwargs)
        if os.fspath(path) != str(planted):
            return st
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, other, st.st_gid, st.st_size,
                               int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))
    monkeypatch.setattr(os, "lstat", lstat)
    before = build.compile_count
    np.testing.assert_array_equal(_run_fill(), 3.0, err_msg="another user's library was loaded")
    assert build.compile_count == before + 1
    assert planted.read_bytes() != evil_library


def test_a_symlinked_cached_library_is_replaced(fresh_cache, monkeypatch, evil_library, tmp_path):
    elsewhere = tmp_path / "evil.so"
    elsewhere.write_bytes(evil_library)
    planted = _plant(monkeypatch, b"placeholder", 0o700)
    planted.unlink()
    planted.symlink_to(elsewhere)
    np.testing.assert_array_equal(_run_fill(), 3.0, err_msg="the library behind the symlink was loaded")
    assert not planted.is_symlink() and elsewhere.read_bytes() == evil_library


@pytest.mark.parametrize("content", [b"", b"not a shared library\n" * 64], ids=["empty", "garbage"])
def test_empty_or_corrupt_cached_library_is_rebuilt(fresh_cache, monkeypatch, content):
    planted = _plant(monkeypatch, content, 0o700)
    before = build.compile_count
    np.testing.assert_array_equal(_run_fill(), 3.0)
    assert build.compile_count == before + 1
    assert planted.stat().st_size > len(content)
    # Repaired for good: a later module reuses the rebuilt library.
    _forbid_compiler(monkeypatch)
    np.testing.assert_array_equal(_run_fill(), 3.0)


def test_a_rebuild_that_still_does_not_load_is_raised_once(fresh_cache, monkeypatch):
    monkeypatch.setattr(build, "_run_compiler", _fake_compiler(b"still not a shared library\n" * 64))
    before = build.compile_count
    with pytest.raises(EmuCompileError, match=r"the freshly built .*/kernel-\w+\.so does not load: .*"
                                              r"\(the cached copy failed first with: .*\)"):
        RawModule(TINY, options=OPTS).compile()
    assert build.compile_count == before + 2, "one build, then exactly one rebuild"


def test_an_untrusted_library_that_cannot_be_replaced_is_a_clear_error(fresh_cache, monkeypatch, evil_library):
    planted = _plant(monkeypatch, evil_library, 0o666)
    monkeypatch.setattr(build, "_run_compiler", _fake_compiler(b"rebuilt"))

    def replace(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(EmuCompileError, match=rf"cannot replace the cached library {re.escape(str(planted))} "
                                              r"\(its mode is 0666: group or others can write to it\).*"
                                              r"Permission denied.*GPUNN_EMU_CACHE"):
        RawModule(TINY, options=OPTS).compile()
    assert planted.read_bytes() == evil_library  # untouched, and never loaded: the error came first


def test_new_libraries_are_private_and_appear_atomically(fresh_cache, monkeypatch):
    entries_while_compiling = []

    def compiler_run(cmd):
        target = Path(cmd[cmd.index("-o") + 1])
        entries_while_compiling.append(sorted(p.name for p in fresh_cache.glob("*.so")))
        assert target.parent.parent == Path(os.path.realpath(fresh_cache)), "compile next to the entry"
        target.write_bytes(b"half")
        os.chmod(target, 0o777)  # what the linker gives under umask 0
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(build, "_run_compiler", compiler_run)
    old = os.umask(0)
    try:
        path = build.build_library(TINY, list(find_kernels(TINY).values()), OPTS)
    finally:
        os.umask(old)
    assert entries_while_compiling == [[]], "the entry must not exist until it is complete"
    assert _mode(path) == 0o700
    assert [p.name for p in fresh_cache.iterdir()] == [path.name], "no temporary file may be left"


# --- the cache directory -----------------------------------------------------------------------
def test_cache_dir_is_created_private(fresh_cache, monkeypatch):
    nested = fresh_cache / "a" / "b"
    monkeypatch.setenv("GPUNN_EMU_CACHE", str(nested))
    old = os.umask(0o002)
    try:
        path = build.cache_dir()
    finally:
        os.umask(old)
    assert path == Path(os.path.realpath(nested))
    assert _mode(path) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o702])
def test_cache_dir_others_can_write_is_refused(fresh_cache, mode):
    fresh_cache.mkdir()
    os.chmod(fresh_cache, mode)
    real = os.path.realpath(fresh_cache)
    before = build.compile_count
    with pytest.raises(EmuCompileError, match=rf"GPUNN_EMU_CACHE: refusing to use {re.escape(real)} .*"
                                              rf"its mode is {mode:04o}: group or others can write.*"
                                              rf"owned by uid {os.getuid()} that neither group nor others can "
                                              rf"write; run `chmod go-w {re.escape(real)}`") as exc:
        RawModule(TINY, options=OPTS).compile()
    assert isinstance(exc.value, build.EmuCacheError)
    assert build.compile_count == before and not list(fresh_cache.iterdir())
    assert _mode(fresh_cache) == mode, "a directory named by GPUNN_EMU_CACHE is never chmodded"


def test_cache_dir_of_another_user_is_refused(fresh_cache, monkeypatch):
    fresh_cache.mkdir(mode=0o700)
    uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: uid + 1)
    with pytest.raises(EmuCompileError, match=rf"GPUNN_EMU_CACHE: refusing to use .*: it is owned by uid {uid}, "
                                              rf"not by this user \(uid {uid + 1}\).*"
                                              r"point GPUNN_EMU_CACHE at a directory of your own") as exc:
        build.cache_dir()
    assert isinstance(exc.value, build.EmuCacheError)


def test_a_symlinked_cache_dir_is_judged_by_its_target(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    link = tmp_path / "link"
    link.symlink_to(shared)
    monkeypatch.setenv("GPUNN_EMU_CACHE", str(link))
    with pytest.raises(EmuCompileError, match=rf"refusing to use {re.escape(os.path.realpath(shared))} as .*: "
                                              r"its mode is 0777") as exc:
        build.cache_dir()
    assert isinstance(exc.value, build.EmuCacheError)
    os.chmod(shared, 0o700)
    assert build.cache_dir() == Path(os.path.realpath(shared))


def test_cache_dir_that_is_a_file_is_refused(fresh_cache):
    fresh_cache.write_text("")
    with pytest.raises(EmuCompileError, match=r"GPUNN_EMU_CACHE: the CUDA emulator's build cache .* is not "
                                              r"a directory"):
        build.cache_dir()


def test_default_cache_dir_left_group_writable_is_tightened(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUNN_EMU_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    default = tmp_path / ".cache" / "gpunn" / "emu"
    default.mkdir(parents=True)
    os.chmod(default, 0o775)  # what an older version made under umask 002
    assert build.cache_dir() == Path(os.path.realpath(default))
    assert _mode(default) == 0o700
