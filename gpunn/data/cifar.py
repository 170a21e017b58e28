"""CIFAR-10 from the *binary* release (cifar-10-binary.tar.gz), never the pickled one.

Each record is 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major
32x32), so a batch file is a whole number of 3073-byte records. The Python release is refused
because unpickling a downloaded file runs whatever code it holds.
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def parse_cifar_records(data: bytes, name: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Bytes of a binary batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    if len(data) == 0:
        raise ValueError(f"{name}: empty file; a CIFAR-10 binary batch holds records of {RECORD} bytes")
    if len(data) % RECORD:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
                         f"({len(data) // RECORD} records and {len(data) % RECORD} bytes left over): "
                         "truncated, or not the binary release")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{name}: record {bad} has label {int(labels[bad])}; CIFAR-10 labels are 0..9 "
                         "(is this CIFAR-100, which has two label bytes?)")
    return rec[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _read_members(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the named batch files from a folder (or its cifar-10-batches-bin/) or from the tar.gz."""
    if path.is_file():
        out: dict[str, bytes] = {}
        with tarfile.open(path, "r:*") as tar:  # only regular members are read; nothing is extracted
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in names:
                    out[base] = tar.extractfile(member).read()
        return out
    folder = path / "cifar-10-batches-bin" if (path / "cifar-10-batches-bin").is_dir() else path
    return {n: (folder / n).read_bytes() for n in names if (folder / n).is_file()}


def load_cifar10(path: str | os.PathLike, normalize: bool = True
                 ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10 as ((x_train, y_train), (x_test, y_test)); x NCHW (N, 3, 32, 32).

    `path` is the extracted `cifar-10-batches-bin` folder, its parent, or `cifar-10-binary.tar.gz`.
    x is float32 in [0, 1] when `normalize`, else uint8; y is int64 in [0, 9].
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"load_cifar10: argument 'path' does not exist: {path}; download "
                                "cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and pass "
                                "the archive or the extracted cifar-10-batches-bin folder")
    wanted = TRAIN_FILES + TEST_FILES
    members = _read_members(path, wanted)
    missing = [n for n in wanted if n not in members]
    if missing:
        pickled = path.is_dir() and any((p / "data_batch_1").is_file() for p in (path, path / "cifar-10-batches-py"))
        hint = (" This looks like the pickled Python release, which gpunn does not load (unpickling runs code); "
                "use the binary release, cifar-10-binary.tar.gz." if pickled else "")
        raise FileNotFoundError(f"load_cifar10: {path} lacks {missing}; expected the CIFAR-10 binary release "
                                f"(data_batch_1.bin .. data_batch_5.bin, test_batch.bin).{hint}")
    splits = []
    for names in (TRAIN_FILES, TEST_FILES):
        parts = [parse_cifar_records(members[n], path / n if path.is_dir() else f"{path}:{n}") for n in names]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if normalize:
            x = x.astype(np.float32) / np.float32(255)
        splits.append((x, y))
    return splits[0], splits[1]
