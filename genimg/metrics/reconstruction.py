"""Reconstruction quality: MSE, PSNR and SSIM (dm-pix) of images in [0, 1].

Scores are per image and then averaged over the test set (PSNR is the mean of per-image PSNRs,
the usual convention; an exact reconstruction has infinite PSNR). SSIM is dm-pix's: Gaussian
window 11, sigma 1.5, k1 = 0.01, k2 = 0.03, ``max_val=1``, averaged over the map and channels.
For a denoising autoencoder the input is corrupted and the score compares the output with the
clean image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
SCORES = ("mse", "psnr", "ssim")


def reconstruction_scores(target: Array, recon: Array) -> dict[str, Array]:
    """Per-image ``mse``, ``psnr`` (dB) and ``ssim`` of ``[B, H, W, C]`` images in [0, 1]."""
    if target.shape != recon.shape or target.ndim != 4:
        raise ValueError(
            f"expected two [B, H, W, C] batches of the same shape, got {target.shape} "
            f"and {recon.shape}"
        )
    target = jnp.asarray(target, jnp.float32)
    recon = jnp.asarray(recon, jnp.float32)
    return {
        "mse": jnp.mean(jnp.square(target - recon), axis=(1, 2, 3)),
        "psnr": dm_pix.psnr(target, recon),
        "ssim": dm_pix.ssim(target, recon, max_val=1.0),
    }


def evaluate_reconstruction(
    reconstruct_fn: Callable[[Array], Array],
    batches: Iterable,
    corrupt_fn: Callable[[Array, Array], Array] | None = None,
    rng: Array | None = None,
) -> dict:
    """Mean MSE / PSNR / SSIM of ``reconstruct_fn`` over batches of clean images in [0, 1].

    Args:
      reconstruct_fn: images ``[B, H, W, C]`` in [0, 1] -> reconstructions in [0, 1].
      batches: iterable of clean image batches, or of tuples ``(x, *extra)`` whose ``extra``
        (e.g. labels) is passed on: ``reconstruct_fn(x_in, *extra)``.
      corrupt_fn: optional ``(rng, x) -> x_tilde``; the model then sees ``x_tilde`` and is
        scored against ``x`` (denoising). Batch ``i`` uses ``fold_in(rng, i)``.
      rng: key for ``corrupt_fn``.
    """
    if corrupt_fn is not None and rng is None:
        raise ValueError("evaluate_reconstruction needs an rng when corrupt_fn is given")
    scores = {name: [] for name in SCORES}
    for i, batch in enumerate(batches):
        x, *extra = batch if isinstance(batch, tuple) else (batch,)
        x = jnp.asarray(x, jnp.float32)
        x_in = x if corrupt_fn is None else corrupt_fn(jax.random.fold_in(rng, i), x)
        for name, value in reconstruction_scores(x, reconstruct_fn(x_in, *extra)).items():
            scores[name].append(np.asarray(value, np.float64))
    if not scores["mse"]:
        raise ValueError("evaluate_reconstruction got no batches")
    out = {name: float(np.concatenate(v).mean()) for name, v in scores.items()}
    out["num_images"] = int(sum(len(v) for v in scores["mse"]))
    return out


def hole_scores(target, filled, mask) -> dict[str, np.ndarray]:
    """Per-image scores of an inpainting on the hidden region only: ``mse`` and ``psnr`` (dB)
    over the hidden pixels, and ``ssim``, the mean of dm-pix's SSIM map (as above, valid
    windows) over the windows centred on a hidden pixel. An image whose hole holds no window
    centre (a hole along the border only) gets NaN SSIM; an image without a hole gets NaN for
    all three. Inputs: ``[N, H, W, C]`` in [0, 1] and the bool mask ``[N, H, W, 1]``, True
    where hidden."""
    target = jnp.asarray(target, jnp.float32)
    filled = jnp.asarray(filled, jnp.float32)
    if target.shape != filled.shape or target.ndim != 4:
        raise ValueError(f"expected two [N, H, W, C] arrays, got {target.shape}, {filled.shape}")
    hidden = jnp.broadcast_to(jnp.asarray(mask, bool), target.shape).astype(jnp.float32)
    count = jnp.sum(hidden, axis=(1, 2, 3))
    mse = jnp.sum(hidden * jnp.square(target - filled), axis=(1, 2, 3)) / count
    ssim_map = dm_pix.ssim(target, filled, max_val=1.0, return_map=True)  # [N, H-10, W-10, C]
    off_h = (target.shape[1] - ssim_map.shape[1]) // 2
    off_w = (target.shape[2] - ssim_map.shape[2]) // 2
    centres = hidden[:, off_h : off_h + ssim_map.shape[1], off_w : off_w + ssim_map.shape[2]]
    ssim = jnp.sum(centres * ssim_map, axis=(1, 2, 3)) / jnp.sum(centres, axis=(1, 2, 3))
    return {
        "mse": np.asarray(mse, np.float64),
        "psnr": np.asarray(-10.0 * jnp.log10(mse), np.float64),
        "ssim": np.asarray(ssim, np.float64),
    }
