"""Inception Score (IS).

Salimans et al. (2016), "Improved Techniques for Training GANs",
https://arxiv.org/abs/1606.03498: IS = exp(E_x KL(p(y|x) || p(y))), computed on `splits` equal
consecutive chunks of the samples, reported as mean and std over chunks.

The usual network is the TF-slim Inception-v3 ported by pytorch-fid / torch-fidelity, whose
classifier has 1008 outputs (ImageNet's 1000 classes plus 8 unused); torch-fidelity's
`logits_unbiased` head feeds those 1008 logits straight into the softmax here, and this function
accepts that directly. Chunking follows torch-fidelity (chunk i is rows [i N // s, (i+1) N // s)),
std is ddof=0. torch-fidelity shuffles the rows first; pass `shuffle_seed` to do the same.
"""

from __future__ import annotations

import numpy as np
import scipy.special

# Tolerance for rows of `probs` summing to 1 when from_logits=False.
_PROB_SUM_ATOL = 1e-3


def _class_probabilities(x, from_logits: bool) -> np.ndarray:
    """[N, C] float64 class probabilities from logits (softmax) or already-normalised probs."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"expected [N, C] logits or probabilities with C >= 2, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("logits / probabilities contain NaN or Inf")
    if from_logits:
        return scipy.special.softmax(x, axis=1)
    if (x < 0).any() or not np.allclose(x.sum(axis=1), 1.0, atol=_PROB_SUM_ATOL):
        raise ValueError("from_logits=False needs non-negative rows that sum to 1")
    return x / x.sum(axis=1, keepdims=True)


def inception_score(
    logits_or_probs,
    splits: int = 10,
    from_logits: bool = True,
    shuffle_seed: int | None = None,
) -> tuple[float, float]:
    """Inception Score of classifier outputs for N generated images.

    Args:
      logits_or_probs: [N, C] classifier logits (default; e.g. the 1008-way Inception logits) or,
        with from_logits=False, class probabilities.
      splits: number of equal chunks the score is computed on (10 in Salimans et al.).
      from_logits: whether the input is logits (softmax applied here, in float64).
      shuffle_seed: if given, rows are permuted with this seed before chunking (torch-fidelity).

    Returns:
      (mean, std) of exp(mean_x KL(p(y|x) || p(y))) over chunks, p(y) the chunk's mean
      prediction. Ranges from 1 (every prediction equal) to C (confident and evenly spread).
    """
    p = _class_probabilities(logits_or_probs, from_logits)
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in [1, N={n}], got {splits}")
    if shuffle_seed is not None:
        p = p[np.random.default_rng(shuffle_seed).permutation(n)]
    scores = []
    for i in range(splits):
        chunk = p[i * n // splits : (i + 1) * n // splits]  # [n_i, C]
        marginal = chunk.mean(axis=0, keepdims=True)  # [1, C]
        # rel_entr(p, q) = p log(p / q) with 0 log 0 = 0, so one-hot rows are fine.
        kl = scipy.special.rel_entr(chunk, marginal).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    scores = np.asarray(scores)
    return float(scores.mean()), float(scores.std())
