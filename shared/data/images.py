"""MNIST and Fashion-MNIST from their IDX files (gzip-compressed or not)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from shared.data.registry import DataCorruptError, data_home, find_source, verify_files

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SOURCES = {
    "mnist": ("MNIST_DIR", "", ["mnist/package/data"]),
    "fashion_mnist": ("FASHION_MNIST_DIR", ".gz", ["fashion_mnist/usr/share/datasets/fashion-mnist"]),
}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (big-endian magic: 0x00 0x00 dtype ndim, then one uint32 per dimension)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} bytes (truncated?)")
    return data.reshape(shape)


def _load(name: str, split: str, root: str | Path | None) -> dict[str, np.ndarray]:
    if split not in _FILES:
        raise ValueError(f"split must be one of {list(_FILES)}, got {split!r}")
    env, suffix, defaults = _SOURCES[name]
    files = [f + suffix for f in _FILES[split]]
    candidates = [Path(root)] if root else [Path(os.environ[env]) if env in os.environ else None]
    candidates += [data_home() / d for d in defaults] + ([Path("/usr/share/datasets/fashion-mnist")] if name == "fashion_mnist" else [])
    src = find_source(name, candidates, files)
    verify_files(name, src, files)
    images, labels = (read_idx(src / f) for f in files)
    return {"images": images, "labels": labels.astype(np.int64)}


def load_mnist(split: str = "train", root: str | Path | None = None) -> dict[str, np.ndarray]:
    """{'images': uint8 (N, 28, 28), 'labels': int64 (N,)}; N = 60000 train, 10000 test."""
    return _load("mnist", split, root)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> dict[str, np.ndarray]:
    """{'images': uint8 (N, 28, 28), 'labels': int64 (N,)}; N = 60000 train, 10000 test; 10 clothing classes."""
    return _load("fashion_mnist", split, root)


CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published by the dataset's authors (and checked by torchvision)
_CIFAR10_MEMBERS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def read_cifar10_tarball(path: Path, split: str) -> dict[str, np.ndarray]:
    """Read the pickled batches of ``split`` straight from the CIFAR-10 python tarball."""
    import pickle
    import tarfile

    images, labels = [], []
    with tarfile.open(path, "r:gz") as tar:
        for member in _CIFAR10_MEMBERS[split]:
            handle = tar.extractfile(f"cifar-10-batches-py/{member}")
            if handle is None:
                raise ValueError(f"{path} has no cifar-10-batches-py/{member}")
            batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return {"images": np.concatenate(images), "labels": np.concatenate(labels)}


def load_cifar10(split: str = "train", root: str | Path | None = None) -> dict[str, np.ndarray]:
    """{'images': uint8 (N, 32, 32, 3), 'labels': int64 (N,)}; N = 50000 train, 10000 test.

    Reads ``cifar-10-python.tar.gz`` from ``root`` or $CIFAR10_DIR and checks the md5 its authors publish (the one
    digest that exists for it; no sha256 is published). Not fetchable on machines without the dataset's host.
    """
    import hashlib

    if split not in _CIFAR10_MEMBERS:
        raise ValueError(f"split must be one of {list(_CIFAR10_MEMBERS)}, got {split!r}")
    candidates = [Path(root)] if root else [Path(os.environ["CIFAR10_DIR"]) if "CIFAR10_DIR" in os.environ else None, data_home() / "cifar10"]
    src = find_source("cifar10", candidates, [CIFAR10_TARBALL])
    digest = hashlib.md5((src / CIFAR10_TARBALL).read_bytes(), usedforsecurity=False).hexdigest()
    if digest != CIFAR10_MD5:
        raise DataCorruptError(f"{src / CIFAR10_TARBALL}: md5 {digest} is not the published {CIFAR10_MD5}; download it again")
    return read_cifar10_tarball(src / CIFAR10_TARBALL, split)
