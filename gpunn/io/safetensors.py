"""Safetensors files through the `safetensors` package, plus gpunn's checksum and atomic write.

Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header length
N, then N bytes of UTF-8 JSON, then the raw tensor bytes. The JSON maps each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte buffer after the
header) and may hold "__metadata__", a str -> str map. Tensors are C-ordered, little-endian.

Who does what:
- the `safetensors` package (its Rust core, through the NumPy API) encodes the files and, on
  reading, validates the whole structure (header length and JSON, dtypes, shapes, offsets that
  neither overlap nor leave gaps, a data section of exactly the declared size) before any tensor is
  decoded, and decodes the tensors. Its own well-tested parser is the one that meets a hostile
  file, and what we write is a plain safetensors file that any other tool reads;
- this module translates the package's `SafetensorError` into our SafetensorsError, naming the
  file and saying in plain words what is wrong; refuses dtypes gpunn does not compute in;
  and adds what the format lacks: an optional SHA-256 checksum stored in the metadata (of the
  canonical header JSON minus the checksum entry, and the tensor bytes, so that a flipped digit in
  a metadata value, a shape or an offset is caught, not only flipped bits in the data) and the
  atomic write of gpunn/io/atomic.py. Files written by gpunn's earlier, hand-written codec are
  the same format with the same checksum, and are read and verified by the same code.

Reading the file once into memory (not memory-mapping it) means the bytes that are validated, hashed
and decoded are the same bytes, whatever happens to the file meanwhile. Nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gpunn.io.atomic import atomic_write

#: the dtypes gpunn reads and writes, by their safetensors codes (the package knows more, e.g. BF16)
_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {(v.kind, v.itemsize): k for k, v in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file (truncated, corrupt, or of another format)."""


def _library() -> Any:
    """The `safetensors` package (a core dependency), imported on first use."""
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401
    except ImportError as exc:
        raise ImportError("gpunn reads and writes checkpoints with the 'safetensors' package, which is not "
                          "installed: pip install 'safetensors>=0.4.4'") from exc
    return safetensors


def _code(dtype: np.dtype, name: str) -> str:
    key = (np.dtype(dtype).kind, np.dtype(dtype).itemsize)
    if key not in _CODES:
        raise TypeError(f"write_safetensors: tensor {name!r} has dtype {dtype}, which safetensors cannot store; "
                        f"expected one of float64/32/16, (u)int8-64 or bool")
    return _CODES[key]


def _digest(header: dict[str, Any], data: bytes | memoryview, checksum_key: str) -> str:
    """SHA-256 of the whole header (every metadata entry but the checksum itself) and the data.

    The header is hashed in a canonical JSON form, so that a flipped digit anywhere (a metadata
    value, a tensor's shape or offsets) is caught, not only flipped bits in the tensor bytes. The
    form does not depend on how the header was laid out (key order, spacing, padding), so files of
    gpunn's earlier codec and of the `safetensors` package verify alike."""
    meta = {k: v for k, v in header.get("__metadata__", {}).items() if k != checksum_key}
    canonical = {**{k: v for k, v in header.items() if k != "__metadata__"}, "__metadata__": meta}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    digest.update(data)
    return digest.hexdigest()


# -- the header, read by us only to hash it and to word errors ---------------------------------------
def _header_length(blob: bytes) -> int:
    return int.from_bytes(blob[:8], "little")


def _parse_header(blob: bytes) -> Any:
    """The header JSON as Python reads it; raises ValueError/RecursionError/UnicodeDecodeError."""
    return json.loads(blob[8:8 + _header_length(blob)].decode("utf-8"))


def _header_or_none(blob: bytes) -> dict[str, Any] | None:
    """Best effort, for wording an error about a file the package refused: never raises."""
    try:
        header = _parse_header(blob)
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError):
        return None
    return header if isinstance(header, dict) else None


def _entries(header: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in header.items() if k != "__metadata__"]


