"""MNIST and Fashion-MNIST from their IDX files, verified by MD5 before use.

Where the files are looked for: the `path` argument, else `$GPUNN_DATA/<name>`, else
`~/.cache/gpunn/<name>`. Each file may be gzipped (`*.gz`) or raw. MNIST is verified by the MD5
of the *uncompressed* content, so a re-compressed but byte-identical file is accepted. For
Fashion-MNIST only the MD5s of the published gz files are known, so a gz file is checked by
that and a raw file by its header shape.

Nothing is read whole on trust: a file's header must declare the expected shape before its body is
read (decompressed as a stream), and a download stops once it is larger than the gzipped file can be.
"""
from __future__ import annotations

import hashlib
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gpunn.data.idx import ChecksumError, IdxHeader, read_idx_md5

ENV_VAR = "GPUNN_DATA"
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class IdxFile:
    name: str            # without .gz
    shape: tuple[int, ...]
    md5: str | None      # of the uncompressed content
    gz_md5: str | None   # of the published .gz


@dataclass(frozen=True)
class IdxDataset:
    key: str
    title: str
    files: dict[str, IdxFile]  # train_images, train_labels, test_images, test_labels
    mirrors: tuple[str, ...]


MNIST = IdxDataset("mnist", "MNIST", {
    "train_images": IdxFile("train-images-idx3-ubyte", (60000, 28, 28), "6bbc9ace898e44ae57da46a324031adb",
                            "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": IdxFile("train-labels-idx1-ubyte", (60000,), "a25bea736e30d166cdddb491f175f624",
                            "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": IdxFile("t10k-images-idx3-ubyte", (10000, 28, 28), "2646ac647ad5339dbf082846283269ea",
                           "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte", (10000,), "27ae3e4e09519cfbb04c329615203637",
                           "ec29112dd5afa0611ce80d1b7f02629c"),
}, ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/"))

FASHION_MNIST = IdxDataset("fashion-mnist", "Fashion-MNIST", {
    "train_images": IdxFile("train-images-idx3-ubyte", (60000, 28, 28), None, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": IdxFile("train-labels-idx1-ubyte", (60000,), None, "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": IdxFile("t10k-images-idx3-ubyte", (10000, 28, 28), None, "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte", (10000,), None, "bb300cfdad3c16e7a12a480ee83cd310"),
}, ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"))


def default_folder(key: str) -> Path:
    """`$GPUNN_DATA/<key>` when the variable is set, else `~/.cache/gpunn/<key>`."""
    base = os.environ.get(ENV_VAR)
    return Path(base).expanduser() / key if base else Path.home() / ".cache" / "gpunn" / key


def _find(folder: Path, f: IdxFile) -> Path | None:
    for candidate in (folder / f"{f.name}.gz", folder / f.name, folder / f"{f.name.replace('-idx', '.idx')}"):
        if candidate.is_file():
            return candidate
    return None


def _missing_message(ds: IdxDataset, folder: Path, missing: list[IdxFile], why: str) -> str:
    lines = [f"{ds.title}: {why}. Put these files into {folder} (gzipped or not):"]
    for f in missing:
        what = "images" if "images" in f.name else "labels"
        n = f.shape[0]
        lines.append(f"  {f.name}.gz  - {n} {what}" + (f" (uncompressed MD5 {f.md5})" if f.md5 else
                                                       f" (gz MD5 {f.gz_md5})"))
    lines.append(f"or pass path=..., set {ENV_VAR} to the folder that holds '{ds.key}/', "
                 "or use download=True on a machine with a network.")
    return "\n".join(lines)


def _max_gz_bytes(f: IdxFile) -> int:
    """The most a gzipped `f` can weigh: its uncompressed size (deflate's stored blocks add 5 bytes per
    64 KiB), plus room for the gzip header and trailer."""
    uncompressed = 4 + 4 * len(f.shape) + math.prod(f.shape)
    return uncompressed + uncompressed // 1000 + (64 << 10)


def _copy_bounded(resp: BinaryIO, out: BinaryIO, f: IdxFile) -> None:
    """Copy a download to `out`, refusing it once it is longer than `f` gzipped can be (a hostile or
    broken mirror could otherwise fill the disk)."""
    limit, total = _max_gz_bytes(f), 0
    while chunk := resp.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise ValueError(f"the download is more than {limit} bytes, more than {f.name}.gz of shape {f.shape} "
                             "can be - refused")
        out.write(chunk)


def _download(ds: IdxDataset, folder: Path, missing: list[IdxFile], timeout: float) -> list[str]:
    """Fetch each missing file from the first mirror that answers; returns the errors met."""
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for key, f in ds.files.items():
        if f not in missing:
            continue
        for mirror in ds.mirrors:
            url = f"{mirror}{f.name}.gz"
            part = folder / f".{f.name}.gz.part"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
                    _copy_bounded(resp, out, f)
                _read_verified(ds, key, part)  # never keep a bad download
                os.replace(part, folder / f"{f.name}.gz")
                break
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
            finally:
                part.unlink(missing_ok=True)
    return errors


def _gz_md5(path: Path) -> str | None:
    """The MD5 of the file as stored (hashed in chunks) when it is gzip, else None."""
    hasher = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        if fh.read(2) != _GZIP_MAGIC:
            return None
        fh.seek(0)
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _read_verified(ds: IdxDataset, key: str, path: Path) -> np.ndarray:
    """Read the file `key` of `ds` from `path`: its header must declare the expected shape of uint8
    before the body is read, and its MD5 must match before the array is used."""
    f = ds.files[key]
    if f.md5 is None and f.gz_md5 is not None:  # the published .gz is checked as stored, before it is inflated
        got = _gz_md5(path)
        if got is not None and got != f.gz_md5:
            raise ChecksumError(f"{path}: MD5 mismatch of the gz file: expected {f.gz_md5}, got {got}; "
                                f"this is not the published {ds.title} {f.name}.gz - replace it")

    def check_header(header: IdxHeader) -> None:
        if header.shape != f.shape or header.dtype != np.uint8:
            raise ValueError(f"{path}: expected {ds.title} {key} of shape {f.shape} and dtype uint8, "
                             f"got {header.shape} {header.dtype}")

    arr, got = read_idx_md5(path, check_header=check_header)
    if f.md5 is not None and got != f.md5:
        raise ChecksumError(f"{path}: MD5 mismatch of the uncompressed content: expected {f.md5}, got {got}; "
                            f"this is not the genuine {ds.title} {f.name} - replace it")
    return arr


def _load(ds: IdxDataset, path: str | os.PathLike | None, download: bool, normalize: bool, timeout: float):
    folder = Path(path).expanduser() if path is not None else default_folder(ds.key)
    missing = [f for f in ds.files.values() if _find(folder, f) is None]
    if missing and download:
        errors = _download(ds, folder, missing, timeout)
        missing = [f for f in ds.files.values() if _find(folder, f) is None]
        if missing:
            raise DatasetNotFoundError(_missing_message(
                ds, folder, missing, "the download failed (no network?): " + "; ".join(errors[-len(ds.mirrors):])))
    elif missing:
        raise DatasetNotFoundError(_missing_message(ds, folder, missing, "files not found"))
    arrays = {}
    for key, f in ds.files.items():
        arrays[key] = _read_verified(ds, key, _find(folder, f))
    for split in ("train", "test"):
        labels = arrays[f"{split}_labels"]
        if labels.max() > 9:
            raise ValueError(f"{ds.title} {split} labels must be in [0, 9], found {int(labels.max())}")
    x_train, x_test = arrays["train_images"][:, None], arrays["test_images"][:, None]
    if normalize:  # float32 in [0, 1]; the uint8 form keeps 4x less memory for those who want it
        x_train = x_train.astype(np.float32) / np.float32(255)
        x_test = x_test.astype(np.float32) / np.float32(255)
    return ((x_train, arrays["train_labels"].astype(np.int64)), (x_test, arrays["test_labels"].astype(np.int64)))


def load_mnist(path: str | os.PathLike | None = None, download: bool = False, normalize: bool = True,
               timeout: float = 30.0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as ((x_train, y_train), (x_test, y_test)).

    x is NCHW (N, 1, 28, 28): float32 in [0, 1] when `normalize`, else uint8. y is int64 in [0, 9].
    """
    return _load(MNIST, path, download, normalize, timeout)


def load_fashion_mnist(path: str | os.PathLike | None = None, download: bool = False, normalize: bool = True,
                       timeout: float = 30.0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST, in the same form as `load_mnist`."""
    return _load(FASHION_MNIST, path, download, normalize, timeout)
