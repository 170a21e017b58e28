"""The safetensors file format, read and written with NumPy alone, plus atomic file writes.

Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header length
N, then N bytes of UTF-8 JSON, then the raw tensor bytes. The JSON maps each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte buffer after the
header) and may hold "__metadata__", a str -> str map. Tensors are C-ordered, little-endian.

Why our own reader: loading must never run code (no pickle) and every defect (truncation,
overlapping or out-of-range offsets, a foreign file) must give one clear error before anything
is used. The files interoperate with the `safetensors` package (tested when it is installed).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {(v.kind, v.itemsize): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit: a larger header means a foreign file


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file (truncated, corrupt, or of another format)."""


def _code(dtype: np.dtype, name: str) -> str:
    key = (np.dtype(dtype).kind, np.dtype(dtype).itemsize)
    if key not in _CODES:
        raise TypeError(f"write_safetensors: tensor {name!r} has dtype {dtype}, which safetensors cannot store; "
                        f"expected one of float64/32/16, (u)int8-64 or bool")
    return _CODES[key]


def _digest(header: dict[str, Any], data: bytes | memoryview, checksum_key: str) -> str:
    """SHA-256 of the whole header (every metadata entry but the checksum itself) and the data.

    The header is hashed in a canonical JSON form, so that a flipped digit anywhere (a metadata
    value, a tensor's shape or offsets) is caught, not only flipped bits in the tensor bytes."""
    meta = {k: v for k, v in header.get("__metadata__", {}).items() if k != checksum_key}
    canonical = {**{k: v for k, v in header.items() if k != "__metadata__"}, "__metadata__": meta}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    digest.update(data)
    return digest.hexdigest()


