"""Deterministic conv autoencoder on Fashion-MNIST (continuous pixels, MSE).

    python -m experiments.autoencoder --workdir=runs/ae
    python -m experiments.autoencoder --workdir=/tmp/t --config=experiments/autoencoder.py:tiny
    python -m genimg.evaluate --workdir=runs/ae --metrics=recon

--config.model.loss=bce trains on logits with cross-entropy instead. Presets: mlp, tiny.
Measured MSE / PSNR / SSIM: see the README's results table.
"""

from __future__ import annotations

from experiments import vae
from genimg import cli
from genimg.families import autoencoder, common
from genimg.train import config as config_lib


def ae_config(denoising: bool = False):
    """The config of this experiment and of ``denoising_ae``, no presets."""
    blocks = dict(
        data=config_lib.data_block(),
        model=autoencoder.model_config("conv"),
        optim=common.adam_config(1e-3),
        train=config_lib.train_block(
            steps=9380,  # 10 epochs of 60k images at batch 64
            log_every=100,
            checkpoint_every=2000,
            keep_checkpoints=2,
            sample_every=0,  # an autoencoder does not sample
        ),
        eval=config_lib.eval_block(batch_size=20),
    )
    if denoising:
        blocks["corruption"] = autoencoder.corruption_config("gaussian")
    return config_lib.experiment_config("dae" if denoising else "ae", **blocks)


def tiny(config) -> None:
    config.data.source = "digits"  # 8x8, embedded in scikit-learn: no files needed
    autoencoder.tiny(config)
    config_lib.tiny_train(config)


PRESETS = {"mlp": vae.mlp, "tiny": tiny}


def get_config(arg: str | None = None):
    return config_lib.apply_presets(ae_config(), arg, PRESETS)


if __name__ == "__main__":
    cli.experiment(__file__, vae.main, __doc__)
