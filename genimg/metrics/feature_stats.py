"""Streaming mean / covariance of feature vectors, in float64 on the host.

FID needs the mean and covariance of ~50k Inception features; KID and precision/recall need the
features themselves. `FeatureStats` accumulates both from batches as they leave the extractor,
so the evaluator makes a single pass over the data.

The moments are merged with the pairwise update of Chan, Golub & LeVeque (1979), "Updating
formulae and a pairwise algorithm for computing sample variances": each batch contributes its
own mean and centred scatter matrix, so there is no large-mean cancellation as with raw sums of
outer products, and two accumulators (e.g. from two hosts) merge exactly.
"""

from __future__ import annotations

import numpy as np


def _as_feature_batch(x, dim: int | None) -> np.ndarray:
    """Checks a [N, D] batch of finite features and returns it as float64."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D [N, D] array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"feature dimension {x.shape[1]} does not match earlier batches ({dim})")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"features must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or Inf")
    return x


class FeatureStats:
    """Accumulates count, mean and scatter matrix of [N, D] feature batches (float64).

    Usage::

        stats = FeatureStats(keep_features=True)
        for batch in batches:
            stats.update(extract(batch))            # [B, D]
        mu, sigma = stats.mean, stats.cov           # [D], [D, D] float64
        feats = stats.features                      # [N, D] float32, for KID / PRDC

    Attributes:
      n: number of feature vectors seen.
      dim: feature dimension D (None before the first non-empty batch).
      keep_features: whether the raw features are kept (as float32) for `features`.
    """

    def __init__(self, keep_features: bool = False):
        self.keep_features = keep_features
        self.n = 0
        self.dim: int | None = None
        self._mean: np.ndarray | None = None  # [D] float64
        self._scatter: np.ndarray | None = None  # [D, D] sum of centred outer products
        self._chunks: list[np.ndarray] = []  # float32 copies, only when keep_features

    def update(self, batch_features) -> FeatureStats:
        """Adds a [B, D] batch of features (any real dtype). Returns self for chaining."""
        x = _as_feature_batch(batch_features, self.dim)
        if x.shape[0] == 0:
            return self
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        self._combine(x.shape[0], batch_mean, centred.T @ centred)
        if self.keep_features:
            self._chunks.append(np.asarray(batch_features, np.float32))
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Adds everything `other` has seen to self (exact; order-independent up to rounding)."""
        if not isinstance(other, FeatureStats):
            raise TypeError(f"can only merge a FeatureStats, got {type(other).__name__}")
        if self.keep_features != other.keep_features:
            raise ValueError("cannot merge FeatureStats with different keep_features settings")
        if other.n == 0:
            return self
        if self.dim is not None and other.dim != self.dim:
            raise ValueError(f"cannot merge feature dimension {other.dim} into {self.dim}")
        self._combine(other.n, other._mean, other._scatter)
        self._chunks.extend(other._chunks)
        return self

    def _combine(self, n_b: int, mean_b: np.ndarray, scatter_b: np.ndarray) -> None:
        """Chan et al. pairwise update of (n, mean, scatter) with another partial result."""
        if self.n == 0:
            self.n, self.dim = n_b, mean_b.shape[0]
            self._mean, self._scatter = mean_b.copy(), scatter_b.copy()
            return
        n = self.n + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._scatter = self._scatter + scatter_b + np.outer(delta, delta) * (self.n * n_b / n)
        self.n = n

    @property
    def mean(self) -> np.ndarray:
        """[D] float64 sample mean."""
        if self.n == 0:
            raise ValueError("FeatureStats is empty: call update() with some features first")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """[D, D] float64 unbiased sample covariance (ddof=1, as `np.cov(x, rowvar=False)`)."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 feature vectors, have {self.n}")
        return self._scatter / (self.n - 1)

    @property
    def features(self) -> np.ndarray:
        """[N, D] float32 copy of every feature seen, in update order (needs keep_features)."""
        if not self.keep_features:
            raise ValueError("features were not kept: construct FeatureStats(keep_features=True)")
        if not self._chunks:
            return np.zeros((0, self.dim or 0), np.float32)
        return np.concatenate(self._chunks, axis=0)

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim}, keep_features={self.keep_features})"
