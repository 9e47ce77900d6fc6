"""Image data sets: MNIST and Fashion-MNIST (IDX files), CIFAR-10 (python tarball), CelebA-64 (aligned JPEGs)."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.registry import (
    DataCorruptError,
    DataMissingError,
    candidate_dirs,
    data_home,
    file_digest,
    find_source,
    verify_files,
)

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
    system = [Path("/usr/share/datasets/fashion-mnist")] if name == "fashion_mnist" else []
    src = find_source(name, candidate_dirs(root, env, *(data_home() / d for d in defaults), *system), files)
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
    if split not in _CIFAR10_MEMBERS:
        raise ValueError(f"split must be one of {list(_CIFAR10_MEMBERS)}, got {split!r}")
    src = find_source("cifar10", candidate_dirs(root, "CIFAR10_DIR", data_home() / "cifar10"), [CIFAR10_TARBALL])
    digest = file_digest(src / CIFAR10_TARBALL, "md5")
    if digest != CIFAR10_MD5:
        raise DataCorruptError(f"{src / CIFAR10_TARBALL}: md5 {digest} is not the published {CIFAR10_MD5}; download it again")
    return read_cifar10_tarball(src / CIFAR10_TARBALL, split)


# Published by the CelebA authors' mirror list (also checked by torchvision's CelebA); no sha256 is published.
CELEBA_MD5 = {"img_align_celeba.zip": "00d2c5bc6d35e252742224ab0c1e8fcb", "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668"}
CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}
# The 128x128 face box centred at (x=89, y=121) of the 178x218 aligned image (D2C's crop, used by U-ViT's CelebA-64).
CELEBA_FACE_BOX = (89 - 64, 121 - 64, 89 + 64, 121 + 64)


def celeba_face_crop(image: Any, size: int = 64) -> np.ndarray:
    """Crop a PIL image of an aligned CelebA face to ``CELEBA_FACE_BOX`` and resize it to ``size`` (bilinear, RGB)."""
    from PIL import Image

    return np.asarray(image.convert("RGB").crop(CELEBA_FACE_BOX).resize((size, size), Image.Resampling.BILINEAR))


def load_celeba64(
    split: str = "train", root: str | Path | None = None, limit: int | None = None, check_md5: bool = True
) -> dict[str, np.ndarray]:
    """{'images': uint8 (N, 64, 64, 3)}: CelebA's aligned faces of one official split, face-cropped and resized.

    Reads ``list_eval_partition.txt`` and either the folder ``img_align_celeba/`` or ``img_align_celeba.zip`` from
    ``root``, $CELEBA_DIR or <data home>/celeba; N = 162770 train, 19867 valid, 19962 test (``limit``: the first N).
    ``check_md5`` compares the partition file and the zip with the md5s the authors publish.
    """
    import zipfile

    from PIL import Image
    from tqdm.auto import tqdm

    if split not in CELEBA_SPLITS:
        raise ValueError(f"split must be one of {list(CELEBA_SPLITS)}, got {split!r}")
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    src = find_source("celeba64", candidate_dirs(root, "CELEBA_DIR", data_home() / "celeba"), ["list_eval_partition.txt"])
    folder, archive = src / "img_align_celeba", src / "img_align_celeba.zip"
    if not folder.is_dir() and not archive.is_file():
        raise DataMissingError(f"{src} has list_eval_partition.txt but neither img_align_celeba/ nor img_align_celeba.zip")
    checked = [src / "list_eval_partition.txt"] + ([] if folder.is_dir() else [archive])
    for path in checked if check_md5 else []:
        if file_digest(path, "md5") != CELEBA_MD5[path.name]:
            raise DataCorruptError(f"{path}: md5 is not the published {CELEBA_MD5[path.name]}; download it again")
    names = [
        line.split()[0]
        for line in (src / "list_eval_partition.txt").read_text().splitlines()
        if line.strip() and int(line.split()[1]) == CELEBA_SPLITS[split]
    ][:limit]
    out = np.empty((len(names), 64, 64, 3), dtype=np.uint8)
    with contextlib.nullcontext() if folder.is_dir() else zipfile.ZipFile(archive) as zf:
        for i, name in enumerate(tqdm(names, desc=f"celeba64 {split}", mininterval=5, disable=len(names) < 1000)):
            path = folder / name
            if zf is None and not path.exists():
                raise DataMissingError(f"{path} is listed in list_eval_partition.txt but missing")
            with Image.open(path if zf is None else zf.open(f"img_align_celeba/{name}")) as image:
                out[i] = celeba_face_crop(image)
    return {"images": out}

