"""Masks and weight updates of the three pruners (magnitude, Wanda, SparseGPT) and OWL's layerwise ratios."""

from __future__ import annotations

import numpy as np
import torch


def parse_sparsity_type(sparsity_type: str) -> tuple[int, int] | None:
    """``"unstructured"`` -> None; ``"2:4"`` -> (2, 4): N zeros in every group of M consecutive inputs."""
    if sparsity_type == "unstructured":
        return None
    try:
        n, m = (int(part) for part in sparsity_type.split(":"))
    except ValueError:
        raise ValueError(f"sparsity_type must be 'unstructured' or 'N:M' like '2:4', got {sparsity_type!r}") from None
    if not 0 < n < m:
        raise ValueError(f"N:M sparsity needs 0 < N < M, got {sparsity_type!r}")
    return n, m


TIE_BREAKS = ("stable", "topk")


def check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")


def _lowest(scores: torch.Tensor, count: int, tie_break: str = "stable") -> torch.Tensor:
    """Indices of the ``count`` lowest scores along the last dim.

    ``stable``: a stable ascending sort, so tied scores go in index order (the official Wanda/OWL
    ``torch.sort(..., stable=True)``); ``topk``: ``torch.topk``, whose order among ties is unspecified.
    """
    if tie_break == "stable":
        return torch.sort(scores, dim=-1, stable=True).indices[..., :count]
    if tie_break == "topk":
        return torch.topk(scores, count, dim=-1, largest=False).indices
    raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")


def _lowest_per_row(scores: torch.Tensor, count: int, tie_break: str = "stable") -> torch.Tensor:
    """Boolean mask marking the ``count`` lowest scores of every row."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if count > 0:
        mask.scatter_(1, _lowest(scores, count, tie_break), True)
    return mask


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Prune mask with the ``n`` lowest scores of each group of ``m`` consecutive input columns (Wanda, Sec. 3)."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"{cols} input columns do not split into groups of {m}")
    groups = scores.reshape(rows, cols // m, m)
    idx = torch.topk(groups, n, dim=2, largest=False).indices  # the official N:M code uses topk too
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(2, idx, True).reshape(rows, cols)


def wanda_scores(weight: torch.Tensor, input_sq_norm: torch.Tensor) -> torch.Tensor:
    """Wanda's importance |W_ij| * ||X_j||_2 (Wanda Eq. 1), ``input_sq_norm`` holding ||X_j||_2^2 per input."""
    return weight.abs() * input_sq_norm.sqrt().reshape(1, -1)


def wanda_mask(weight: torch.Tensor, input_sq_norm: torch.Tensor, sparsity: float,
               nm: tuple[int, int] | None = None, tie_break: str = "stable") -> torch.Tensor:
    """Prune mask comparing scores within each output row (Wanda Sec. 3), or within N:M groups."""
    scores = wanda_scores(weight, input_sq_norm)
    if nm is not None:
        return nm_mask(scores, *nm)
    check_sparsity(sparsity)
    return _lowest_per_row(scores, int(weight.shape[1] * sparsity), tie_break)


def magnitude_mask(weight: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None,
                   tie_break: str = "stable") -> torch.Tensor:
    """Prune mask of the smallest |W| over the whole matrix (one threshold per layer), or within N:M groups."""
    if nm is not None:
        return nm_mask(weight.abs(), *nm)
    check_sparsity(sparsity)
    flat = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
    count = int(weight.numel() * sparsity)
    if count:
        flat[_lowest(weight.abs().flatten(), count, tie_break)] = True
    return flat.reshape(weight.shape)


