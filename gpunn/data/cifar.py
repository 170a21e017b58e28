"""CIFAR-10 from the *binary* release (cifar-10-binary.tar.gz), never the pickled one.

Each record is 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major
32x32), so a batch file is a whole number of 3073-byte records, and the release has 10000 in each.
The Python release is refused because unpickling a downloaded file runs whatever code it holds.

Nothing is read on trust: a batch file's size (on disk, or as its tar header declares it) is checked
before a byte of it is read, and then exactly that many bytes are read. The archive is decompressed
as a stream that refuses what a hostile archive could make tarfile do: read a huge pax or GNU
long-name header whole, or decompress without end while it skips members.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

RECORD = 1 + 3 * 32 * 32
#: records in each batch file of the release; a batch file may hold no more
BATCH_RECORDS = 10000
MAX_BATCH_BYTES = BATCH_RECORDS * RECORD
#: The most a tar stream may be decompressed to find the batch files: the release unpacks to 185 MB.
MAX_ARCHIVE_BYTES = 512 << 20
#: The most bytes tarfile may read for headers of all kinds (a member's 512 bytes, pax records, long
#: names), which it keeps in memory; the release needs a few KiB.
MAX_HEADER_BYTES = 1 << 20
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_MAGICS = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")), (b"BZh", bz2.BZ2File),
           (b"\xfd7zXZ\x00", lzma.LZMAFile))


def _check_batch_size(nbytes: int, name: str | os.PathLike) -> None:
    """Refuse a batch of `nbytes` that is empty, not whole records, or more records than a batch holds."""
    if nbytes > MAX_BATCH_BYTES:
        raise ValueError(f"{name}: {nbytes} bytes, more than the {MAX_BATCH_BYTES} bytes ({BATCH_RECORDS} records "
                         f"of {RECORD} bytes) of a CIFAR-10 binary batch file: not the CIFAR-10 binary release")
    if nbytes == 0:
        raise ValueError(f"{name}: empty file; a CIFAR-10 binary batch holds records of {RECORD} bytes")
    if nbytes % RECORD:
        raise ValueError(f"{name}: {nbytes} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
                         f"({nbytes // RECORD} records and {nbytes % RECORD} bytes left over): "
                         "truncated, or not the binary release")


def parse_cifar_records(data: bytes, name: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Bytes of a binary batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    _check_batch_size(len(data), name)
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{name}: record {bad} has label {int(labels[bad])}; CIFAR-10 labels are 0..9 "
                         "(is this CIFAR-100, which has two label bytes?)")
    return rec[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


class _GuardedStream:
    """The decompressed tar stream as tarfile reads it, with every read and seek bounded.

    tarfile reads a pax or GNU long-name header whole, however large its header declares it, and skips
    a member by decompressing its data; outside `member_reads()` reads may total MAX_HEADER_BYTES, and
    no position past MAX_ARCHIVE_BYTES is reached.
    """

    def __init__(self, stream: BinaryIO, name: Path) -> None:
        self._stream, self.name = stream, str(name)
        self._header_bytes = 0
        self._member_limit = 0  # > 0 while we read a member we have checked

    @contextlib.contextmanager
    def member_reads(self, size: int) -> Iterator[None]:
        self._member_limit = size
        try:
            yield
        finally:
            self._member_limit = 0

    def read(self, size: int = -1) -> bytes:
        if self._member_limit:
            if not 0 <= size <= self._member_limit:
                raise ValueError(f"{self.name}: a read of {size} bytes from a member checked to hold "
                                 f"{self._member_limit}")
        elif size < 0:  # tarfile always asks for a size; a read to the end would be unbounded
            raise ValueError(f"{self.name}: an unbounded read of the tar stream")
        else:
            if self._header_bytes + size > MAX_HEADER_BYTES:
                raise ValueError(f"{self.name}: the tar headers take more than {MAX_HEADER_BYTES} bytes (a pax or "
                                 "long-name header declared huge?): not the CIFAR-10 binary release")
            self._header_bytes += size
        self._check_position(self._stream.tell() + size)
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._stream.tell()
        elif whence != os.SEEK_SET:  # tarfile seeks from the start or the current position only
            raise ValueError(f"{self.name}: unsupported seek (whence={whence})")
        self._check_position(offset)
        return self._stream.seek(offset)

    def tell(self) -> int:
        return self._stream.tell()

    def _check_position(self, position: int) -> None:
        if position > MAX_ARCHIVE_BYTES:
            raise ValueError(f"{self.name}: more than {MAX_ARCHIVE_BYTES} bytes of tar stream before all batch files "
                             "were found: not the CIFAR-10 binary release")


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tuple[tarfile.TarFile, _GuardedStream]]:
    """The archive (gzip, bzip2, xz or plain tar, told by its magic bytes) behind a _GuardedStream."""
    with path.open("rb") as raw:
        head = raw.read(6)
        raw.seek(0)
        opener = next((op for magic, op in _MAGICS if head.startswith(magic)), None)
        with (opener(raw) if opener else contextlib.nullcontext(raw)) as stream:
            guarded = _GuardedStream(stream, path)
            with tarfile.open(fileobj=guarded, mode="r:") as tar:
                yield tar, guarded


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.isdir():
        return "a directory"
    if member.issparse():
        return "a sparse file"
    return f"a member of type {member.type!r}"


def _read_tar_members(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the named batch files from the archive, each checked by its header before it is read."""
    out: dict[str, bytes] = {}
    try:
        with _open_tar(path) as (tar, guarded):
            for member in tar:  # one header at a time: nothing is read past a member that fails its check
                base = member.name.rsplit("/", 1)[-1]
                if base not in names:
                    continue
                where = f"{path}:{member.name}"
                if not member.isreg() or member.issparse():
                    raise ValueError(f"{where} is {_kind(member)}; expected a regular file")
                if base in out:
                    raise ValueError(f"{where}: a second {base} in the archive; expected one of each batch file")
                _check_batch_size(member.size, where)
                with guarded.member_reads(member.size), tar.extractfile(member) as fh:
                    data = fh.read(member.size)
                if len(data) != member.size:
                    raise ValueError(f"{where}: truncated: its header declares {member.size} bytes, the archive "
                                     f"holds {len(data)}")
                out[base] = data
                if len(out) == len(names):  # what follows is never decompressed
                    break
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: not a readable tar archive, or corrupt or truncated ({exc})") from exc
    return out


def _read_file(path: Path) -> bytes:
    """A batch file from a folder, its size checked before it is read."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        _check_batch_size(size, path)
        data = fh.read(size + 1)  # one more, to notice a file that grew since its size was taken
    if len(data) != size:
        raise ValueError(f"{path}: changed while it was read ({size} bytes, then {len(data)})")
    return data


def _read_members(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the named batch files from a folder (or its cifar-10-batches-bin/) or from the tar.gz."""
    if path.is_file():
        return _read_tar_members(path, names)  # only regular members are read; nothing is extracted
    folder = path / "cifar-10-batches-bin" if (path / "cifar-10-batches-bin").is_dir() else path
    return {n: _read_file(folder / n) for n in names if (folder / n).is_file()}


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
