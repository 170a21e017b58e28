"""The float32/float64 kernels compile without the CUDA half headers: a family's 16-bit variants
(between GPUNN_HALF_BEGIN / GPUNN_HALF_END) go to a second module, built only when one is launched."""
from __future__ import annotations

import re

from gpunn.backend.cuda.source import KERNEL_FAMILIES, KernelCache, read_kernel_source


def test_the_float_modules_include_no_header_and_define_no_16_bit_kernel():
    for family in KERNEL_FAMILIES:
        full = read_kernel_source(family)
        if "GPUNN_HALF_BEGIN" not in full:
            continue
        text = read_kernel_source(family, half=False)
        assert "#include" not in text, family
        assert not re.search(r'extern "C" __global__ void \w+_(f16|bf16)\(', text), family
        assert re.search(r'extern "C" __global__ void \w+_f32\(', text), family
        assert len(text.splitlines()) == len(full.splitlines())  # line numbers kept for compiler messages


def test_a_16_bit_kernel_is_loaded_from_its_own_module():
    seen = []

    class Module:
        def __init__(self, code):
            seen.append("cuda_fp16.h" in code)

        def get_function(self, name):
            return name

    cache = KernelCache(Module)
    assert cache.function("im2col", "im2col_f32") == "im2col_f32"
    assert cache.function("im2col", "col2im_f64") == "col2im_f64"
    assert cache.function("im2col", "im2col_f16") == "im2col_f16"
    assert cache.function("im2col", "col2im_bf16") == "col2im_bf16"
    assert seen == [False, True]  # one module without the headers, one with them
    assert cache.compiled_families() == ["im2col"]