def _data_end(header: dict[str, Any] | None) -> int | None:
    """The number of data bytes the header's tensors need, or None when it cannot say."""
    try:
        return max((int(info["data_offsets"][1]) for _, info in _entries(header or {})), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _bad_entry(header: dict[str, Any] | None) -> str | None:
    """Words for the first tensor entry whose offsets do not hold its shape and dtype, if one is found."""
    for name, info in _entries(header or {}):
        try:
            dtype, shape = _DTYPES[info["dtype"]], tuple(info["shape"])
            begin, end = info["data_offsets"]
            if end - begin != math.prod(shape) * dtype.itemsize:  # Python ints: a huge shape cannot wrap around
                return (f"tensor {name[:80]!r}: offsets {begin}..{end} do not hold shape {str(shape)[:200]} of "
                        f"{info['dtype']}")
        except (KeyError, TypeError, ValueError, IndexError):
            continue
    return None


def _key(detail: str) -> str:
    """The kind of a package error in one comparable form. The package words it "Error while
    deserializing: header too small" (0.5 and later) or "Error while deserializing header:
    HeaderTooSmall" (0.4, the Rust variant's name); both read "headertoosmall..."."""
    kind = re.match(r"\s*error while deserializing(?: header)?\s*:\s*(.*)", detail, re.IGNORECASE | re.DOTALL)
    return re.sub(r"[^a-z0-9]", "", (kind.group(1) if kind else detail).lower())


def _refusal(exc: BaseException, blob: bytes, source: str) -> SafetensorsError:
    """Our SafetensorsError for a file the `safetensors` package refused, saying what is wrong."""
    detail = str(exc)[:300]
    key, size = _key(detail), len(blob)
    n = _header_length(blob) if size >= 8 else 0
    if key.startswith("headertoosmall"):
        what = f"not a safetensors file or truncated: {size} bytes, fewer than the 8-byte header length"
    elif key.startswith("headertoolarge"):
        what = f"not a safetensors file: header length {n} is implausible (the format allows at most 100 MB)"
    elif key.startswith("invalidheaderlength"):
        what = f"truncated: the header needs {n} bytes but only {size - 8} follow"
    elif key.startswith("invalidheaderstart"):
        what = "corrupt or foreign file: the header is not valid JSON for safetensors (it must be a JSON object)"
    elif key.startswith(("invalidjson", "invalidheaderdeserialization")):
        what = "corrupt or foreign file: the header is not valid JSON, or not a safetensors header"
    elif key.startswith("invalidutf8") or re.fullmatch(r"invalidheader(utf8.*)?", key):
        what = "corrupt or foreign file: the header is not valid JSON (it is not even UTF-8 text)"
    elif key.startswith(("incompletemetadata", "metadataincompletebuffer")):
        need, have = _data_end(_header_or_none(blob)), size - 8 - n
        if need is not None and need > have:
            what = f"truncated: the tensors need {need} data bytes but only {have} are present"
        elif need is not None and need < have:
            what = f"corrupt file: {have - need} unexpected bytes after the tensors"
        else:
            what = "truncated, or unexpected bytes after the tensors: the data does not match the header"
    elif key.startswith("invalidoffset"):
        named = re.search(r"[`\"']([^`\"']{0,200})[`\"']", detail)
        tensor = repr(named.group(1)) if named else "a tensor"
        what = f"corrupt file: tensor {tensor} does not start where the previous one ends (overlap or gap)"
    elif key.startswith(("overflow", "validationoverflow", "invalidshape", "tensorinvalidinfo")):
        entry = _bad_entry(_header_or_none(blob))
        what = f"corrupt entry for {entry}" if entry else \
            "corrupt entry for a tensor: its offsets do not hold the shape and dtype it declares"
    else:
        what = "not a valid safetensors file"
    return SafetensorsError(f"{source}: {what} (safetensors: {detail})")


# -- reading --------------------------------------------------------------------------------------------
def _decode(blob: bytes, source: str, checksum_key: str | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) from the bytes of a safetensors file; raises SafetensorsError naming `source`."""
    library = _library()
    failure: BaseException | None = None
    try:
        loaded = library.numpy.load(blob)  # the package validates the structure, then decodes
    except library.SafetensorError as exc:
        raise _refusal(exc, blob, source) from None
    except (KeyError, TypeError, ValueError) as exc:  # a valid file holding a dtype NumPy has no type for (BF16)
        loaded, failure = {}, exc
    except BaseException as exc:  # a panic in the Rust core: pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise SafetensorsError(f"{source}: not a valid safetensors file (the safetensors package failed on it: "
                               f"{str(exc)[:200]})") from None
    try:  # the package accepted this header; we read it too, for the metadata and the checksum
        header = _parse_header(blob)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SafetensorsError(f"{source}: corrupt or foreign file: the header is not valid JSON "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{source}: corrupt header: expected a JSON object, got {type(header).__name__}")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise SafetensorsError(f"{source}: corrupt header: '__metadata__' must map str to str")
    for name, info in _entries(header):
        code = info.get("dtype") if isinstance(info, dict) else None
        if code not in _DTYPES:
            raise SafetensorsError(f"{source}: tensor {name[:80]!r} has dtype {str(code)[:20]}, which gpunn does not "
                                   f"read; it reads {', '.join(_DTYPES)}")
    if failure is not None:
        raise SafetensorsError(f"{source}: the safetensors package could not decode it "
                               f"({type(failure).__name__}: {str(failure)[:200]})")
    if checksum_key is not None:
        if checksum_key not in metadata:
            raise SafetensorsError(f"{source}: has no {checksum_key!r} checksum, so its integrity cannot be "
                                   "verified (a file written by another safetensors tool, or an older gpunn); "
                                   "load it with verify=False if you trust it")
        data = memoryview(blob)[8 + _header_length(blob):]
        if _digest({**header, "__metadata__": metadata}, data, checksum_key) != metadata[checksum_key]:
            raise SafetensorsError(f"{source}: corrupt or tampered file: its header or tensor data does not match "
                                   "its SHA-256 checksum")
    entries = dict(_entries(header))
    if set(loaded) != set(entries):
        raise SafetensorsError(f"{source}: corrupt header: the safetensors package and JSON disagree on its tensors "
                               f"({sorted(set(loaded) ^ set(entries))[:5]})")
    tensors: dict[str, np.ndarray] = {}
    for name in sorted(loaded):
        arr, info = loaded.pop(name), entries[name]  # pop: the package's copy goes as ours is made
        if (arr.dtype.kind, arr.dtype.itemsize) != (_DTYPES[info["dtype"]].kind, _DTYPES[info["dtype"]].itemsize) \
                or list(arr.shape) != list(info["shape"]):
            raise SafetensorsError(f"{source}: corrupt header: tensor {name[:80]!r} decodes as {arr.dtype} "
                                   f"{arr.shape}, but the header says {info['dtype']} {str(info['shape'])[:100]}")
        if not (arr.flags.writeable and arr.flags.aligned and arr.flags.c_contiguous and arr.dtype.isnative):
            arr = np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C", copy=True)  # ours: writable, aligned
        tensors[name] = arr
    return tensors, dict(metadata)


def read_safetensors(path: str | os.PathLike, checksum_key: str | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) from a safetensors file; never runs code from the file.

    The `safetensors` package validates the file's structure before anything is decoded. With
    `checksum_key`, the metadata must hold that SHA-256 of the header and data, and they must match
    it; a file without it is refused (pass checksum_key=None to read a foreign file). Tensors are
    writable NumPy arrays, by name; metadata is the file's str -> str map (checksum included)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_safetensors: argument 'path' must be a str or os.PathLike, got {type(path).__name__}")
    if checksum_key is not None and not isinstance(checksum_key, str):
        raise TypeError(f"read_safetensors: argument 'checksum_key' must be a str or None, got "
                        f"{type(checksum_key).__name__}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"read_safetensors: argument 'path' {str(p)!r} is not an existing file")
    with open(p, "rb") as fh:
        blob = fh.read()
    return _decode(blob, str(p), checksum_key)


# -- writing --------------------------------------------------------------------------------------------
def _prepared(tensors: Any) -> dict[str, np.ndarray]:
    """Host arrays, C-contiguous and little-endian, as the package needs them (no copy when they are)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"write_safetensors: argument 'tensors' must be a dict from name to array, got "
                        f"{type(tensors).__name__}")
    out: dict[str, np.ndarray] = {}
    for name in tensors:
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"write_safetensors: tensor name {name!r} is not allowed")
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        out[name] = arr.astype(_DTYPES[_code(arr.dtype, name)], order="C", copy=False)  # astype keeps 0-d shapes
    return out


