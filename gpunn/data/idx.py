"""IDX files (the MNIST format): read and write, gzipped or raw, validated against the header.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the body in big-endian order. Every way a file can be wrong is checked before
the body is interpreted, and each error names the file and says what is wrong.

A file is never trusted for its size: the header is read first (a gzip file is decompressed as a
stream, never whole), checked for sanity and against `MAX_IDX_BYTES` and against what the file can
hold, and only then is exactly the declared body read. Memory is bounded by the declared size, so a
gzip bomb (a small file whose stream decompresses to gigabytes) is refused after one chunk.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

#: IDX dtype code -> big-endian NumPy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
#: The most body bytes a header may declare unless the caller passes a larger `max_bytes`. MNIST's
#: largest file holds 47 MB; the limit only stops a forged header from making us allocate (or
#: decompress) what no real IDX file holds.
MAX_IDX_BYTES = 4 << 30
#: The most dimensions a header may declare: NumPy 1.x cannot make an array of more.
MAX_IDX_NDIM = 32
#: Deflate expands at most 1032:1 (a 258-byte match in 2 bits), so a gzip file of n bytes holds at
#: most 1032 * n bytes of content: a header that declares more is refused before anything is read.
DEFLATE_MAX_RATIO = 1032
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # read (and decompressed) at a time: all the memory used beyond the declared body


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


class IdxFormatError(ValueError):
    """An IDX file is corrupt, truncated, not an IDX file at all, or declares more than it may."""


class ChecksumError(ValueError):
    """A file's content does not have the expected MD5."""


@dataclass(frozen=True)
class IdxHeader:
    """What a header declares, checked for sanity; when a caller sees it no body byte has been read."""
    dtype: np.dtype          # native-endian: the dtype of the array that will be returned
    shape: tuple[int, ...]

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def body_bytes(self) -> int:  # exact: Python ints do not overflow, as an int64 product of 255 dims would
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.body_bytes

    def describe(self) -> str:
        return f"shape {self.shape} of {self.dtype.newbyteorder('>').str[1:]}"


@dataclass
class _Source:
    """An open IDX stream and what is known of it before it is read."""
    stream: BinaryIO
    name: str | os.PathLike
    capacity: int   # the most content bytes the source can hold
    exact: bool     # capacity is the content's exact size (a raw file, bytes), not a bound (gzip)
    gz: bool
    hasher: _Hasher | None = None


@contextlib.contextmanager
def _open_file(path: str | os.PathLike, hasher: _Hasher | None = None) -> Iterator[_Source]:
    """The file's content as a stream, decompressed if it is gzip (detected by its magic bytes, not its name)."""
    path = Path(path)
    if not path.is_file():  # also refuses a device or a FIFO, which could be read without end
        raise FileNotFoundError(f"read_idx: no such file: {path}")
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        gz = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if not gz:
            yield _Source(f, path, size, True, False, hasher)
            return
        with gzip.GzipFile(fileobj=f, mode="rb") as stream:
            yield _Source(stream, path, size * DEFLATE_MAX_RATIO, False, True, hasher)


def _corrupt_gzip(src: _Source, exc: Exception) -> IdxFormatError:
    return IdxFormatError(f"{src.name}: the gzip stream is corrupt or truncated ({exc})")


