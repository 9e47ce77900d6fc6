"""MNIST and Fashion-MNIST from their IDX files (gzip-compressed or not)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from shared.data.registry import data_home, find_source, verify_files

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