def _checked_metadata(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"write_safetensors: argument 'metadata' must map str to str, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"write_safetensors: argument 'metadata' must map str to str, got {k!r}: "
                            f"{type(v).__name__}")
    return dict(metadata)


def _serialize(arrays: dict[str, np.ndarray], metadata: dict[str, str], path: Any) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes, encoded by the package, and their header as we read it back (a check that
    the package wrote a readable header: safetensors 0.4.0 to 0.4.3 did not for tensor-less files)."""
    library = _library()
    try:
        blob = library.numpy.save(arrays, metadata=metadata or None)
    except library.SafetensorError as exc:
        raise SafetensorsError(f"write_safetensors: the safetensors package refused to encode {os.fspath(path)!r}: "
                               f"{str(exc)[:300]}") from None
    try:
        header = _parse_header(blob)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        header = exc
    if not isinstance(header, dict):
        raise RuntimeError(f"write_safetensors: safetensors {getattr(library, '__version__', '?')} encoded an "
                           f"unreadable header for {os.fspath(path)!r}; nothing was written (gpunn needs "
                           "safetensors>=0.4.4)")
    return blob, header


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None, checksum_key: str | None = None) -> None:
    """Write `tensors` (host arrays) and `metadata` (str -> str) to `path` atomically, as a plain
    safetensors file encoded by the `safetensors` package.

    With `checksum_key`, the SHA-256 of the header and the tensor bytes is stored under that
    metadata key (replacing any entry of that name), so that read_safetensors can detect any
    corruption: the format itself has no checksum."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"write_safetensors: argument 'path' must be a str or os.PathLike, got "
                        f"{type(path).__name__}")
    if checksum_key is not None and (not isinstance(checksum_key, str) or not checksum_key):
        raise TypeError(f"write_safetensors: argument 'checksum_key' must be a non-empty str or None, got "
                        f"{checksum_key!r}")
    meta = _checked_metadata(metadata)
    arrays = _prepared(tensors)
    if checksum_key is None:
        atomic_write(path, _serialize(arrays, meta, path)[0])
        return
    # The checksum lives in the header it covers: encode once without it, hash that header and data,
    # then encode again with it. Data offsets do not depend on the metadata, and the second header is
    # checked to differ from the first by the checksum alone. Only one encoded copy is held at a time.
    meta.pop(checksum_key, None)
    blob, unsigned = _serialize(arrays, meta, path)
    meta[checksum_key] = _digest(unsigned, memoryview(blob)[8 + _header_length(blob):], checksum_key)
    del blob
    blob, signed = _serialize(arrays, meta, path)
    signed_meta = {k: v for k, v in signed.get("__metadata__", {}).items() if k != checksum_key}
    if dict(_entries(signed)) != dict(_entries(unsigned)) or signed_meta != unsigned.get("__metadata__", {}):
        raise RuntimeError(f"write_safetensors: the safetensors package laid out {os.fspath(path)!r} differently "
                           "once the checksum was added; nothing was written")
    atomic_write(path, blob)
