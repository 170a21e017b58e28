"""Data: datasets (IDX/MNIST, CIFAR-10 binary, digits), the prefetching DataLoader, augmentation
(`gpunn.data.transforms`) and preprocessing (`gpunn.data.preprocessing`).

- idx.py: IDX files, read and written, validated; mnist.py: MNIST and Fashion-MNIST (MD5-checked);
  cifar.py: CIFAR-10 from the binary release only (never unpickled); digits.py: scikit-learn's 8x8
  digits and train_test_split;
- loader.py: DataLoader, batches on the current backend's device, prefetched in a thread;
- transforms.py: augmentation on host batches; preprocessing.py: scalers, PCA, mean image.

It imports only the backend and the bottom of the stack (gpunn.random, gpunn._checks): nothing
about layers or models.
"""
from gpunn.data import preprocessing, transforms
from gpunn.data.cifar import load_cifar10
from gpunn.data.digits import load_digits, train_test_split
from gpunn.data.idx import ChecksumError, IdxFormatError, read_idx, write_idx
from gpunn.data.loader import DataLoader
from gpunn.data.mnist import DatasetNotFoundError, load_fashion_mnist, load_mnist

__all__ = ["ChecksumError", "DataLoader", "DatasetNotFoundError", "IdxFormatError", "load_cifar10", "load_digits",
           "load_fashion_mnist", "load_mnist", "preprocessing", "read_idx", "train_test_split", "transforms",
           "write_idx"]
