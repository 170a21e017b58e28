"""Hostile data files: each test reproduces an attack through the public loaders.

A gzip bomb, a forged IDX header, a tar member or header declared huge, a link where a batch file
should be, a mirror that never stops sending: each must be refused with an error naming the file,
after reading no more than the declared (and sane) size. Peak memory is measured with tracemalloc,
which sees NumPy's buffers as well as Python's.
"""
from __future__ import annotations

import gzip
import io
import math
import struct
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from gpunn.data import DatasetNotFoundError, IdxFormatError, load_cifar10, load_mnist, read_idx
from gpunn.data import cifar as cifar_mod
from gpunn.data import idx as idx_mod
from gpunn.data import mnist as mnist_mod

MiB = 1 << 20
BOMB_BYTES = 200 * MiB  # what the IDX bomb's stream decompresses to


def _header(dims: Iterable[int], code: int = 0x08) -> bytes:
    dims = tuple(dims)
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _write_gz_stream(path: Path, parts: Iterable[bytes]) -> Path:
    """One gzip member holding the parts in order, compressed as they come (never whole in memory)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    with path.open("wb") as out:
        for part in parts:
            out.write(comp.compress(part))
        out.write(comp.flush())
    return path


def _zeros(total: int) -> Iterable[bytes]:
    chunk = bytes(MiB)
    for _ in range(total // MiB):
        yield chunk
    yield bytes(total % MiB)


def _peak(fn: Callable[[], object]) -> int:
    """Peak traced memory (bytes) while fn runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _refused(fn: Callable[[], object], exc: type[BaseException], match: str) -> int:
    """Assert fn raises exc matching `match`; return the peak traced memory of the attempt."""
    peaks = []
    with pytest.raises(exc, match=match):
        tracemalloc.start()
        try:
            fn()
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    return peaks[0]


# -- IDX: gzip bombs and forged headers --------------------------------------------------------------------
@pytest.fixture(scope="module")
def idx_bomb(tmp_path_factory) -> Path:
    """A valid (10, 28, 28) uint8 IDX header and body, then 200 MB of zeros, in one ~200 KB gzip stream."""
    body = bytes(10 * 28 * 28)
    path = _write_gz_stream(tmp_path_factory.mktemp("bomb") / "train-images-idx3-ubyte.gz",
                            [_header((10, 28, 28)), body, *_zeros(BOMB_BYTES)])
    assert path.stat().st_size < 1 * MiB  # the attack: a small file
    return path


def test_idx_gzip_bomb_is_refused_after_one_chunk(idx_bomb):
    """Fault: read_idx gzip-decompressed the whole file before looking at the header (3 MB -> 6 GB of RAM)."""
    peak = _refused(lambda: read_idx(idx_bomb), IdxFormatError,
                    r"train-images-idx3-ubyte\.gz: wrong count: .*\(10, 28, 28\).*but the file has "
                    r"(at least )?\d+ extra bytes")
    assert peak < 8 * MiB, f"peak {peak} bytes: the stream was decompressed past the declared body"


def test_idx_gzip_bomb_with_md5_is_refused_after_one_chunk(idx_bomb):
    """The md5= path hashes as it streams: verifying the content must not decompress it whole either."""
    peak = _refused(lambda: read_idx(idx_bomb, md5="0" * 32), IdxFormatError, "wrong count")
    assert peak < 8 * MiB


def test_load_mnist_refuses_a_gzip_bomb_with_bounded_memory(idx_bomb, tmp_path, monkeypatch):
    """Fault: load_mnist went through the same whole-file decompression (read_bytes) before any check."""
    files = {}
    for key, name, shape in (("train_images", "train-images-idx3-ubyte", (10, 28, 28)),
                             ("train_labels", "train-labels-idx1-ubyte", (10,)),
                             ("test_images", "t10k-images-idx3-ubyte", (2, 28, 28)),
                             ("test_labels", "t10k-labels-idx1-ubyte", (2,))):
        if key == "train_images":
            (tmp_path / f"{name}.gz").write_bytes(idx_bomb.read_bytes())
        else:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(_header(shape) + bytes(math.prod(shape))))
        files[key] = mnist_mod.IdxFile(name, shape, None, None)
    monkeypatch.setattr(mnist_mod, "MNIST", mnist_mod.IdxDataset("mnist", "MNIST", files, ()))
    peak = _refused(lambda: load_mnist(tmp_path), IdxFormatError, r"train-images-idx3-ubyte\.gz: wrong count")
    assert peak < 8 * MiB


