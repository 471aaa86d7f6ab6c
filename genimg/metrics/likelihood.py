"""Log-likelihood of a VAE: the ELBO and the importance-weighted bound (Burda et al. 2016).

With ``k`` samples ``z_i ~ q(z | x)`` and log-weights
``log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x)``:

    ELBO    = mean_i log w_i                       (Monte-Carlo estimate of the bound)
    IWAE_k  = logsumexp_i log w_i - log k          <= log p(x), non-decreasing in k

so ``IWAE_1 == ELBO`` for the same sample and ``-IWAE_k`` is the reported test NLL. The ``k``
samples are drawn in chunks of ``chunk_size`` under ``lax.map`` so that memory stays bounded
(one chunk of decoder activations at a time); only the ``[k, B]`` log-weights are kept, and the
log-sum-exp subtracts the per-example maximum, so float32 is enough even for k = 5000.

The model enters through two functions, so this module never imports models:
``encode_fn(x) -> (mean, logvar)`` and ``log_lik_fn(z [c, B, L], x [B, ...]) -> [c, B]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genimg import losses

Array = jax.Array
EncodeFn = Callable[[Array], tuple[Array, Array]]
LogLikFn = Callable[[Array, Array], Array]


def log_importance_weights(
    encode_fn: EncodeFn,
    log_lik_fn: LogLikFn,
    x: Array,
    rng: Array,
    num_samples: int,
    chunk_size: int = 100,
    extra: tuple = (),
) -> Array:
    """``[k, B]`` log-weights ``log p(x, z_i) - log q(z_i | x)``, ``z_i ~ q(z | x)``.

    Chunk ``j`` draws its noise as ``normal(fold_in(rng, j), [chunk_size, B, L])``; the samples
    past ``k`` in the last chunk are dropped. ``extra`` (e.g. labels of a conditional model)
    is passed on: ``encode_fn(x, *extra)``, ``log_lik_fn(z, x, *extra)``.
    """
    if num_samples < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {num_samples}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk = min(chunk_size, num_samples)
    num_chunks = math.ceil(num_samples / chunk)
    mean, logvar = encode_fn(x, *extra)  # [B, L] each

    def chunk_log_weights(j):
        z = losses.sample_gaussian(jax.random.fold_in(rng, j), mean, logvar, chunk)  # [c, B, L]
        log_prior = losses.diag_gaussian_log_density(z)
        log_q = losses.diag_gaussian_log_density(z, mean, logvar)
        return log_lik_fn(z, x, *extra) + log_prior - log_q  # [c, B]

    log_w = jax.lax.map(chunk_log_weights, jnp.arange(num_chunks))  # [n, c, B]
    return log_w.reshape(num_chunks * chunk, -1)[:num_samples]


def iwae_bound(log_w: Array) -> Array:
    """``logsumexp_i log w_i - log k`` per example: ``[k, B] -> [B]``."""
    return jax.nn.logsumexp(log_w, axis=0) - jnp.log(log_w.shape[0])


def elbo_estimate(log_w: Array) -> Array:
    """``mean_i log w_i`` per example: ``[k, B] -> [B]``."""
    return jnp.mean(log_w, axis=0)


def bits_per_dim(nll_nats, num_dims: int, num_bins: int | None = None):
    """Converts a per-example NLL in nats to bits per dimension.

    For a discrete likelihood (Bernoulli) leave ``num_bins`` unset. For a density on pixels
    scaled to [0, 1], ``num_bins=256`` gives the usual figure for 8-bit data, adding
    ``log(256)`` nats per dimension (the change of scale to [0, 256)); it is an exact
    discrete NLL only for uniformly dequantised data.
    """
    if num_dims < 1:
        raise ValueError(f"num_dims must be >= 1, got {num_dims}")
    nll = nll_nats + (num_dims * math.log(num_bins) if num_bins else 0.0)
    return nll / (num_dims * math.log(2.0))


def evaluate_nll(
    encode_fn: EncodeFn,
    log_lik_fn: LogLikFn,
    batches,
    rng: Array,
    num_samples: int,
    chunk_size: int = 100,
    num_bins: int | None = None,
) -> dict:
    """Test-set ELBO and IWAE NLL over an iterable of image batches ``[B, H, W, C]``.

    A batch may also be a tuple ``(x, *extra)``; ``extra`` goes to the model functions (labels
    of a conditional VAE, whose NLL is then ``-log p(x | y)``). Batches may be ragged (a
    smaller last batch costs one extra compilation). Batch ``i`` uses ``fold_in(rng, i)``.

    Returns:
      ``elbo`` (mean bound, nats, <= 0 for discrete data), ``nll_iwae`` (mean ``-IWAE_k``,
      nats), ``k``, ``bits_per_dim`` (of ``nll_iwae``), ``num_images``.
    """

    @jax.jit
    def batch_bounds(x, key, extra):
        log_w = log_importance_weights(
            encode_fn, log_lik_fn, x, key, num_samples, chunk_size, extra
        )
        return elbo_estimate(log_w), iwae_bound(log_w)

    elbos, iwaes, dims = [], [], None
    for i, batch in enumerate(batches):
        x, *extra = batch if isinstance(batch, tuple) else (batch,)
        x = jnp.asarray(x, jnp.float32)
        dims = math.prod(x.shape[1:])
        elbo, iwae = batch_bounds(x, jax.random.fold_in(rng, i), tuple(extra))
        elbos.append(np.asarray(elbo, np.float64))
        iwaes.append(np.asarray(iwae, np.float64))
    if not elbos:
        raise ValueError("evaluate_nll got no batches")
    elbo, iwae = np.concatenate(elbos), np.concatenate(iwaes)
    if not (np.isfinite(elbo).all() and np.isfinite(iwae).all()):
        raise FloatingPointError("non-finite ELBO or IWAE bound in evaluation")
    nll = float(-iwae.mean())
    return {
        "elbo": float(elbo.mean()),
        "nll_iwae": nll,
        "k": int(num_samples),
        "bits_per_dim": float(bits_per_dim(nll, dims, num_bins)),
        "num_images": int(elbo.size),
    }
