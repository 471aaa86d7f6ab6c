"""Frechet distance between Gaussians fitted to features (FID).

Heusel et al. (2017), "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", https://arxiv.org/abs/1706.08500. The numerics follow pytorch-fid
(`calculate_frechet_distance`): float64, `scipy.linalg.sqrtm` of sigma1 @ sigma2, an eps * I
offset when that product is singular, and small imaginary parts from rounding dropped.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg

from genimg.metrics.feature_stats import FeatureStats

_log = logging.getLogger(__name__)

# sqrtm's relative residual ||X @ X - A||_F / ||A||_F above which the product is treated as
# singular (what scipy < 1.16 reported as "Matrix is singular and may not have a square root").
_SQRTM_MAX_REL_RESIDUAL = 1e-5
# Tolerance on the imaginary part of diag(sqrtm) before it counts as a real failure (pytorch-fid).
_MAX_IMAG_DIAG = 1e-3


def _sqrtm_residual(x: np.ndarray, a: np.ndarray) -> float:
    """Relative Frobenius residual of a candidate square root x of a."""
    return float(np.linalg.norm(x @ x - a) / max(np.linalg.norm(a), np.finfo(np.float64).tiny))


def _check_moments(mu1, sigma1, mu2, sigma2):
    """Returns the moments as float64 arrays after checking shapes and finiteness."""
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be 1-D with equal shapes, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"covariances must be [{d}, {d}] to match the means, got {sigma1.shape} and "
            f"{sigma2.shape}"
        )
    for name, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or Inf")
    return mu1, sigma1, mu2, sigma2


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2}), in float64.

    Args:
      mu1, mu2: [D] means.
      sigma1, sigma2: [D, D] covariances (symmetric PSD).
      eps: diagonal offset added to both covariances when sqrtm of their product fails (not
        finite, or a residual that shows the product is numerically singular), as pytorch-fid.

    Returns:
      The distance as a Python float (FID when the moments are of Inception pool features).

    Raises:
      ValueError: on mismatched shapes, non-finite inputs, or when the matrix square root keeps a
        significant imaginary component (a sign of badly broken covariance estimates).
    """
    mu1, sigma1, mu2, sigma2 = _check_moments(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    product = sigma1 @ sigma2
    covmean = scipy.linalg.sqrtm(product)
    if (
        not np.isfinite(covmean).all()
        or _sqrtm_residual(covmean, product) > _SQRTM_MAX_REL_RESIDUAL
    ):
        _log.warning(
            "FID: sigma1 @ sigma2 is singular; adding %g to the diagonal of both covariances", eps
        )
        offset = np.eye(mu1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("FID: matrix square root is not finite even after the eps offset")
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=_MAX_IMAG_DIAG):
            raise ValueError(
                f"FID: sqrtm(sigma1 @ sigma2) has a large imaginary component "
                f"(max |imag| = {np.max(np.abs(covmean.imag)):.3g}); covariances are not PSD"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(feats1, feats2, eps: float = 1e-6) -> float:
    """FID between two [N, D] feature arrays (float64 moments, ddof=1 covariance)."""
    s1, s2 = FeatureStats().update(feats1), FeatureStats().update(feats2)
    return frechet_distance(s1.mean, s1.cov, s2.mean, s2.cov, eps=eps)
