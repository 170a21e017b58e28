"""Building: the source is compiled unchanged but for shared-memory rewrites, lazily, and once per
(source, header, options, compiler) thanks to the on-disk cache."""
from __future__ import annotations

import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpunn.emu.build as build
from gpunn.emu import EmuCompileError, RawModule, find_kernels
from gpunn.emu.build import rewrite_shared, translate_options

TINY = 'extern "C" __global__ void fill(float* out, float v) { out[threadIdx.x] = v + SHIFT; }\n'


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_EMU_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _forbid_compiler(monkeypatch):
    def refuse(cmd):
        raise AssertionError(f"the compiler ran again: {cmd}")
    monkeypatch.setattr(build, "_run_compiler", refuse)


def test_build_is_lazy_and_cached_on_disk(fresh_cache, monkeypatch):
    before = build.compile_count
    mod = RawModule(TINY, options=("-DSHIFT=1.0f",))
    assert build.compile_count == before, "constructing a module must not compile"
    out = np.zeros(4, np.float32)
    mod.get_function("fill")(1, 4, (out, np.float32(2)))
    np.testing.assert_array_equal(out, 3.0)
    assert build.compile_count == before + 1
    [lib] = fresh_cache.glob("*.so")
    assert not list(fresh_cache.glob(".build-*")), "the temporary build directory must be removed"
    # The cache holds code we load: private to us (test_emu_cache_safety.py covers the attacks).
    assert stat.S_IMODE(fresh_cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(lib.stat().st_mode) == 0o700

    # A new module with the same source and options reuses the library: the compiler never runs.
    _forbid_compiler(monkeypatch)
    out[:] = 0
    RawModule(TINY, options=("-DSHIFT=1.0f",)).get_function("fill")(1, 4, (out, np.float32(5)))
    np.testing.assert_array_equal(out, 6.0)

    # Different options are a different library.
    with pytest.raises(AssertionError, match="the compiler ran again"):
        RawModule(TINY, options=("-DSHIFT=2.0f",)).compile()


def test_device_only_options_are_accepted_but_emulator_options_are_checked():
    assert translate_options(("-arch=sm_80", "--use_fast_math", "-std=c++17", "-DX=1")) == ("-DX=1",)
    assert "-DGPUNN_EMU_THREADS" in translate_options(("--emu-core=threads",))
    assert "-fsanitize=thread" in translate_options(("--emu-sanitize=thread",))
    assert "-DGPUNN_EMU_STACK_KB=256" in translate_options(("--emu-stack-kb=256",))
    with pytest.raises(ValueError, match="unknown emulator option '--emu-core=gpu'"):
        translate_options(("--emu-core=gpu",))
    with pytest.raises(TypeError, match="options must be a tuple of str"):
        translate_options(("-DX", 3))  # type: ignore[arg-type]


def test_compile_errors_are_reported_with_kernel_line_numbers(fresh_cache):
    # NVRTC has no INFINITY macro; the emulator must not have it either.
    src = 'extern "C" __global__ void k(float* out) {\n    out[0] = INFINITY;\n}\n'
    with pytest.raises(EmuCompileError, match=r"(?s)could not compile inf\.cu.*inf\.cu:2:\d+: error: .INFINITY."):
        RawModule(src, filename="inf.cu").compile()


def test_missing_compiler_is_a_clear_error(fresh_cache, monkeypatch):
    monkeypatch.setenv("GPUNN_EMU_CXX", "no-such-compiler-gpunn")
    with pytest.raises(EmuCompileError, match="needs a C\\+\\+20 compiler: 'no-such-compiler-gpunn' is not on PATH"):
        RawModule(TINY).compile()


def test_shared_declarations_are_rewritten_keeping_line_numbers():
    src = textwrap.dedent("""\
        // __shared__ float in_a_comment[4];
        extern __shared__ __align__(16) unsigned char raw[];
        __global__ void k() {
            __shared__ float tile[32][33];
            static __shared__ volatile int flag;
            __shared__ __align__(8) double
                wide[4];
            extern __shared__ float dyn[];
        }
        """)
    out = rewrite_shared(src)
    assert out.count("\n") == src.count("\n")
    lines = out.splitlines()
    assert lines[0] == "// __shared__ float in_a_comment[4];"
    assert "unsigned char* const raw = reinterpret_cast<unsigned char*>(::gpunn_emu::dyn_smem_buf);" in lines[1]
    assert "auto& tile = ::gpunn_emu::shared_slot<float[32][33], 16>([]{});" in lines[3]
    assert "auto& flag = ::gpunn_emu::shared_slot<volatile int, 16>([]{});" in lines[4]
    assert "auto& wide = ::gpunn_emu::shared_slot<double[4], 16>([]{});" in lines[5]
    assert "float* const dyn = reinterpret_cast<float*>(::gpunn_emu::dyn_smem_buf);" in lines[7]


def test_unparseable_shared_declaration_is_refused():
    with pytest.raises(EmuCompileError, match=r"line 2: the emulator cannot parse this __shared__ declaration: "
                                              r"'__shared__ float a\[4\], b\[4\];'"):
        rewrite_shared("__global__ void k() {\n__shared__ float a[4], b[4];\n}\n")


def test_signature_parsing():
    ks = find_kernels(textwrap.dedent("""\
        /* extern "C" __global__ void commented(int x) {} */
        extern "C" __global__ void __launch_bounds__(128) a(const float* __restrict__ x, double* y,
                                                            const int n, unsigned long long m, bool) {}
        extern "C" {
        __global__ void b(void) {}
        }
        template <typename T> __device__ T helper(T v) { return v; }
        """))
    assert sorted(ks) == ["a", "b"]
    a = ks["a"]
    assert a.extern_c and ks["b"].extern_c and ks["b"].params == ()
    assert [(p.name, p.ctype, str(p.dtype), p.pointer, p.const) for p in a.params] == [
        ("x", "const float*", "float32", True, True), ("y", "double*", "float64", True, False),
        ("n", "int", "int32", False, False), ("m", "unsigned long long", "uint64", False, False),
        ("arg4", "bool", "bool", False, False)]


@pytest.mark.parametrize("params,match", [
    ("float4 v", "type 'float4', which the emulator does not support"),
    ("float** p", "pointer to pointer"),
    ("int& r", "is a reference"),
])
def test_unsupported_parameters_are_refused(params, match):
    with pytest.raises(ValueError, match=match):
        find_kernels(f'extern "C" __global__ void k({params}) {{}}')


@pytest.mark.slow
def test_concurrent_processes_share_the_cache(fresh_cache):
    script = textwrap.dedent(f"""\
        import numpy as np
        from gpunn.emu import RawModule
        out = np.zeros(4, np.float32)
        RawModule({TINY!r}, options=("-DSHIFT=0.5f",)).get_function("fill")(1, 4, (out, np.float32(1)))
        assert (out == 1.5).all(), out
        """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert len(list(fresh_cache.glob("*.so"))) == 1
