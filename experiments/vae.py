"""Conv VAE on dynamically binarised Fashion-MNIST (Bernoulli pixels, analytic KL).

    python -m experiments.vae --workdir=runs/vae
    python -m experiments.vae --workdir=runs/vae_mlp --config=experiments/vae.py:mlp
    python -m experiments.vae --workdir=/tmp/t --config=experiments/vae.py:tiny
    python -m genimg.evaluate --workdir=runs/vae --metrics=nll,recon --k=5000

Presets: mlp (784-500-20-500-784 as in the Flax VAE example), tiny (seconds on a CPU); they
combine: :mlp,tiny. The default conv VAE (latent 16) is the benchmarks' "convvae". After
training, figure grids (reconstructions, prior samples, a latent traversal) go to W/figures.
Measured ELBO and NLL: see the README's results table.

Binarised MNIST, the literature's setting (VAE ~87-90 nats, IWAE-50 ~85, with larger latents
and models): --config.data.source=mnist (or idx:DIR with the IDX files), then the same
evaluate command.
"""

from __future__ import annotations

from genimg import cli, evaluate
from genimg.families import common, vae
from genimg.train import config as config_lib
from genimg.train.loop import train_from_config


def vae_config(conditional: bool = False):
    """The config of this experiment and of its variants (``beta_vae``, ``cvae``), no presets."""
    config = config_lib.experiment_config(
        "cvae" if conditional else "vae",
        data=config_lib.data_block(binarize="dynamic"),  # "none" | "static" | "dynamic"
        model=vae.model_config("conv", conditional),
        optim=common.adam_config(1e-3),
        train=config_lib.train_block(
            steps=9380,  # 10 epochs of 60k images at batch 64
            log_every=100,
            checkpoint_every=2000,
            keep_checkpoints=2,
            sample_every=2000,
        ),
        eval=config_lib.eval_block(batch_size=20, **vae.eval_config()),
    )
    return config


PRESETS = {}  # filled below: name -> fn(config)


def mlp(config) -> None:
    common.mlp_trunk(config.model)
    config.model.latent_dim = 20


def tiny(config) -> None:
    config.data.source = "digits"  # 8x8, embedded in scikit-learn: no files needed
    vae.tiny(config)
    config_lib.tiny_train(config)


PRESETS.update(mlp=mlp, tiny=tiny)


def get_config(arg: str | None = None):
    return config_lib.apply_presets(vae_config(), arg, PRESETS)


def main(config, workdir) -> None:
    """Train (resuming if ``workdir`` has checkpoints), then write the figure grids."""
    train_from_config(config, workdir)
    evaluate.run(workdir, ["figures"], num_images=10)


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)
