"""Denoising conv autoencoder on Fashion-MNIST: Gaussian noise (std 0.3, clipped) in, clean out.

    python -m experiments.denoising_ae --workdir=runs/dae
    python -m experiments.denoising_ae --workdir=runs/dae_mask \
        --config.corruption.kind=block_mask --config.corruption.block_size=12
    python -m genimg.evaluate --workdir=runs/dae --metrics=recon

Corruptions (config.corruption.kind): gaussian, salt_and_pepper, pixel_mask, block_mask; the
evaluator scores the output on corrupted test images against the clean ones. Presets: mlp,
tiny. Measured numbers: see the README's results table.
"""

from __future__ import annotations

from experiments import autoencoder, vae
from genimg import cli
from genimg.train import config as config_lib


def get_config(arg: str | None = None):
    return config_lib.apply_presets(autoencoder.ae_config(denoising=True), arg, autoencoder.PRESETS)


if __name__ == "__main__":
    cli.experiment(__file__, vae.main, __doc__)