@contextlib.contextmanager
def _stream_errors(src: _Source) -> Iterator[None]:
    """A gzip stream's decoding errors as IdxFormatError; a raw file's OSError stays what it is."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as exc:
        if not src.gz:
            raise
        raise _corrupt_gzip(src, exc) from exc


def _read(src: _Source, n: int) -> bytes:
    """At most n bytes (fewer only at the end of the content)."""
    with _stream_errors(src):
        data = src.stream.read(n)
    if src.hasher is not None:
        src.hasher.update(data)
    return data


def _readinto(src: _Source, view: memoryview) -> int:
    with _stream_errors(src):
        n = src.stream.readinto(view)
    if src.hasher is not None:
        src.hasher.update(view[:n])
    return n


def _read_header(src: _Source, max_bytes: int) -> IdxHeader:
    name = src.name
    head = _read(src, 4)
    if len(head) < 4:
        raise IdxFormatError(f"{name}: too short for an IDX header ({len(head)} bytes, need at least 4)")
    if head[0] != 0 or head[1] != 0:
        raise IdxFormatError(f"{name}: bad magic number 0x{head.hex()}: an IDX file starts with two zero bytes "
                             "(e.g. 0x00000803 for images, 0x00000801 for labels)")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IdxFormatError(f"{name}: bad magic number 0x{head.hex()}: unknown dtype code 0x{code:02X} "
                             f"(expected one of {known})")
    if ndim < 1:
        raise IdxFormatError(f"{name}: bad magic number 0x{head.hex()}: the header declares 0 dimensions")
    if ndim > MAX_IDX_NDIM:
        raise IdxFormatError(f"{name}: bad magic number 0x{head.hex()}: the header declares {ndim} dimensions, "
                             f"more than the {MAX_IDX_NDIM} a NumPy array can have")
    raw_dims = _read(src, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IdxFormatError(f"{name}: truncated header: {ndim} dimensions need {4 + 4 * ndim} header bytes, "
                             f"the file has {4 + len(raw_dims)}")
    header = IdxHeader(IDX_DTYPES[code].newbyteorder("="), struct.unpack(f">{ndim}I", raw_dims))
    _check_declared_size(src, header, max_bytes)
    return header


def _check_declared_size(src: _Source, header: IdxHeader, max_bytes: int) -> None:
    """Refuse a body larger than the limit or than the file can hold, before a byte of it is allocated."""
    name, what = src.name, header.describe()
    if header.body_bytes > max_bytes:
        raise IdxFormatError(f"{name}: the header declares {what} = {header.body_bytes} bytes, more than the "
                             f"limit of {max_bytes} bytes (max_bytes); the header is corrupt or forged - pass a "
                             "larger max_bytes to read such a file on purpose")
    # NumPy refuses even an empty array whose other dimensions multiply past its address space
    span = math.prod(max(d, 1) for d in header.shape) * header.dtype.itemsize
    if span > max_bytes:
        raise IdxFormatError(f"{name}: the header declares {what}: empty, but its nonzero dimensions multiply to "
                             f"{span} bytes, more than the limit of {max_bytes} bytes (max_bytes); the header is "
                             "corrupt or forged")
    if header.total_bytes <= src.capacity:
        return
    if src.exact:
        raise IdxFormatError(f"{name}: truncated body: the header declares {what} ({header.total_bytes} bytes in "
                             f"all), the file has {src.capacity} bytes")
    raise IdxFormatError(f"{name}: truncated body: the header declares {what} ({header.total_bytes} bytes in all), "
                         f"more than a gzip file of {src.capacity // DEFLATE_MAX_RATIO} bytes can hold (deflate "
                         f"expands at most {DEFLATE_MAX_RATIO}:1)")


def _read_body(src: _Source, header: IdxHeader) -> np.ndarray:
    """Exactly the declared body, into one buffer of its size, as a native-endian writable array."""
    body = np.empty(header.body_bytes, dtype=np.uint8)
    got = 0
    with memoryview(body) as view:
        while got < header.body_bytes:  # in chunks, so that gzip never decompresses more than one ahead
            n = _readinto(src, view[got:got + _CHUNK])
            if n == 0:
                raise IdxFormatError(f"{src.name}: truncated body: the header declares {header.describe()} "
                                     f"({header.total_bytes} bytes in all), the file has "
                                     f"{header.header_bytes + got} bytes" + (" once decompressed" if src.gz else ""))
            got += n
    stored = header.dtype.newbyteorder(">")
    arr = body.view(stored).reshape(header.shape)
    if not stored.isnative:  # swap in place: a second copy would double the peak memory
        arr = arr.byteswap(inplace=True).view(header.dtype)
    return arr


def _check_end(src: _Source, header: IdxHeader) -> None:
    """Refuse content past the declared body; reading a gzip stream to its end also checks its CRC."""
    extra = _read(src, _CHUNK)  # at most one chunk: the rest of a bomb is never decompressed
    if not extra:
        return
    if src.exact:
        count = str(src.capacity - header.total_bytes)
    else:
        count = str(len(extra)) if len(extra) < _CHUNK else f"at least {len(extra)}"
    raise IdxFormatError(f"{src.name}: wrong count: the header declares shape {header.shape} "
                         f"({header.total_bytes} bytes in all), but the file has {count} extra bytes")


def _read_source(src: _Source, max_bytes: int, check_header: Callable[[IdxHeader], None] | None) -> np.ndarray:
    header = _read_header(src, max_bytes)
    if check_header is not None:
        check_header(header)
    arr = _read_body(src, header)
    _check_end(src, header)
    return arr


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _compare_md5(got: str, expected: str, name: str | os.PathLike) -> None:
    if got != expected.lower():
        raise ChecksumError(f"{name}: MD5 mismatch of the uncompressed content: expected {expected}, got {got}; "
                            "the file is corrupt or is not the file it is named after - download it again")


def verify_md5(data: bytes, expected: str, name: str | os.PathLike) -> None:
    """Raise ChecksumError naming the file when md5(data) != expected."""
    _compare_md5(md5_hex(data), expected, name)


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_IDX_BYTES + 4 + 4 * MAX_IDX_NDIM) -> bytes:
    """The file's content, decompressed if it is gzip; refused (IdxFormatError) past `max_bytes`.

    Decompressed as a stream, so memory is bounded by `max_bytes`, never by what a gzip bomb expands to.
    `read_idx` does better: it reads only what the header declares.
    """
    chunks, total = [], 0
    with _open_file(path) as src:
        while chunk := _read(src, _CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise IdxFormatError(f"{src.name}: the content is more than {max_bytes} bytes (max_bytes)"
                                     + (" once decompressed" if src.gz else ""))
            chunks.append(chunk)
    return b"".join(chunks)


def parse_idx(data: bytes, name: str | os.PathLike = "<bytes>", *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse the (already decompressed) bytes of an IDX file into a native-endian array, with read_idx's checks."""
    with io.BytesIO(data) as stream:
        return _read_source(_Source(stream, name, len(data), True, False), max_bytes, None)