def encode(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None,
           checksum_key: str | None = None) -> bytes:
    """The bytes of a safetensors file holding `tensors` (host arrays) and `metadata`.

    With `checksum_key`, the SHA-256 of the header and the tensor bytes is stored under that
    metadata key, so that `decode` can detect any corruption (the format itself has no checksum)."""
    header: dict[str, Any] = {}
    metadata = dict(metadata or {})
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"write_safetensors: argument 'metadata' must map str to str, got {k!r}: "
                                f"{type(v).__name__}")
        header["__metadata__"] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"write_safetensors: tensor name {name!r} is not allowed")
        arr = np.asarray(tensors[name])
        code = _code(arr.dtype, name)
        raw = np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
        header[name] = {"dtype": code, "shape": [int(s) for s in arr.shape], "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    if checksum_key is not None:
        header.setdefault("__metadata__", {})[checksum_key] = _digest(header, data, checksum_key)
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    head += b" " * (-len(head) % 8)  # pad so the data starts 8-byte aligned, as the reference writer does
    return len(head).to_bytes(8, "little") + head + data


def decode(blob: bytes, source: str = "<bytes>", checksum_key: str | None = None
           ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) from safetensors bytes; raises SafetensorsError naming what is wrong.

    With `checksum_key`, the metadata must hold that SHA-256 of the header and data, and they must
    match it; a file without it is refused (pass checksum_key=None to read a foreign file)."""
    size = len(blob)
    if size < 8:
        raise SafetensorsError(f"{source}: not a safetensors file or truncated: {size} bytes, fewer than the "
                               "8-byte header length")
    n = int.from_bytes(blob[:8], "little")
    if n > _MAX_HEADER:
        raise SafetensorsError(f"{source}: not a safetensors file: header length {n} is implausible")
    if 8 + n > size:
        raise SafetensorsError(f"{source}: truncated: the header needs {n} bytes but only {size - 8} follow")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: also ints of 4,300+ digits
        raise SafetensorsError(f"{source}: corrupt or foreign file: the header is not valid JSON "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{source}: corrupt header: expected a JSON object, got {type(header).__name__}")
    header = dict(header)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise SafetensorsError(f"{source}: corrupt header: '__metadata__' must map str to str")
    data = memoryview(blob)[8 + n:]
    spans: list[tuple[int, int, str]] = []
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = tuple(info["shape"])
            begin, end = info["data_offsets"]
            ok = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in (*shape, begin, end))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise SafetensorsError(f"{source}: corrupt header entry for tensor {name[:80]!r}: {str(info)[:200]}")
        expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge shape cannot wrap around
        if end - begin != expected or begin > end:
            raise SafetensorsError(f"{source}: corrupt entry for tensor {name[:80]!r}: offsets {begin}..{end} do "
                                   f"not hold shape {str(shape)[:200]} of {info['dtype']}")
        spans.append((begin, end, name))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            raise SafetensorsError(f"{source}: corrupt file: tensor {name!r} starts at byte {begin}, expected "
                                   f"{cursor} (overlap or gap)")
        cursor = end
    if cursor > len(data):
        raise SafetensorsError(f"{source}: truncated: the tensors need {cursor} data bytes but only {len(data)} "
                               "are present")
    if cursor != len(data):
        raise SafetensorsError(f"{source}: corrupt file: {len(data) - cursor} unexpected bytes after the tensors")
    if checksum_key is not None:
        if checksum_key not in metadata:
            raise SafetensorsError(f"{source}: has no {checksum_key!r} checksum, so its integrity cannot be "
                                   "verified (a file written by another safetensors tool, or an older gpunn); "
                                   "load it with verify=False if you trust it")
        if _digest({**header, "__metadata__": metadata}, data[:cursor], checksum_key) != metadata[checksum_key]:
            raise SafetensorsError(f"{source}: corrupt or tampered file: its header or tensor data does not match "
                                   "its SHA-256 checksum")
    for begin, end, name in spans:
        info = header[name]
        arr = np.frombuffer(data[begin:end], dtype=_DTYPES[info["dtype"]]).reshape(tuple(info["shape"]))
        tensors[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)  # native order, writable, aligned
    return tensors, dict(metadata)


def read_safetensors(path: str | os.PathLike, checksum_key: str | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) from a safetensors file; never runs code from the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"read_safetensors: argument 'path' {str(p)!r} is not an existing file")
    with open(p, "rb") as fh:
        return decode(fh.read(), str(p), checksum_key)


_TMP_SUFFIX = ".tmp"
_STALE_UNTAGGED_S = 3600  # a temporary without a pid tag (an older gpunn's) is stale after an hour


def _tmp_prefix(name: str) -> str:
    return f".{name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: alive, or at least not ours to judge
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove temporaries that killed saves of `path` left beside it; returns the removed names.

    A temporary is named .<name>.<host>.<pid>.<random>.tmp; it is stale when that process, on this
    host, is gone. Temporaries of live processes (a concurrent save) and of other hosts (a shared
    folder) are left alone."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    prefix, host, now = _tmp_prefix(p.name), socket.gethostname(), time.time()
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(_TMP_SUFFIX)) or not entry.is_file(
                follow_symlinks=False):
            continue
        parts = entry.name[len(prefix):-len(_TMP_SUFFIX)].rsplit(".", 2)  # host, pid, mkstemp's random part
        try:
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
                stale = int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > _STALE_UNTAGGED_S
            if stale:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _target_mode(p: Path) -> int:
    """An existing file keeps its mode; a new one gets what open() would give it under the umask."""
    try:
        return p.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn mix; the
    temporaries of earlier killed writes to the same path are removed first."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"atomic_write: the folder {str(parent)!r} of argument 'path' does not exist")
    clean_stale_temporaries(p)
    mode = _target_mode(p)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f"{_tmp_prefix(p.name)}{socket.gethostname()}.{os.getpid()}.",
                               suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not every platform lets a folder be opened
        dir_fd = os.open(parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None, checksum_key: str | None = None) -> None:
    """Write `tensors` and `metadata` to `path` atomically."""
    atomic_write(path, encode(tensors, metadata, checksum_key))
