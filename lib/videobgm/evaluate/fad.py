"""Fréchet Audio Distance: the Fréchet distance between two Gaussians (numpy/scipy only),
applied to the mean and covariance of two sets of embeddings."""

from __future__ import annotations

import numpy as np

from videobgm.errors import InputError


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``."""
    from scipy import linalg  # deferred: only FAD needs it

    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1, sigma2 = (
        np.atleast_2d(sigma1).astype(np.float64),
        np.atleast_2d(sigma2).astype(np.float64),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise InputError(f"Fréchet distance of different dimensions: {mu1.shape} and {mu2.shape}")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product (fewer samples than dimensions)
        offset = np.eye(len(mu1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # rounding leaves a negligible imaginary part
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def gaussian(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of ``(n, dim)`` embeddings; ``n >= 2``."""
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise InputError(f"FAD needs at least 2 embeddings per set, got {len(embeddings)}")
    return embeddings.mean(axis=0), np.cov(embeddings, rowvar=False)


def fad(generated: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet Audio Distance between two sets of embeddings ``(n, dim)`` (0: same Gaussian)."""
    return frechet_distance(*gaussian(generated), *gaussian(reference))
