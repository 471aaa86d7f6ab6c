"""Kernel Inception Distance (KID).

Binkowski et al. (2018), "Demystifying MMD GANs", https://arxiv.org/abs/1801.01401: the unbiased
estimator of squared MMD with the cubic polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged
over random subsets of equal size from both sets. Subsets follow clean-fid (`kernel_distance`)
and torch-fidelity (`kid_features_to_metric`): `num_subsets` draws without replacement of
m = min(n_real, n_fake, subset_size) rows from each set; the std is over subsets (ddof=0, as
torch-fidelity). All arithmetic is float64.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[N, M] cubic polynomial kernel (x_i . y_j / d + 1)^3 between [N, D] and [M, D] arrays."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between equal-size samples x, y ([m, D]) under `polynomial_kernel`.

    (sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)) / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2,
    the estimator of Binkowski et al. (the cross term over all m^2 pairs, as clean-fid and
    torch-fidelity's default 'unbiased').
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"need two samples of equal size >= 2, got {x.shape[0]} and {y.shape[0]}")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kid_subset_indices(
    n_real: int, n_fake: int, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (real_idx, fake_idx) row subsets `kernel_inception_distance` uses, each of size
    m = min(n_real, n_fake, subset_size), drawn without replacement from one seeded generator."""
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    m = min(n_real, n_fake, subset_size)
    if m < 2:
        raise ValueError(
            f"KID needs subsets of at least 2 rows; n_real={n_real}, n_fake={n_fake}, "
            f"subset_size={subset_size}"
        )
    rng = np.random.default_rng(seed)
    return [
        (rng.choice(n_real, m, replace=False), rng.choice(n_fake, m, replace=False))
        for _ in range(num_subsets)
    ]


def kernel_inception_distance(
    feats_real, feats_fake, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID of [N, D] real and [M, D] fake features: mean and std of subset MMD^2 estimates.

    Args:
      feats_real, feats_fake: feature arrays with the same D (e.g. 2048-d Inception pool).
      num_subsets: number of random subset pairs.
      subset_size: rows per subset; clipped to min(N, M).
      seed: seed of the subset draws (results are deterministic given the seed).

    Returns:
      (mean, std) of the unbiased MMD^2 over subsets. Often reported x 1e3. The estimator is
      unbiased, so the mean can be slightly negative when the two distributions match.
    """
    real, fake = np.asarray(feats_real), np.asarray(feats_fake)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"features must be [N, D] arrays with equal D, got {real.shape} and {fake.shape}"
        )
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    if not (np.isfinite(real).all() and np.isfinite(fake).all()):
        raise ValueError("features contain NaN or Inf")
    subsets = kid_subset_indices(len(real), len(fake), num_subsets, subset_size, seed)
    mmds = np.array([mmd2_unbiased(real[ir], fake[jf]) for ir, jf in subsets])
    return float(mmds.mean()), float(mmds.std())