def test_load_mnist_refuses_a_header_of_the_wrong_shape_before_its_body(tmp_path, monkeypatch):
    """A header declaring more than the data set's shape is refused on the header (nothing inflated)."""
    shape = (10, 28, 28)
    files = {key: mnist_mod.IdxFile(name, s, None, None) for key, name, s in (
        ("train_images", "train-images-idx3-ubyte", shape), ("train_labels", "train-labels-idx1-ubyte", (10,)),
        ("test_images", "t10k-images-idx3-ubyte", shape), ("test_labels", "t10k-labels-idx1-ubyte", (10,)))}
    for f in files.values():
        (tmp_path / f"{f.name}.gz").write_bytes(gzip.compress(_header(f.shape) + bytes(math.prod(f.shape))))
    _write_gz_stream(tmp_path / "train-images-idx3-ubyte.gz", [_header((60000, 28, 28)), *_zeros(60000 * 784)])
    monkeypatch.setattr(mnist_mod, "MNIST", mnist_mod.IdxDataset("mnist", "MNIST", files, ()))
    peak = _refused(lambda: load_mnist(tmp_path), ValueError,
                    r"train-images-idx3-ubyte\.gz: expected MNIST train_images of shape \(10, 28, 28\) .*"
                    r"got \(60000, 28, 28\)")
    assert peak < 8 * MiB  # the 47 MB body was never decompressed


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_absurd_declared_size_is_refused_by_the_limit(tmp_path, gz):
    """Fault: a header declaring 10**9 x 10**9 bytes was only caught by comparing with the whole content."""
    data = _header((10**9, 10**9)) + bytes(1000)
    path = tmp_path / ("absurd.gz" if gz else "absurd")
    path.write_bytes(gzip.compress(data) if gz else data)
    _refused(lambda: read_idx(path), IdxFormatError,
             r"absurd(\.gz)?: the header declares shape \(1000000000, 1000000000\) of u1 = "
             rf"1000000000000000000 bytes, more than the limit of {idx_mod.MAX_IDX_BYTES} bytes")


def test_idx_declared_size_a_gzip_file_cannot_hold_is_refused_before_allocating(tmp_path):
    """1 GB declared (under the limit) in a file of a few dozen bytes: deflate cannot expand that far."""
    path = tmp_path / "small.gz"
    path.write_bytes(gzip.compress(_header((1000, 1000, 1000)) + bytes(100)))
    peak = _refused(lambda: read_idx(path), IdxFormatError,
                    r"small\.gz: truncated body: the header declares shape \(1000, 1000, 1000\) of u1 "
                    r"\(1000000016 bytes in all\), more than a gzip file of \d+ bytes can hold")
    assert peak < 1 * MiB  # the 1 GB array was never allocated


# the true product of these dims is 2**64 + 4, which an int64 product wraps to 4: the old size check passed
_OVERFLOW_DIMS = (4, 5, 5581, 8681, 49477, 384773)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dims,body,match", [
    (_OVERFLOW_DIMS, bytes(4), rf"declares shape \(4, 5, 5581, 8681, 49477, 384773\) of u1 = {2**64 + 4} bytes, "
                               "more than the limit"),
    ((1,) * 255, bytes(1), "the header declares 255 dimensions, more than the 32 a NumPy array can have"),
    ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1), b"", r"empty, but its nonzero dimensions multiply to \d+ bytes, more than"),
], ids=["int64-overflow", "255-dims", "empty-but-huge"])
def test_idx_insane_headers_are_format_errors(tmp_path, gz, dims, body, match):
    """Fault: these headers passed the old checks and reached NumPy, which raised its own ValueError."""
    data = _header(dims) + body
    path = tmp_path / ("h.gz" if gz else "h")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(IdxFormatError, match=r"h(\.gz)?: .*" + match):
        read_idx(path)
    with pytest.raises(IdxFormatError, match="<bytes>: .*" + match):
        idx_mod.parse_idx(data)


