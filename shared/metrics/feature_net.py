"""A feature network for Frechet distance and sample-class accuracy on 28x28 grey images, shipped with the repo.

Inception weights for standard FID cannot be had offline, so FIDs here use a small CNN classifier trained on the
data set's own train split. The trained weights are committed (``weights/``) with their sha256 in
``weights/manifest.json``, so every machine computes FIDs with the same network; its name (data set, version and
the first 8 hex digits of the weights' sha256) goes beside every FID it produces. These FIDs are comparable with
each other, not with published Inception FIDs.

Rebuild a network (then commit the file and the printed manifest entry under a new version)::

    python -m shared.metrics.feature_net build mnist
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from shared.data import load
from shared.data.registry import DataCorruptError, file_digest
from shared.data.torch_adapter import images_to_float
from shared.metrics.frechet import FeatureStats

VERSION = "v2"
WEIGHTS_DIR = Path(__file__).with_name("weights")
_MANIFEST = WEIGHTS_DIR / "manifest.json"
_SUPPORTED = ("mnist", "fashion_mnist")


class SmallConvNet(nn.Module):
    """Two conv blocks and a 128-d penultimate layer (the features), then a linear classifier."""

    def __init__(self, n_classes: int = 10, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ImageFeatureNetwork:
    """A trained :class:`SmallConvNet` with ``features`` (penultimate activations) and ``predict`` (class ids)."""

    def __init__(self, dataset: str, model: SmallConvNet, test_accuracy: float, sha256: str) -> None:
        self.dataset = dataset
        self.model = model.eval()
        self.test_accuracy = test_accuracy
        self.sha256 = sha256
        self.name = f"smallcnn-{dataset}-{VERSION}-{sha256[:8]} (test acc {test_accuracy:.4f})"

    @torch.no_grad()
    def _run(self, x: torch.Tensor, head: bool, batch_size: int = 1000) -> np.ndarray:
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28) in [-1, 1], got {tuple(x.shape)}")
        outs = []
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].float().cpu()
            feats = self.model.body(batch)
            outs.append((self.model.head(feats) if head else feats).numpy())
        return np.concatenate(outs)

    def features(self, x: torch.Tensor) -> np.ndarray:
        return self._run(x, head=False)

    def predict(self, x: torch.Tensor) -> np.ndarray:
        return self._run(x, head=True).argmax(1)

    def stats(self, x: torch.Tensor) -> FeatureStats:
        return FeatureStats.from_features(self.features(x), self.name)

    def reference_stats(self, split: str = "test") -> FeatureStats:
        return _reference_stats(self.dataset, split)


def weights_file(dataset: str) -> Path:
    return WEIGHTS_DIR / f"smallcnn-{dataset}-{VERSION}.safetensors"


@cache
def image_feature_network(dataset: str) -> ImageFeatureNetwork:
    """The shipped feature network for ``dataset``; a weights file whose sha256 differs from the manifest fails."""
    from safetensors.torch import load_file

    if dataset not in _SUPPORTED:
        raise ValueError(f"no feature network for {dataset!r}; supported: {', '.join(_SUPPORTED)}")
    entry = json.loads(_MANIFEST.read_text())[f"{dataset}-{VERSION}"]
    path = weights_file(dataset)
    actual = file_digest(path)
    if actual != entry["sha256"]:
        raise DataCorruptError(
            f"{path}: sha256 {actual[:16]}... is not the manifest's {entry['sha256'][:16]}...; the shipped feature "
            "network was modified. Restore it with `git checkout -- shared/metrics/weights`."
        )
    model = SmallConvNet()
    model.load_state_dict(load_file(path))
    return ImageFeatureNetwork(dataset, model, entry["test_accuracy"], actual)


def train_feature_network(dataset: str, epochs: int = 2, seed: int = 0) -> tuple[SmallConvNet, float]:
    """Adam, batch 128, on the train split; returns the model and its test accuracy."""
    torch.manual_seed(seed)
    train, test = load(dataset, split="train"), load(dataset, split="test")
    x, y = images_to_float(train["images"]), torch.from_numpy(train["labels"])
    model = SmallConvNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in tqdm(range(0, len(x), 128), desc=f"feature net {dataset} epoch {epoch + 1}", leave=False):
            idx = order[start : start + 128]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(images_to_float(test["images"][i : i + 1000])) for i in range(0, len(test["images"]), 1000)])
    accuracy = float((logits.argmax(1).numpy() == test["labels"]).mean())
    return model, accuracy


@cache
def _reference_stats(dataset: str, split: str) -> FeatureStats:
    net = image_feature_network(dataset)
    return net.stats(images_to_float(load(dataset, split=split)["images"]))


def main(argv: list[str] | None = None) -> None:
    """``build DATASET``: train a network, write its weights file and print its manifest entry."""
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("dataset", choices=_SUPPORTED)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, accuracy = train_feature_network(args.dataset)
    path = weights_file(args.dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    entry = {f"{args.dataset}-{VERSION}": {"sha256": file_digest(path), "test_accuracy": round(accuracy, 4),
                                           "trained": "python -m shared.metrics.feature_net build " + args.dataset}}
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
