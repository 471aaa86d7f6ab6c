"""Variational autoencoders (Kingma & Welling 2014), optionally conditional (Sohn et al. 2015).

The encoder outputs ``[B, 2 * latent_dim]``, split into the mean and log-variance of a diagonal
Gaussian ``q(z | x)``; the decoder maps ``z`` to the raw parameters of ``p(x | z)`` (see
``genimg.losses.log_likelihood``: the likelihood is a config choice, only the number of
output channels changes). The trunks come from ``genimg.models.autoencoder``; at 28x28x1 with
``latent_dim=16`` the conv VAE is exactly the benchmark's "convvae" (``benchmarks/torch_peer.py``).

For a conditional VAE (``num_classes > 0``) the label is one-hot encoded (or embedded when
``label_embed_dim > 0``) and joined to the encoder's flattened features and to ``z``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genimg import losses
from genimg.models.autoencoder import make_trunks

Array = jax.Array


class VAE(nn.Module):
    """``encode(x) -> (mean, logvar)``, ``decode(z) -> likelihood parameters``."""

    encoder: nn.Module  # images [, cond] -> [B, 2 * latent_dim]
    decoder: nn.Module  # [B, latent_dim (+ cond)] -> [B, H, W, C']
    latent_dim: int
    num_classes: int = 0  # > 0: conditional VAE; labels are int32 [B]
    label_embed_dim: int = 0  # 0: one-hot labels; > 0: a learned embedding of this size

    def setup(self):
        if self.num_classes > 0 and self.label_embed_dim > 0:
            self.label_embed = nn.Embed(self.num_classes, self.label_embed_dim)

    def _cond(self, labels):
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("labels given to an unconditional VAE (num_classes=0)")
            return None
        if labels is None:
            raise ValueError(f"a conditional VAE ({self.num_classes} classes) needs labels")
        if self.label_embed_dim > 0:
            return self.label_embed(labels)
        return jax.nn.one_hot(labels, self.num_classes)

    def encode(self, x, labels=None, train: bool = False) -> tuple[Array, Array]:
        """``x [B, H, W, C]`` -> (mean, logvar), each ``[B, latent_dim]``."""
        h = self.encoder(x, cond=self._cond(labels), train=train)
        mean, logvar = jnp.split(h, 2, axis=-1)
        return mean, logvar

    def decode(self, z, labels=None, train: bool = False) -> Array:
        """``z [B, latent_dim]`` -> likelihood parameters ``[B, H, W, C']``."""
        cond = self._cond(labels)
        if cond is not None:
            z = jnp.concatenate([z, cond], axis=-1)
        return self.decoder(z, train=train)

    def __call__(self, x, rng, labels=None, train: bool = False):
        """One reparameterised pass: (decoder output, mean, logvar)."""
        mean, logvar = self.encode(x, labels, train=train)
        z = losses.sample_gaussian(rng, mean, logvar)
        return self.decode(z, labels, train=train), mean, logvar


def make_vae(
    arch: str,
    image_shape: Sequence[int],
    latent_dim: int,
    out_channels: int,
    *,
    num_classes: int = 0,
    label_embed_dim: int = 0,
    **trunk_kwargs,
) -> VAE:
    """A VAE with "conv" or "mlp" trunks; ``trunk_kwargs`` go to ``make_trunks``."""
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    encoder, decoder = make_trunks(arch, image_shape, 2 * latent_dim, out_channels, **trunk_kwargs)
    return VAE(encoder, decoder, latent_dim, num_classes, label_embed_dim)