def test_idx_gzip_truncated_after_the_header_is_a_clear_error(tmp_path):
    """A complete gzip stream that ends before the declared body (random bytes: not refused by the ratio bound)."""
    body = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8).tobytes()
    path = _write_gz_stream(tmp_path / "cut.gz", [_header((100, 28, 28)), body])
    with pytest.raises(IdxFormatError, match=r"cut\.gz: truncated body: .*\(100, 28, 28\).*the file has 5016 bytes "
                                             "once decompressed"):
        read_idx(path)


def test_idx_honest_file_is_read_in_one_buffer_of_its_size(tmp_path):
    """Memory is bounded by the declared size: no whole decompressed copy, no second copy to swap bytes."""
    arr = np.arange(2 * MiB, dtype=np.int32).reshape(2048, 1024)  # 8 MiB of big-endian int32 to swap
    content = _header(arr.shape, 0x0C) + arr.astype(">i4").tobytes()
    path = _write_gz_stream(tmp_path / "big.gz", [content])
    md5 = idx_mod.md5_hex(content)
    del content
    out = []
    peak = _peak(lambda: out.append(read_idx(path, md5=md5)))
    np.testing.assert_array_equal(out[0], arr)
    assert out[0].dtype == np.int32 and out[0].flags.writeable
    assert peak < arr.nbytes + 3 * MiB  # the array, one chunk, and change


# -- CIFAR-10: tar members and headers ---------------------------------------------------------------------
def _record_bytes(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, cifar_mod.RECORD - 1))], axis=1)
    return rec.astype(np.uint8).tobytes()


