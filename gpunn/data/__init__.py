"""Data: datasets (IDX/MNIST, CIFAR-10 binary, digits), the prefetching DataLoader, augmentation
(`gpunn.data.transforms`) and preprocessing (`gpunn.data.preprocessing`)."""
from gpunn.data import preprocessing, transforms
from gpunn.data.cifar import load_cifar10
from gpunn.data.digits import load_digits, train_test_split
from gpunn.data.idx import ChecksumError, IdxFormatError, read_idx, write_idx
from gpunn.data.loader import DataLoader
from gpunn.data.mnist import DatasetNotFoundError, load_fashion_mnist, load_mnist

__all__ = ["ChecksumError", "DataLoader", "DatasetNotFoundError", "IdxFormatError", "load_cifar10", "load_digits",
           "load_fashion_mnist", "load_mnist", "preprocessing", "read_idx", "train_test_split", "transforms",
           "write_idx"]
