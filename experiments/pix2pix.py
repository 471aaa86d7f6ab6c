"""pix2pix on Fashion-MNIST: semantic label map -> garment (or edge map -> garment).

    python -m experiments.pix2pix --workdir=runs/pix2pix_labelmap
    python -m experiments.pix2pix --workdir=runs/pix2pix_edges --config=experiments/pix2pix.py:edges
    python -m experiments.pix2pix --workdir=runs/unet_l1 --config=experiments/pix2pix.py:l1
    python -m experiments.pix2pix --workdir=/tmp/t --config=experiments/pix2pix.py:tiny
    python -m genimg.evaluate --workdir=runs/pix2pix_labelmap --metrics=translation,layout,fid \
        --extractor=domain:runs/classifier_fast

U-Net generator with dropout, 16 px PatchGAN on (input, output) pairs, GAN loss + 100 * L1,
Adam 2e-4 (beta1 0.5), as in Isola et al. 2017. The data are `paired:` sources (README, "Your
own data"): a side-by-side A|B folder (--config.data.source=paired:folder:DIR
--config.model.input_channels=3), an .npz of inputs and targets, or a layout transform of any
image set. Presets: edges (edge-map inputs), l1 (the L1-only U-Net: no discriminator), tiny
(seconds, on the 8x8 digits); they combine: :edges,l1. Translation grids (input | output |
truth) go to W/samples; measured scores: see the README.
"""

from __future__ import annotations

from genimg import cli, evaluate
from genimg.families import pix2pix
from genimg.train import config as config_lib
from genimg.train.loop import train_from_config


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "pix2pix",
        data=config_lib.data_block("paired:labelmap:fashion_mnist"),
        model=pix2pix.model_config(),
        optim=pix2pix.optim_config(),
        train=config_lib.train_block(
            steps=1000, log_every=100, checkpoint_every=500, keep_checkpoints=2, num_samples=16
        ),
        eval=config_lib.eval_block(batch_size=250),
    )
    return config_lib.apply_presets(config, arg, PRESETS)


def edges(config) -> None:
    """Edge-map inputs (one channel) instead of label maps."""
    config.data.source = config.data.source.replace("paired:labelmap:", "paired:edges:")
    config.model.input_channels = 1


def l1(config) -> None:
    """The regression baseline: the same U-Net trained on L1 alone."""
    config.model.gan_weight = 0.0


def tiny(config) -> None:
    config.data.source = config.data.source.replace(":fashion_mnist", ":digits")
    pix2pix.tiny(config)
    config_lib.tiny_train(config)


PRESETS = {"edges": edges, "l1": l1, "tiny": tiny}


def main(config, workdir) -> None:
    """Train (resuming if ``workdir`` has checkpoints), then write the translation figure."""
    train_from_config(config, workdir)
    evaluate.run(workdir, ["figures"], num_images=12)


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)