@torch.no_grad()
def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float,
                    nm: tuple[int, int] | None = None, blocksize: int = 128, damp: float = 0.01,
                    tie_break: str = "stable") -> torch.Tensor:
    """SparseGPT (Frantar & Alistarh 2023, Alg. 1): OBS mask selection per column block and error compensation.

    ``hessian`` is 2/n * sum X X^T over calibration inputs. The math runs in float32 on the weight's device (CPU
    or GPU, as in the official code). Returns the pruned, updated weight (same dtype and device).
    """
    if nm is None:
        check_sparsity(sparsity)
    W = weight.detach().clone().float()
    H = hessian.detach().to(W.device, torch.float32, copy=True)
    cols = W.shape[1]
    dead = torch.diag(H) == 0  # inputs never active: their weights cannot matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, device=W.device)  # damping lambda = 1% of the mean diagonal (Sec. 3)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        diag = torch.diag(Hinv1)
        if nm is None:  # adaptive mask for the block: lowest w^2 / [H^-1]_cc^2 over rows x block (Eq. 3)
            saliency = (W1**2 / diag.reshape(1, -1) ** 2).flatten()
            mask1 = torch.zeros(saliency.numel(), dtype=torch.bool, device=W.device)
            count = int(saliency.numel() * sparsity)
            if count:
                mask1[_lowest(saliency, count, tie_break)] = True
            mask1 = mask1.reshape(W1.shape)
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                group = W1[:, i : i + nm[1]] ** 2 / diag[i : i + nm[1]].reshape(1, -1) ** 2
                mask1[:, i : i + nm[1]] = _lowest_per_row(group, nm[0])
            w = W1[:, i]
            q = w.clone()
            q[mask1[:, i]] = 0.0
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]  # OBS update of the remaining columns (Eq. 2)
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # lazy batch update of the columns after the block
    return W.to(weight.dtype)


def outlier_ratio(scores: list[torch.Tensor], m: float) -> float:
    """OWL's layerwise outlier distribution D_l (Sec. 4): percent of pooled Wanda scores above M times their mean."""
    if m <= 0:
        raise ValueError(f"the outlier threshold M must be positive, got {m}")
    pooled = torch.cat([s.flatten().float() for s in scores])
    return float(100.0 * (pooled > m * pooled.mean()).float().mean())


def owl_sparsities(outlier_ratios: list[float] | np.ndarray, target: float, lam: float) -> np.ndarray:
    """Block sparsities from outlier ratios (Sec. 4; official code): S_l = 1 - D~_l, D~ spanning 2*lambda, mean 1-S.

    More outliers -> lower sparsity. If every block has the same ratio the result is uniform.
    """
    check_sparsity(target)
    if lam < 0:
        raise ValueError(f"lambda must be non-negative, got {lam}")
    ratios = np.asarray(outlier_ratios, dtype=np.float64)
    spread = ratios.max() - ratios.min()
    if spread == 0 or lam == 0:
        return np.full(len(ratios), target)
    density = (ratios - ratios.min()) / spread * (2 * lam)
    density = density - density.mean() + (1 - target)
    sparsities = 1 - density
    sparsities[sparsities <= 0] = 0.01  # the official code's floor
    if (sparsities >= 1).any():
        raise ValueError(f"target {target} with lambda {lam} asks some block for sparsity >= 1: lower lambda")
    return sparsities


def check_owl_lambda(lam: float, nm: tuple[int, int] | None) -> None:
    """Unstructured: block sparsities span 2*lambda around S, so lambda < 0.5. N:M: lambda counts weights per
    group (the official command uses 2 for 5:8), so 0 <= lambda < M."""
    bound = 0.5 if nm is None else nm[1]
    if not 0 <= lam < bound:
        kind = "unstructured sparsity" if nm is None else f"{nm[0]}:{nm[1]} sparsity (lambda counts weights per group)"
        raise ValueError(f"owl_lambda must lie in [0, {bound:g}) for {kind}, got {lam}")


def owl_nm_counts(outlier_ratios: list[float] | np.ndarray, n: int, m: int, lam: float) -> np.ndarray:
    """OWL for N:M (official ``prune_wanda_outlier_structure``): N_l = N - round(d_l - mean d), d spanning lambda.

    More outliers -> fewer pruned weights per group. With lambda < 0.5 every offset rounds to 0 (uniform N:M).
    """
    check_owl_lambda(lam, (n, m))
    ratios = np.asarray(outlier_ratios, dtype=np.float64)
    spread = ratios.max() - ratios.min()
    if spread == 0 or lam == 0:
        return np.full(len(ratios), n, dtype=int)
    d = (ratios - ratios.min()) / spread * lam
    counts = (n - np.round(d - d.mean())).astype(int)
    if counts.min() < 0 or counts.max() >= m:
        raise ValueError(f"{n}:{m} with lambda {lam} gives per-block N from {counts.min()} to {counts.max()}, "
                         f"outside [0, {m - 1}]: lower lambda")
    return counts
