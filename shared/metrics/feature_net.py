"""A feature network for Frechet distance and sample-class accuracy on 28x28 grey images, trained by the repo.

Inception weights for standard FID cannot be had offline, so FIDs here use a small CNN classifier trained on the
data set's own train split. Its name (data set, architecture, version, test accuracy) goes beside every FID it
produces: these numbers are comparable with each other, not with published Inception FIDs.
"""

from __future__ import annotations

import fcntl
from functools import cache

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from shared.data import data_home, load
from shared.data.torch_adapter import images_to_float
from shared.metrics.frechet import FeatureStats
from shared.runs.checkpoint import load_checkpoint, save_checkpoint

_VERSION = "v1"
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

    def __init__(self, dataset: str, model: SmallConvNet, test_accuracy: float) -> None:
        self.dataset = dataset
        self.model = model.eval()
        self.test_accuracy = test_accuracy
        self.name = f"smallcnn-{dataset}-{_VERSION} (test acc {test_accuracy:.4f})"

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


def _train(dataset: str, epochs: int, seed: int) -> tuple[SmallConvNet, float]:
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
    net = ImageFeatureNetwork(dataset, model, 0.0)
    accuracy = float((net.predict(images_to_float(test["images"])) == test["labels"]).mean())
    return model, accuracy


@cache
def image_feature_network(dataset: str, epochs: int = 2, seed: int = 0) -> ImageFeatureNetwork:
    """The cached feature network for ``dataset`` (trained on first use, about a minute on 2 CPU cores)."""
    if dataset not in _SUPPORTED:
        raise ValueError(f"no feature network for {dataset!r}; supported: {', '.join(_SUPPORTED)}")
    path = data_home() / "feature_nets" / f"{dataset}-{_VERSION}-e{epochs}-s{seed}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process trains, the others wait and then read its file
        if not path.exists():
            model, accuracy = _train(dataset, epochs, seed)
            save_checkpoint(path, {"state_dict": model.state_dict(), "test_accuracy": accuracy})
    state = load_checkpoint(path)
    model = SmallConvNet()
    model.load_state_dict(state["state_dict"])
    return ImageFeatureNetwork(dataset, model, state["test_accuracy"])


@cache
def _reference_stats(dataset: str, split: str) -> FeatureStats:
    net = image_feature_network(dataset)
    return net.stats(images_to_float(load(dataset, split=split)["images"]))