class _Zeros(io.RawIOBase):
    """A stream of `n` zero bytes, for tarfile.addfile, never held in memory."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, size: int | None = None, **attrs) -> None:
    info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
    for key, value in attrs.items():
        setattr(info, key, value)
    if size is not None:
        info.size = size
        with _Zeros(size) as zeros:
            tar.addfile(info, zeros)
    elif data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _add_good_batches(tar: tarfile.TarFile, skip: str = "") -> None:
    for i, name in enumerate(cifar_mod.TRAIN_FILES + cifar_mod.TEST_FILES):
        if name != skip:
            _add(tar, name, _record_bytes(2, i))


def test_cifar_tar_member_declared_huge_is_refused_before_reading(tmp_path):
    """Fault: each batch member was read whole (tar.extractfile(m).read()) before any size check; here a
    data_batch_1.bin of 20000 zero records (61 MB, twice a real batch) sits in a ~60 KB archive."""
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "data_batch_1.bin", size=20000 * cifar_mod.RECORD)
        _add_good_batches(tar, skip="data_batch_1.bin")
    assert path.stat().st_size < 1 * MiB
    peak = _refused(lambda: load_cifar10(path), ValueError,
                    r"cifar-10-binary\.tar\.gz:cifar-10-batches-bin/data_batch_1\.bin: 61460000 bytes, more than the "
                    r"30730000 bytes \(10000 records of 3073 bytes\)")
    assert peak < 8 * MiB


@pytest.mark.parametrize("kind,linkname,match", [
    (tarfile.SYMTYPE, "/dev/zero", "is a symbolic link to '/dev/zero'; expected a regular file"),
    (tarfile.LNKTYPE, "cifar-10-batches-bin/test_batch.bin", "is a hard link to .*; expected a regular file"),
], ids=["symlink", "hardlink"])
def test_cifar_tar_link_member_is_refused(tmp_path, kind, linkname, match):
    """Fault: a link named like a batch file was silently skipped, and the error said the file was missing."""
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add_good_batches(tar, skip="data_batch_1.bin")
        _add(tar, "data_batch_1.bin", type=kind, linkname=linkname)
    with pytest.raises(ValueError, match=r"data_batch_1\.bin " + match):
        load_cifar10(path)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax", "gnu-longname"])
def test_cifar_tar_header_declared_huge_is_refused(tmp_path, kind):
    """Fault: tarfile reads a pax or GNU long-name header whole, however large it is declared: 64 MB of
    zeros here, in a ~70 KB archive, read into memory before any member was seen."""
    size = 64 * MiB
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = kind, size
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w") as tar:
        _add(tar, "readme.html", b"<html></html>")  # the member the header applies to
        _add_good_batches(tar)
    path = _write_gz_stream(tmp_path / "cifar-10-binary.tar.gz",
                            [header.tobuf(tarfile.GNU_FORMAT), *_zeros(size), good.getvalue()])
    peak = _refused(lambda: load_cifar10(path), ValueError,
                    r"cifar-10-binary\.tar\.gz: the tar headers take more than 1048576 bytes")
    assert peak < 8 * MiB


def test_cifar_tar_skipping_members_is_bounded(tmp_path):
    """Fault: tarfile decompresses a member it skips; 600 MB of junk ahead of the batch files (in ~600 KB of
    concatenated gzip members) was inflated in full before the archive could be refused."""
    junk = 600 * MiB
    header = tarfile.TarInfo("cifar-10-batches-bin/junk.bin")
    header.size = junk
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w") as tar:
        _add_good_batches(tar)
    zeros_member = gzip.compress(bytes(MiB), mtime=0)
    path = tmp_path / "cifar-10-binary.tar.gz"
    with path.open("wb") as out:
        out.write(gzip.compress(header.tobuf(tarfile.GNU_FORMAT), mtime=0))
        for _ in range(junk // MiB):
            out.write(zeros_member)
        out.write(gzip.compress(good.getvalue(), mtime=0))
    with pytest.raises(ValueError, match=rf"cifar-10-binary\.tar\.gz: more than {cifar_mod.MAX_ARCHIVE_BYTES} bytes "
                                         "of tar stream before all batch files were found"):
        load_cifar10(path)


def test_cifar_folder_file_too_large_is_refused_before_reading(tmp_path):
    """Fault: a batch file in a folder was read whole before its size was checked (61 MB, sparse on disk)."""
    for i, name in enumerate(cifar_mod.TRAIN_FILES + cifar_mod.TEST_FILES):
        (tmp_path / name).write_bytes(_record_bytes(1, i))
    with (tmp_path / "data_batch_3.bin").open("r+b") as fh:
        fh.truncate(20000 * cifar_mod.RECORD)  # 20000 records (all label 0 after the first): valid but for its size
    peak = _refused(lambda: load_cifar10(tmp_path), ValueError,
                    r"data_batch_3\.bin: 61460000 bytes, more than the 30730000 bytes")
    assert peak < 8 * MiB


# -- MNIST download: a mirror that never stops -----------------------------------------------------------
def test_mnist_download_stops_at_what_the_gz_file_can_weigh(tmp_path, monkeypatch):
    """Fault: a download was copied to disk however long it was; a hostile or broken mirror could fill it."""
    import urllib.request

    served = []

    class EndlessZeros(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            served.append(len(b))
            if sum(served) > 64 * MiB:  # a backstop so that the unbounded copy also ends
                return 0
            b[:] = bytes(len(b))
            return len(b)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BufferedReader(EndlessZeros()))
    files = {key: mnist_mod.IdxFile(name, shape, None, None) for key, name, shape in (
        ("train_images", "train-images-idx3-ubyte", (6, 28, 28)), ("train_labels", "train-labels-idx1-ubyte", (6,)),
        ("test_images", "t10k-images-idx3-ubyte", (4, 28, 28)), ("test_labels", "t10k-labels-idx1-ubyte", (4,)))}
    monkeypatch.setattr(mnist_mod, "MNIST", mnist_mod.IdxDataset("mnist", "MNIST", files, ("http://mirror/",)))
    with pytest.raises(DatasetNotFoundError, match=r"http://mirror/t10k-labels-idx1-ubyte\.gz: the download is more "
                                                   r"than \d+ bytes, more than t10k-labels-idx1-ubyte\.gz of shape"):
        load_mnist(tmp_path / "dl", download=True)
    assert sum(served) < 4 * 4 * MiB  # four files, each stopped within a chunk of its bound
    assert not any((tmp_path / "dl").iterdir())
