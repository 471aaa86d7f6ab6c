"""Deterministic conv autoencoder on Fashion-MNIST (continuous pixels, MSE).

    python -m experiments.autoencoder --workdir=runs/ae
    python -m experiments.autoencoder --workdir=/tmp/t --config=experiments/autoencoder.py:tiny
    python -m genimg.evaluate --workdir=runs/ae --metrics=recon

Presets: "conv" (default), "mlp", "tiny". ``--config.model.loss=bce`` trains on logits with
cross-entropy instead.

Result (continuous Fashion-MNIST, 3000 steps = 3.2 epochs at batch 64 via
``--config.train.steps=3000``, 657 s on a shared, heavily loaded 2-core CPU): all 10000 test
images, MSE 0.0130, PSNR 19.64 dB, SSIM 0.638.
"""

from __future__ import annotations

import ml_collections

from experiments import vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``arg``: None / "conv", "mlp", "tiny" or "mlp_tiny"."""
    config = vae.get_config(arg)
    config.model.family = "ae"
    config.data.binarize = "none"  # used by VAEs only
    config.model.loss = "mse"  # "mse" on the image | "bce" on logits
    config.corruption = ml_collections.ConfigDict()  # used by the denoising AE only
    config.corruption.kind = "none"  # see genimg.corruptions.CORRUPTIONS
    config.corruption.noise_std = 0.3  # "gaussian"
    config.corruption.clip = True  # "gaussian": clip the noisy image to [0, 1]
    config.corruption.fraction = 0.25  # "salt_and_pepper", "pixel_mask"
    config.corruption.block_size = 12  # "block_mask", pixels
    if arg and "tiny" in arg:
        config.corruption.block_size = 3
    return config


if __name__ == "__main__":
    from experiments import common

    common.cli(__file__, vae.main)
