"""Argument checking happens before launch, and every error names the kernel, the parameter and
what was expected."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture()
def vec_add(selftest_module):
    return selftest_module.get_function("vec_add")


def _arrays(n=8):
    return np.ones(n, np.float32), np.ones(n, np.float32), np.zeros(n, np.float32)


def test_python_int_for_int_parameter_is_refused(vec_add):
    a, b, out = _arrays()
    with pytest.raises(TypeError, match=r"vec_add.*argument 3 'n' \(int\).*numpy int32 scalar.*Python int.*int64"):
        vec_add(1, 8, (a, b, out, 8))
    assert (out == 0).all(), "nothing may run when the arguments are wrong"


def test_python_float_for_float_parameter_is_refused(selftest_module):
    out = np.zeros(7)
    args = [out, np.int32(1), np.uint32(1), np.int64(1), 0.5, np.float64(1), np.bool_(True), np.uint64(1)]
    with pytest.raises(TypeError, match=r"argument 4 'd' \(float\).*float32.*Python float.*float64"):
        selftest_module.get_function("scalars")(1, 1, tuple(args))


@pytest.mark.parametrize("value,expected", [(np.int64(8), "int64"), (np.float32(8), "float32"),
                                            (np.array(8, np.int32), "ndarray"), (True, "bool")])
def test_wrong_scalar_type_is_refused(vec_add, value, expected):
    a, b, out = _arrays()
    with pytest.raises(TypeError, match=rf"'n' \(int\) must be a numpy int32 scalar, got .*{expected}"):
        vec_add(1, 8, (a, b, out, value))


def test_wrong_pointer_dtype_is_refused(vec_add):
    a, b, out = _arrays()
    with pytest.raises(TypeError, match=r"argument 0 'a' \(const float\*\) must be a numpy array of dtype float32, "
                                        r"got ndarray\(dtype=float64"):
        vec_add(1, 8, (a.astype(np.float64), b, out, np.int32(8)))


def test_non_array_for_pointer_is_refused(vec_add):
    a, b, out = _arrays()
    with pytest.raises(TypeError, match=r"argument 1 'b' .*C-contiguous numpy array.*got list"):
        vec_add(1, 8, (a, [1.0] * 8, out, np.int32(8)))


def test_non_contiguous_array_is_refused(vec_add):
    a, b, out = _arrays(16)
    with pytest.raises(ValueError, match=r"argument 0 'a' .* must be C-contiguous"):
        vec_add(1, 8, (a[::2], b[:8], out[:8], np.int32(8)))


def test_read_only_array_for_non_const_pointer_is_refused(vec_add):
    a, b, out = _arrays()
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"argument 2 'out' \(float\*\) is written by the kernel but the array is read-only"):
        vec_add(1, 8, (a, b, out, np.int32(8)))


@pytest.mark.parametrize("count", [3, 5])
def test_wrong_argument_count_is_refused(vec_add, count):
    a, b, out = _arrays()
    args = (a, b, out, np.int32(8), np.int32(1))[:count]
    with pytest.raises(TypeError, match=rf"vec_add' takes 4 arguments \(const float\* a, .*int n\), got {count}"):
        vec_add(1, 8, args)


def test_args_must_be_a_tuple(vec_add):
    with pytest.raises(TypeError, match="args must be a tuple"):
        vec_add(1, 8, np.zeros(3, np.float32))


@pytest.mark.parametrize("grid,block,match", [
    (1, 1025, r"block\[0\] must be in 1\.\.1024"),
    (1, (32, 32, 2), r"has 2048 threads, more than 1024"),
    (1, (1, 1, 65), r"block\[2\] must be in 1\.\.64"),
    (0, 32, r"grid\[0\] must be in 1\.\."),
    ((1, 70000), 32, r"grid\[1\] must be in 1\.\.65535"),
    ((1, 1, 1, 1), 32, r"grid must be an int or a tuple of 1 to 3 ints"),
    (1.0, 32, r"grid must be an int or a tuple"),
    (1, (32, -1), r"block\[1\] must be in 1\.\.1024"),
])
def test_launch_shape_limits(vec_add, grid, block, match):
    a, b, out = _arrays()
    with pytest.raises((TypeError, ValueError), match=match):
        vec_add(grid, block, (a, b, out, np.int32(8)))


@pytest.mark.parametrize("shared_mem,match", [(-1, "non-negative int"), (1.5, "non-negative int"),
                                              (48 * 1024 + 1, "exceeds the 49152-byte limit")])
def test_shared_mem_argument_is_checked(vec_add, shared_mem, match):
    a, b, out = _arrays()
    with pytest.raises(ValueError, match=match):
        vec_add(1, 8, (a, b, out, np.int32(8)), shared_mem=shared_mem)


def test_unknown_and_non_extern_c_kernels(selftest_module):
    from gpunn.emu import RawModule
    with pytest.raises(AttributeError, match=r"no kernel named 'nope'.*found \['atomics'"):
        selftest_module.get_function("nope")
    mod = RawModule('__global__ void plain(float* x) { x[0] = 1.0f; }')
    with pytest.raises(AttributeError, match=r"'plain' is not declared extern \"C\""):
        mod.get_function("plain")


def test_name_expressions_are_refused():
    from gpunn.emu import RawModule
    with pytest.raises(ValueError, match="name_expressions"):
        RawModule('extern "C" __global__ void k() {}', name_expressions=["k<float>"])


def test_code_must_be_a_string():
    from gpunn.emu import RawModule
    with pytest.raises(TypeError, match="argument 'code' must be a str"):
        RawModule(b"extern")  # type: ignore[arg-type]
