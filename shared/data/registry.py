"""A registry of named data sets: where each is looked for, how its files are verified, and how to get it.

Loaders are registered lazily as ``"module:function"`` strings, so asking for Fashion-MNIST never imports RDKit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

_MANIFEST = Path(__file__).with_name("manifest.json")
REPO_ROOT = Path(__file__).resolve().parents[2]


class DataMissingError(FileNotFoundError):
    """A data set is not where it is looked for; the message lists where and how to get it."""


class DataCorruptError(RuntimeError):
    """A data file exists but its sha256 does not match the manifest."""


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: str
    description: str
    how_to_get: str
    fixed_kwargs: tuple[tuple[str, Any], ...] = ()


_REGISTRY: dict[str, DatasetEntry] = {}


def register(name: str, loader: str, description: str, how_to_get: str, **fixed_kwargs: Any) -> None:
    """Register ``name`` -> ``"module:function"``; ``fixed_kwargs`` are always passed to that function."""
    if name in _REGISTRY:
        raise ValueError(f"data set {name!r} is registered twice")
    _REGISTRY[name] = DatasetEntry(name, loader, description, how_to_get, tuple(fixed_kwargs.items()))


def list_datasets() -> list[DatasetEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def entry(name: str) -> DatasetEntry:
    if name not in _REGISTRY:
        raise KeyError(f"unknown data set {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def load(name: str, /, **kwargs: Any) -> Any:
    """Load a registered data set by name; keyword arguments go to its loader (e.g. ``split="train"``)."""
    spec = entry(name)
    module_name, func_name = spec.loader.split(":")
    return getattr(importlib.import_module(module_name), func_name)(**dict(spec.fixed_kwargs), **kwargs)


def data_home() -> Path:
    """Where fetched data live: $ML_PAPERS_DATA, else ~/.cache/ml-papers (filled by ``make setup``)."""
    return Path(os.environ.get("ML_PAPERS_DATA", Path.home() / ".cache" / "ml-papers"))


def kit_data_dir() -> Path:
    """The read-only kit beside the checkout (../shared/data), or $ML_PAPERS_KIT if set."""
    return Path(os.environ.get("ML_PAPERS_KIT", REPO_ROOT.parent / "shared" / "data"))


class SearchPath(list):
    """Candidate directories in lookup order; ``env`` names the variable the first one came from (or None).

    A directory named by the user's environment variable is a request, not a hint: when it lacks the files,
    :func:`find_source` fails naming the variable instead of quietly falling back to a cached copy.
    """

    def __init__(self, dirs: Iterable[Path | None], env: str | None = None) -> None:
        super().__init__(dirs)
        self.env = env


def candidate_dirs(root: str | Path | None, env: str, *defaults: Path) -> SearchPath:
    """Where a loader looks: ``root`` alone when given, else $``env`` alone when set, else ``defaults`` in order."""
    if root:
        return SearchPath([Path(root)])
    if os.environ.get(env):
        return SearchPath([Path(os.environ[env])], env=env)
    return SearchPath(defaults)


def find_source(name: str, candidates: Iterable[Path | None], required: Iterable[str]) -> Path:
    """The first candidate directory that holds every ``required`` relative path, else DataMissingError."""
    required = list(required)
    env = getattr(candidates, "env", None)
    tried = []
    for cand in candidates:
        if cand is None:
            continue
        cand = Path(cand)
        missing = [r for r in required if not (cand / r).exists()]
        if not missing:
            return cand
        listed = f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        if env is not None:
            raise DataMissingError(
                f"${env}={cand} does not hold data set {name!r} (missing {listed}); "
                f"point {env} at a folder that does, or unset it.\nHow to get it: {entry(name).how_to_get}"
            )
        tried.append(f"{cand} (missing {listed})")
    raise DataMissingError(
        f"data set {name!r} not found; looked in {'; '.join(tried) or '(no candidate locations)'}.\n"
        f"How to get it: {entry(name).how_to_get}"
    )


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file read in 1 MiB blocks (md5 only where a data set's authors publish nothing else)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: Path, files: Iterable[Path]) -> str:
    """sha256 over 'relative/path<TAB>sha256' lines of the given files, sorted by path."""
    lines = sorted(f"{Path(f).relative_to(root).as_posix()}\t{file_digest(Path(f))}" for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@cache
def manifest() -> dict[str, dict[str, str]]:
    return json.loads(_MANIFEST.read_text())


def verify(name: str, key: str, actual: str, where: Path) -> None:
    """Compare a digest with the manifest entry ``manifest[name][key]``; DataCorruptError on mismatch."""
    expected = manifest().get(name, {}).get(key)
    if expected is None:
        raise KeyError(f"manifest has no sha256 for {name}/{key}")
    if actual != expected:
        raise DataCorruptError(
            f"{where}: sha256 {actual[:16]}... does not match the manifest's {expected[:16]}... for {name}/{key}; "
            f"the file is corrupted or a different release. Delete it and fetch again ({entry(name).how_to_get})"
        )


def verify_files(name: str, root: Path, relpaths: Iterable[str]) -> None:
    """Verify each file's sha256 against manifest[name][relpath]."""
    for rel in relpaths:
        verify(name, rel, file_digest(root / rel), root / rel)
