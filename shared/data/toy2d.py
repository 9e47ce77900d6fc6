"""2-D Gaussian mixtures with known parameters, so a sampler's output can be compared with the truth."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class GaussianMixture2D:
    """Isotropic components: ``means`` (K, 2), one ``std`` for all, ``weights`` (K,) summing to one."""

    means: np.ndarray
    std: float
    weights: np.ndarray

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points (float32, (n, 2)) and the component each came from (int64, (n,))."""
        rng = np.random.default_rng(seed)
        comp = rng.choice(len(self.weights), size=n, p=self.weights)
        points = self.means[comp] + self.std * rng.standard_normal((n, 2))
        return points.astype(np.float32), comp.astype(np.int64)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log p(x) of each row of ``x``."""
        d2 = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        log_comp = -d2 / (2 * self.std**2) - np.log(2 * np.pi * self.std**2) + np.log(self.weights)[None]
        top = log_comp.max(1, keepdims=True)
        return (top + np.log(np.exp(log_comp - top).sum(1, keepdims=True)))[:, 0]


def ring(k: int = 8, radius: float = 2.0, std: float = 0.1) -> GaussianMixture2D:
    angles = 2 * np.pi * np.arange(k) / k
    means = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    return GaussianMixture2D(means, std, np.full(k, 1 / k))


def grid(side: int = 5, spacing: float = 1.0, std: float = 0.05) -> GaussianMixture2D:
    axis = (np.arange(side) - (side - 1) / 2) * spacing
    means = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    return GaussianMixture2D(means, std, np.full(side * side, 1 / side**2))


_PRESETS = {"ring8": ring, "grid25": grid}


def load_toy2d(name: str = "ring8", n: int = 10000, seed: int = 0) -> dict[str, object]:
    """{'points', 'components', 'mixture'} for a preset mixture: ring8 (8 modes on a circle) or grid25 (5x5)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown 2-D mixture {name!r}; choose one of {sorted(_PRESETS)}")
    mixture = _PRESETS[name]()
    points, comps = mixture.sample(n, seed)
    return {"points": points, "components": comps, "mixture": mixture}