def read_idx_md5(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES,
                 check_header: Callable[[IdxHeader], None] | None = None) -> tuple[np.ndarray, str]:
    """`read_idx`, also returning the MD5 of the uncompressed content (hashed as it streams by)."""
    hasher = hashlib.md5(usedforsecurity=False)
    with _open_file(path, hasher) as src:
        arr = _read_source(src, max_bytes, check_header)
    return arr, hasher.hexdigest()


def read_idx(path: str | os.PathLike, md5: str | None = None, *, max_bytes: int = MAX_IDX_BYTES,
             check_header: Callable[[IdxHeader], None] | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or raw, holding at most `max_bytes` of body.

    `check_header(header)` may raise to refuse the file on what its header declares, before the body
    is read. With `md5`, the *uncompressed* content is verified once read, before the array is returned.
    """
    if md5 is None:
        with _open_file(path) as src:
            return _read_source(src, max_bytes, check_header)
    arr, got = read_idx_md5(path, max_bytes=max_bytes, check_header=check_header)
    _compare_md5(got, md5, path)
    return arr


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as IDX (gzipped when `compress`, or when None and the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): c for c, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"write_idx: argument 'array' has dtype {array.dtype}; IDX holds only "
                        f"{sorted(str(d) for d in codes)}")
    if array.ndim < 1 or array.ndim > MAX_IDX_NDIM:  # the reader refuses more: write nothing it cannot read
        raise ValueError(f"write_idx: argument 'array' must have 1 to {MAX_IDX_NDIM} dimensions, got {array.ndim}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(header + body, mtime=0) if compress else header + body)
    return path
