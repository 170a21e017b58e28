"""IDX files (the MNIST format): read and write, gzipped or raw, validated against the header.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the body in big-endian order. Every way a file can be wrong is checked before
the body is interpreted, and each error names the file and says what is wrong.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

#: IDX dtype code -> big-endian NumPy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file is corrupt, truncated or not an IDX file at all."""


class ChecksumError(ValueError):
    """A file's content does not have the expected MD5."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's content, decompressed if it is gzip (detected by its magic bytes, not its name)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_idx: no such file: {path}")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{path}: the gzip stream is corrupt or truncated ({exc})") from exc


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verify_md5(data: bytes, expected: str, name: str | os.PathLike) -> None:
    """Raise ChecksumError naming the file when md5(data) != expected."""
    got = md5_hex(data)
    if got != expected.lower():
        raise ChecksumError(f"{name}: MD5 mismatch of the uncompressed content: expected {expected}, got {got}; "
                            "the file is corrupt or is not the file it is named after - download it again")


def parse_idx(data: bytes, name: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parse the (already decompressed) bytes of an IDX file into a native-endian array."""
    if len(data) < 4:
        raise IdxFormatError(f"{name}: too short for an IDX header ({len(data)} bytes, need at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(f"{name}: bad magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes "
                             "(e.g. 0x00000803 for images, 0x00000801 for labels)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IdxFormatError(f"{name}: bad magic number 0x{data[:4].hex()}: unknown dtype code 0x{code:02X} "
                             f"(expected one of {known})")
    if ndim < 1:
        raise IdxFormatError(f"{name}: bad magic number 0x{data[:4].hex()}: the header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{name}: truncated header: {ndim} dimensions need {header} header bytes, "
                             f"the file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise IdxFormatError(f"{name}: truncated body: the header declares shape {dims} of {dtype.str[1:]} "
                             f"({expected} bytes in all), the file has {len(data)} bytes")
    if len(data) > expected:
        raise IdxFormatError(f"{name}: wrong count: the header declares shape {dims} ({expected} bytes in all), "
                             f"but the file has {len(data) - expected} extra bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def read_idx(path: str | os.PathLike, md5: str | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or raw. With `md5`, the *uncompressed* content is verified first."""
    data = read_bytes(path)
    if md5 is not None:
        verify_md5(data, md5, path)
    return parse_idx(data, path)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as IDX (gzipped when `compress`, or when None and the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): c for c, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"write_idx: argument 'array' has dtype {array.dtype}; IDX holds only "
                        f"{sorted(str(d) for d in codes)}")
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"write_idx: argument 'array' must have 1 to 255 dimensions, got {array.ndim}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(header + body, mtime=0) if compress else header + body)
    return path
