"""IDX parsing, MNIST loading with MD5 checks, CIFAR-10 binary parsing, digits."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from gpunn.data import (ChecksumError, DatasetNotFoundError, IdxFormatError, load_cifar10, load_digits, load_mnist,
                        read_idx, train_test_split, write_idx)
from gpunn.data import mnist as mnist_mod
from gpunn.data.idx import md5_hex, parse_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_good_files(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = _idx_bytes(images, 0x08)
    path = tmp_path / ("img.gz" if gz else "img")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    np.testing.assert_array_equal(out, images)
    assert out.dtype == np.uint8 and out.flags.writeable


@pytest.mark.parametrize("dtype,code", [(np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E),
                                        (np.int8, 0x09)])
def test_read_idx_big_endian_types_roundtrip(tmp_path, dtype, code):
    arr = (np.arange(12) - 5).astype(dtype).reshape(3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(arr, code))
    out = read_idx(tmp_path / "a")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    write_idx(tmp_path / "b.gz", arr)  # our writer produces what the reader and the format expect
    assert (tmp_path / "b.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), arr)
    assert gzip.decompress((tmp_path / "b.gz").read_bytes()) == _idx_bytes(arr, code)


def test_bad_magic(tmp_path):
    data = bytearray(_idx_bytes(np.zeros((2, 2), np.uint8), 0x08))
    data[0] = 0x12
    (tmp_path / "bad").write_bytes(bytes(data))
    with pytest.raises(IdxFormatError, match=r"bad.*bad magic number"):
        read_idx(tmp_path / "bad")


def test_unknown_dtype_code(tmp_path):
    data = bytearray(_idx_bytes(np.zeros((2, 2), np.uint8), 0x08))
    data[2] = 0x07
    (tmp_path / "f").write_bytes(bytes(data))
    with pytest.raises(IdxFormatError, match="unknown dtype code 0x07"):
        read_idx(tmp_path / "f")


def test_truncated_body_names_file(tmp_path):
    data = _idx_bytes(np.zeros((10, 28, 28), np.uint8), 0x08)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data[:-100])
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte: truncated body.*\(10, 28, 28\)"):
        read_idx(path)


def test_truncated_header_and_tiny_file(tmp_path):
    (tmp_path / "h").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 10]))
    with pytest.raises(IdxFormatError, match="truncated header"):
        read_idx(tmp_path / "h")
    (tmp_path / "t").write_bytes(b"\x00\x00")
    with pytest.raises(IdxFormatError, match="too short"):
        read_idx(tmp_path / "t")


def test_wrong_count_extra_bytes(tmp_path):
    (tmp_path / "labels").write_bytes(_idx_bytes(np.zeros(5, np.uint8), 0x08) + b"\x01\x02")
    with pytest.raises(IdxFormatError, match="wrong count.*2 extra bytes"):
        read_idx(tmp_path / "labels")


def test_corrupt_gzip(tmp_path):
    blob = gzip.compress(_idx_bytes(np.zeros(100, np.uint8), 0x08))
    (tmp_path / "x.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxFormatError, match="gzip stream is corrupt or truncated"):
        read_idx(tmp_path / "x.gz")


def test_md5_mismatch_reported(tmp_path):
    data = _idx_bytes(np.ones(4, np.uint8), 0x08)
    (tmp_path / "l.gz").write_bytes(gzip.compress(data))
    read_idx(tmp_path / "l.gz", md5=md5_hex(data))  # the uncompressed content's MD5 is accepted
    with pytest.raises(ChecksumError, match=r"l\.gz: MD5 mismatch of the uncompressed content"):
        read_idx(tmp_path / "l.gz", md5=md5_hex(gzip.compress(data)))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_idx("/nonexistent/idx")


def test_write_idx_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.complex64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.float32(1.0))


# -- MNIST ----------------------------------------------------------------------------------------------
def _fake_mnist(folder: Path, monkeypatch, n_train: int = 6, n_test: int = 4, corrupt: str | None = None) -> None:
    """Tiny MNIST-shaped files, with the expected MD5s patched to theirs."""
    rng = np.random.default_rng(0)
    files = {}
    for key, name, shape in (("train_images", "train-images-idx3-ubyte", (n_train, 28, 28)),
                             ("train_labels", "train-labels-idx1-ubyte", (n_train,)),
                             ("test_images", "t10k-images-idx3-ubyte", (n_test, 28, 28)),
                             ("test_labels", "t10k-labels-idx1-ubyte", (n_test,))):
        arr = rng.integers(0, 10 if "labels" in key else 256, shape).astype(np.uint8)
        data = _idx_bytes(arr, 0x08)
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        md5 = md5_hex(data) if key != corrupt else "0" * 32
        files[key] = mnist_mod.IdxFile(name, shape, md5, None)
    monkeypatch.setattr(mnist_mod, "MNIST", mnist_mod.IdxDataset("mnist", "MNIST", files, ("http://127.0.0.1:9/",)))


def test_load_mnist_from_folder(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, monkeypatch)
    (xt, yt), (xs, ys) = load_mnist(tmp_path)
    assert xt.shape == (6, 1, 28, 28) and xt.dtype == np.float32 and 0 <= xt.min() and xt.max() <= 1
    assert yt.dtype == np.int64 and xs.shape == (4, 1, 28, 28) and ys.shape == (4,)
    (xu, _), _ = load_mnist(tmp_path, normalize=False)
    assert xu.dtype == np.uint8
    np.testing.assert_allclose(xt, xu / 255.0, rtol=1e-6)


def test_load_mnist_env_var_default(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    _fake_mnist(tmp_path / "mnist", monkeypatch)
    monkeypatch.setenv("GPUNN_DATA", str(tmp_path))
    (xt, _), _ = load_mnist()
    assert xt.shape[0] == 6


def test_load_mnist_md5_mismatch(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, monkeypatch, corrupt="test_labels")
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz: MD5 mismatch of the uncompressed"):
        load_mnist(tmp_path)


def test_load_mnist_missing_says_where_and_what(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    msg = str(info.value)
    assert str(tmp_path / "mnist") in msg and "train-images-idx3-ubyte.gz" in msg and "60000 images" in msg
    assert "6bbc9ace898e44ae57da46a324031adb" in msg and "download=True" in msg


def test_load_mnist_download_offline_fails_clearly(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetNotFoundError, match=r"download failed \(no network\?\).*network is unreachable"):
        load_mnist(tmp_path / "dl", download=True)
    assert not any((tmp_path / "dl").iterdir())  # no partial files left behind


def test_load_mnist_wrong_shape(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, monkeypatch)
    files = dict(mnist_mod.MNIST.files)
    files["train_images"] = mnist_mod.IdxFile("train-images-idx3-ubyte", (7, 28, 28), files["train_images"].md5, None)
    monkeypatch.setattr(mnist_mod, "MNIST", mnist_mod.IdxDataset("mnist", "MNIST", files, ()))
    with pytest.raises(ValueError, match=r"expected MNIST train_images of shape \(7, 28, 28\)"):
        load_mnist(tmp_path)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not present")
def test_real_mnist_verifies():
    (xt, yt), (xs, ys) = load_mnist(SHARED_MNIST)
    assert xt.shape == (60000, 1, 28, 28) and xs.shape == (10000, 1, 28, 28)
    assert np.bincount(yt).tolist()[:2] == [5923, 6742] and ys[:5].tolist() == [7, 2, 1, 0, 4]


# -- CIFAR-10 -------------------------------------------------------------------------------------------
def _cifar_file(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
    path.write_bytes(records.tobytes())
    return images, labels


def test_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    train = [_cifar_file(folder / f"data_batch_{i}.bin", 3, i) for i in range(1, 6)]
    test_images, test_labels = _cifar_file(folder / "test_batch.bin", 2, 99)
    (xt, yt), (xs, ys) = load_cifar10(tmp_path)  # the parent folder works too
    assert xt.shape == (15, 3, 32, 32) and xt.dtype == np.float32 and ys.dtype == np.int64
    np.testing.assert_array_equal(yt, np.concatenate([t[1] for t in train]))
    np.testing.assert_allclose(xs * 255, test_images, atol=1e-4)
    # channel order: the first 1024 bytes after the label are the red plane
    raw = (folder / "test_batch.bin").read_bytes()
    assert xs[0, 0, 0, 1] * 255 == pytest.approx(raw[2]) and xs[0, 1, 0, 0] * 255 == pytest.approx(raw[1 + 1024])
    (xu, _), _ = load_cifar10(folder, normalize=False)
    assert xu.dtype == np.uint8


def test_cifar10_tarball(tmp_path):
    import tarfile
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        _cifar_file(folder / f"data_batch_{i}.bin", 2, i)
    _cifar_file(folder / "test_batch.bin", 2, 0)
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    (xt, _), (xs, _) = load_cifar10(tmp_path / "cifar-10-binary.tar.gz")
    assert xt.shape[0] == 10 and xs.shape[0] == 2


def test_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10(tmp_path / "nope")
    (tmp_path / "data_batch_1").write_bytes(b"pickled")  # the Python release: refused, with the reason
    with pytest.raises(FileNotFoundError, match="pickled Python release"):
        load_cifar10(tmp_path)
    for i in range(1, 6):
        _cifar_file(tmp_path / f"data_batch_{i}.bin", 1, i)
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match="test_batch.bin: 3000 bytes is not a whole number of 3073-byte"):
        load_cifar10(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(bytes([12]) + b"\x00" * 3072)
    with pytest.raises(ValueError, match="label 12"):
        load_cifar10(tmp_path)


# -- digits and splitting ---------------------------------------------------------------------------------
def test_load_digits():
    pytest.importorskip("sklearn")
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0 and set(np.unique(y)) == set(range(10))


def test_load_digits_without_sklearn(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'gpunn\[demo\]'"):
        load_digits()


def test_train_test_split_stratified_and_disjoint():
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.repeat(np.arange(4), 25)
    (xa, ya), (xb, yb) = train_test_split(x, y, 0.2, seed=1)
    assert len(xa) == 80 and len(xb) == 20 and np.bincount(yb).tolist() == [5, 5, 5, 5]
    assert sorted(np.concatenate([xa, xb]).ravel().tolist()) == list(range(100))
    (xc, _), _ = train_test_split(x, y, 0.2, seed=1)
    np.testing.assert_array_equal(xa, xc)
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(x, y, 1.5)
    with pytest.raises(ValueError, match="same length"):
        train_test_split(x, y[:5])


def test_parse_idx_label_in_error():
    with pytest.raises(IdxFormatError, match="<bytes>"):
        parse_idx(b"\x01\x00\x08\x01")
