"""β-VAE (Higgins et al. 2017) with KL warm-up: the conv VAE with the KL term weighted by β=4.

    python -m experiments.beta_vae --workdir=runs/beta_vae
    python -m experiments.beta_vae --workdir=/tmp/t --config=experiments/beta_vae.py:tiny

β > 1 trades reconstruction for a more factorised latent code (see the latent traversal grid
in ``figures/``); ``model.kl_warmup_steps`` ramps the weight linearly from 0 to β. The
reported ``elbo`` is always the plain (β = 1) bound.
"""

from __future__ import annotations

import ml_collections

from experiments import vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``arg``: None / "conv", "mlp", "tiny" or "mlp_tiny"."""
    config = vae.get_config(arg)
    config.model.beta = 4.0
    config.model.kl_warmup_steps = 2000 if not (arg and "tiny" in arg) else 2
    config.model.latent_dim = 10 if not (arg and "tiny" in arg) else config.model.latent_dim
    return config


if __name__ == "__main__":
    from experiments import common

    common.cli(__file__, vae.main)
