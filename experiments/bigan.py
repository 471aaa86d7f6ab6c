"""BiGAN (Donahue et al. 2017) on Fashion-MNIST: an encoder learned adversarially with a
DCGAN generator, against a discriminator of (image, code) pairs.

    python -m experiments.bigan --workdir=runs/bigan
    python -m experiments.bigan --workdir=/tmp/t --config=experiments/bigan.py:tiny
    python -m genimg.evaluate --workdir=runs/bigan --metrics=recon,probe,probe_d
    python -m genimg.evaluate --workdir=runs/bigan --metrics=probe --untrained

E, G and D as in genimg.families.bigan; the losses, spectral norm, dropout, TTUR, n_critic and
the EMA are the DCGAN's options (--config.model.loss=hinge --config.model.spectral_norm=True
--config.optim.d_lr=4e-4 ...). Presets: tiny (seconds, on the 8x8 digits). Measured probe
accuracies and reconstructions: see the README.
"""

from __future__ import annotations

from genimg import cli, evaluate
from genimg.families import bigan
from genimg.train import config as config_lib
from genimg.train.loop import train_from_config


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "bigan",
        data=config_lib.data_block(),
        model=bigan.model_config(),
        optim=bigan.optim_config(),
        train=config_lib.train_block(steps=1500, log_every=100, keep_checkpoints=2),
        eval=config_lib.eval_block(batch_size=500),
    )
    return config_lib.apply_presets(config, arg, {"tiny": tiny})


def tiny(config) -> None:
    config.data.source = "digits"
    bigan.tiny(config)
    config_lib.tiny_train(config)


def main(config, workdir) -> None:
    """Train (resuming if ``workdir`` has checkpoints), then write the figure grids."""
    train_from_config(config, workdir)
    evaluate.run(workdir, ["figures"], num_images=10)


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)
