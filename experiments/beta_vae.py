"""β-VAE (Higgins et al. 2017) with KL warm-up: the conv VAE with the KL term weighted by β=4.

    python -m experiments.beta_vae --workdir=runs/beta_vae
    python -m experiments.beta_vae --workdir=/tmp/t --config=experiments/beta_vae.py:tiny

β > 1 trades reconstruction for a more factorised latent code (see the latent traversal grid
in W/figures); model.kl_warmup_steps ramps the weight linearly from 0 to β. The reported
elbo is always the plain (β = 1) bound. Presets: mlp, tiny.
"""

from __future__ import annotations

from experiments import vae
from genimg import cli
from genimg.train import config as config_lib


def get_config(arg: str | None = None):
    config = vae.vae_config()
    config.model.update(beta=4.0, kl_warmup_steps=2000, latent_dim=10)
    return config_lib.apply_presets(config, arg, {"mlp": mlp, "tiny": tiny})


def mlp(config) -> None:
    vae.mlp(config)
    config.model.latent_dim = 10


def tiny(config) -> None:
    vae.tiny(config)
    config.model.kl_warmup_steps = 2


if __name__ == "__main__":
    cli.experiment(__file__, vae.main, __doc__)
