"""Precision / recall and density / coverage from k-nearest-neighbour feature manifolds.

- Precision, recall: Kynkaanniemi et al. (2019), "Improved Precision and Recall Metric for
  Assessing Generative Models", https://arxiv.org/abs/1904.06991. A sample lies on a set's
  manifold when it is inside the k-NN ball of at least one point of that set.
- Density, coverage: Naeem et al. (2020), "Reliable Fidelity and Diversity Metrics for
  Generative Models", https://arxiv.org/abs/2002.09797.

Conventions follow the reference `prdc` package (clovaai/generative-evaluation-prdc): the k-NN
radius of a point is the distance to its k-th nearest neighbour in its own set (itself
excluded), and "inside a ball" is a strict `distance < radius`. Distances are Euclidean, in
float64, computed in row blocks so memory stays at O(block_size * max(N, M)) rather than
O(N * M): 10k x 10k with 2048-d features needs a few hundred MB, not 800 MB per matrix.
"""

from __future__ import annotations

import numpy as np


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", x, x)


def pairwise_sq_distances(
    x: np.ndarray, y: np.ndarray, x_sq: np.ndarray | None = None, y_sq: np.ndarray | None = None
) -> np.ndarray:
    """[N, M] squared Euclidean distances between rows of x [N, D] and y [M, D], clipped at 0.

    Uses ||x||^2 + ||y||^2 - 2 x.y (one matmul); pass precomputed squared norms to save work.
    """
    x_sq = _sq_norms(x) if x_sq is None else x_sq
    y_sq = _sq_norms(y) if y_sq is None else y_sq
    d2 = x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0, out=d2)


def _row_blocks(n: int, block_size: int):
    for start in range(0, n, block_size):
        yield slice(start, min(start + block_size, n))


def knn_sq_radii(x: np.ndarray, k: int, block_size: int = 1024) -> np.ndarray:
    """[N] squared distance from each row of x to its k-th nearest other row (self excluded)."""
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for a set of {n} points, got k={k}")
    x_sq = _sq_norms(x)
    radii = np.empty(n, np.float64)
    for rows in _row_blocks(n, block_size):
        d2 = pairwise_sq_distances(x[rows], x, x_sq[rows], x_sq)
        # The self-distance is 0 up to rounding; make it exactly 0 so it is the 0-th smallest
        # and index k is then the k-th neighbour, as in `prdc`.
        local = np.arange(rows.stop - rows.start)
        d2[local, rows.start + local] = 0.0
        radii[rows] = np.partition(d2, k, axis=1)[:, k]
    return radii


def _as_features(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] array, got shape {x.shape}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def precision_recall_density_coverage(
    real, fake, k: int = 3, block_size: int = 1024
) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real features.

    Args:
      real: [N, D] real features.
      fake: [M, D] generated features.
      k: neighbourhood size of the k-NN balls. Kynkaanniemi et al. use k=3 (the default here);
        Naeem et al. recommend k=5 for density / coverage with 10k samples.
      block_size: rows of the distance matrix held in memory at once.

    Returns:
      dict with
        precision: fraction of fake points inside some real k-NN ball.
        recall:    fraction of real points inside some fake k-NN ball.
        density:   (1 / (k M)) * sum over fake points of the number of real balls containing
                   them (can exceed 1).
        coverage:  fraction of real points whose own k-NN ball contains some fake point.
    """
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    real_r2 = knn_sq_radii(real, k, block_size)  # [N]
    fake_r2 = knn_sq_radii(fake, k, block_size)  # [M]

    real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
    balls_per_fake = np.zeros(fake.shape[0], np.int64)  # real balls containing each fake point
    real_in_fake = np.zeros(real.shape[0], bool)  # recall indicator per real point
    real_covered = np.zeros(real.shape[0], bool)  # coverage indicator per real point
    for rows in _row_blocks(real.shape[0], block_size):
        d2 = pairwise_sq_distances(real[rows], fake, real_sq[rows], fake_sq)  # [b, M]
        in_real_ball = d2 < real_r2[rows, None]
        balls_per_fake += in_real_ball.sum(axis=0)
        real_covered[rows] = in_real_ball.any(axis=1)
        real_in_fake[rows] = (d2 < fake_r2[None, :]).any(axis=1)

    return {
        "precision": float(np.mean(balls_per_fake > 0)),
        "recall": float(np.mean(real_in_fake)),
        "density": float(balls_per_fake.sum() / (k * fake.shape[0])),
        "coverage": float(np.mean(real_covered)),
    }
