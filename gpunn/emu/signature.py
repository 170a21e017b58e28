"""Find the `__global__` kernels in CUDA source and parse their parameter lists.

Only what the emulator needs: each parameter is a pointer (to const or not) or a scalar of one of
the plain C types below, mapped to the exact NumPy dtype the caller must pass.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import ml_dtypes
import numpy as np

# C spelling (qualifiers removed, words joined by one space) -> NumPy dtype. `long` is 64-bit on
# the LP64 hosts and in CUDA device code alike.
C_TYPES: dict[str, np.dtype | None] = {}
for _names, _dt in [
    (("float",), np.float32),
    (("double",), np.float64),
    (("int", "signed", "signed int", "int32_t"), np.int32),
    (("unsigned", "unsigned int", "uint32_t"), np.uint32),
    (("long long", "long long int", "signed long long", "signed long long int", "long", "long int",
      "int64_t", "ptrdiff_t", "ssize_t"), np.int64),
    (("unsigned long long", "unsigned long long int", "unsigned long", "unsigned long int", "uint64_t",
      "size_t"), np.uint64),
    (("short", "short int", "int16_t"), np.int16),
    (("unsigned short", "unsigned short int", "uint16_t"), np.uint16),
    (("char", "signed char", "int8_t"), np.int8),
    (("unsigned char", "uint8_t"), np.uint8),
    (("bool",), np.bool_),
    # cuda_fp16.h / cuda_bf16.h storage types (2 bytes, passed as their bit patterns)
    (("__half", "half"), np.float16),
    (("__nv_bfloat16", "nv_bfloat16"), ml_dtypes.bfloat16),
]:
    for _n in _names:
        C_TYPES[_n] = np.dtype(_dt)
C_TYPES["void"] = None  # only as a pointer: any dtype

_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}
_TYPE_WORDS = {w for name in C_TYPES for w in name.split()}

# String literals are matched first so that comment markers inside them are left alone.
_COMMENT_OR_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|//[^\n]*|/\*.*?\*/', re.S)


def mask_comments(code: str) -> str:
    """The source with every comment replaced by spaces (newlines kept), so offsets still match."""
    def blank(m: re.Match) -> str:
        s = m.group(0)
        if s[0] in "\"'":
            return s
        return re.sub(r"[^\n]", " ", s)
    return _COMMENT_OR_STRING.sub(blank, code)


@dataclass(frozen=True)
class Param:
    name: str
    ctype: str          # the C spelling, for messages, e.g. "const float*"
    dtype: np.dtype | None  # None only for void*
    pointer: bool
    const: bool         # pointer to const: the array may be read-only


@dataclass(frozen=True)
class KernelSig:
    name: str
    params: tuple[Param, ...]
    extern_c: bool
    line: int


# `[extern "C"] <qualifiers and void in any order> name (params)`; the qualifier run must include
# __global__ and void. __launch_bounds__(...) may sit anywhere in it.
_KERNEL = re.compile(
    r'(?P<ext>extern\s+"C"\s+)?(?P<quals>(?:(?:__\w+__(?:\s*\([^()]*\))?|void|static|inline)\s+)+)'
    r'(?P<name>[A-Za-z_]\w*)\s*\((?P<params>[^()]*)\)\s*\{')
_EXTERN_C_BLOCK = re.compile(r'extern\s+"C"\s*\{')


def _extern_c_ranges(masked: str) -> list[tuple[int, int]]:
    """Spans of `extern "C" { ... }` blocks (brace-matched)."""
    out = []
    for m in _EXTERN_C_BLOCK.finditer(masked):
        depth, i = 0, m.end() - 1
        while i < len(masked):
            if masked[i] == "{":
                depth += 1
            elif masked[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out.append((m.end(), i))
    return out


def parse_param(text: str, index: int, kernel: str) -> Param:
    raw = " ".join(text.split())
    if "=" in raw:
        raise ValueError(f"kernel '{kernel}': parameter {index} ({raw!r}) has a default value, which kernels cannot have")
    if "&" in raw:
        raise ValueError(f"kernel '{kernel}': parameter {index} ({raw!r}) is a reference; kernels take scalars and pointers only")
    array = re.search(r"\[\s*\]\s*$", raw) is not None
    raw_noarr = re.sub(r"\[\s*\]\s*$", "", raw)
    tokens = re.findall(r"[A-Za-z_]\w*|\*", raw_noarr)
    stars = tokens.count("*") + (1 if array else 0)
    if stars > 1:
        raise ValueError(f"kernel '{kernel}': parameter {index} ({raw!r}) is a pointer to pointer; not supported")
    first_star = tokens.index("*") if "*" in tokens else len(tokens)
    const = stars == 1 and "const" in tokens[:first_star]
    words = [t for t in tokens if t != "*" and t not in _QUALIFIERS]
    name = f"arg{index}"
    if words and (words[-1] not in _TYPE_WORDS or len(words) > 1 and " ".join(words) not in C_TYPES):
        name = words.pop()
    base = " ".join(words)
    if base not in C_TYPES:
        raise ValueError(f"kernel '{kernel}': parameter {index} ({raw!r}) has type {base!r}, which the emulator "
                         f"does not support; use one of {sorted(C_TYPES)}")
    dtype = C_TYPES[base]
    if dtype is None and stars == 0:
        raise ValueError(f"kernel '{kernel}': parameter {index} ({raw!r}) is void")
    ctype = ("const " if const else "") + base + ("*" if stars else "")
    return Param(name=name, ctype=ctype, dtype=dtype, pointer=stars == 1, const=const)


def find_kernels(code: str) -> dict[str, KernelSig]:
    """Every `__global__ void` kernel defined in `code`, by name."""
    masked = mask_comments(code)
    blocks = _extern_c_ranges(masked)
    kernels: dict[str, KernelSig] = {}
    for m in _KERNEL.finditer(masked):
        quals = m.group("quals").split()
        if "__global__" not in quals or "void" not in quals:
            continue
        name = m.group("name")
        extern_c = bool(m.group("ext")) or any(a <= m.start() < b for a, b in blocks)
        text = m.group("params").strip()
        parts = [] if text in ("", "void") else text.split(",")
        params = tuple(parse_param(p, i, name) for i, p in enumerate(parts))
        line = code.count("\n", 0, m.start("name")) + 1
        if name in kernels:
            raise ValueError(f"kernel '{name}' is defined twice (line {kernels[name].line} and line {line}); "
                             "overloaded kernels are not supported")
        kernels[name] = KernelSig(name=name, params=params, extern_c=extern_c, line=line)
    return kernels
