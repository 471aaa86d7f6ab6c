"""Variational autoencoders (Kingma & Welling 2014), optionally conditional (Sohn et al. 2015).

The encoder outputs ``[B, 2 * latent_dim]``, split into the mean and log-variance of a diagonal
Gaussian ``q(z | x)``; the decoder maps ``z`` to the raw parameters of ``p(x | z)`` (see
``genimg.losses.log_likelihood``: the likelihood is a config choice, only the number of
output channels changes). The trunks come from ``genimg.models.autoencoder``; at 28x28x1 with
``latent_dim=16`` the conv VAE is exactly the benchmark's "convvae" (``benchmarks/torch_peer.py``).

For a conditional VAE (``num_classes > 0``) the label is one-hot encoded (or embedded when
``label_embed_dim > 0``) and joined to the encoder's flattened features and to ``z``. It may
also carry an auxiliary classifier of images (``classify``), the judge of the class term of
``genimg.families.vae.make_vae_train_step`` (the classifier loss of Bao et al. 2017's CVAE-GAN).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genimg import losses
from genimg.models.autoencoder import make_trunks
from genimg.models.classifier import ConvClassifier

Array = jax.Array


class VAE(nn.Module):
    """``encode(x) -> (mean, logvar)``, ``decode(z) -> likelihood parameters``."""

    encoder: nn.Module  # images [, cond] -> [B, 2 * latent_dim]
    decoder: nn.Module  # [B, latent_dim (+ cond)] -> [B, H, W, C']
    latent_dim: int
    num_classes: int = 0  # > 0: conditional VAE; labels are int32 [B]
    label_embed_dim: int = 0  # 0: one-hot labels; > 0: a learned embedding of this size
    aux_classifier: nn.Module | None = None  # images -> (features, logits [B, num_classes])

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

    def classify(self, x) -> Array:
        """Class logits ``[B, num_classes]`` of images ``x`` (pixels in [0, 1]) from the
        auxiliary classifier."""
        if self.aux_classifier is None:
            raise ValueError("this VAE has no auxiliary classifier (aux_classifier=None)")
        return self.aux_classifier(x)[1]

    def __call__(self, x, rng, labels=None, train: bool = False):
        """One reparameterised pass: (decoder output, mean, logvar)."""
        if self.aux_classifier is not None and self.is_initializing():
            self.classify(x)  # creates its parameters
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
    aux_classifier_widths: Sequence[int] = (),
    **trunk_kwargs,
) -> VAE:
    """A VAE with "conv" or "mlp" trunks; ``trunk_kwargs`` go to ``make_trunks``.

    ``aux_classifier_widths`` non-empty (needs ``num_classes``) adds a small `ConvClassifier`
    (one conv per stage, no batch norm or dropout, 128 features) for ``VAE.classify``.
    """
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    encoder, decoder = make_trunks(arch, image_shape, 2 * latent_dim, out_channels, **trunk_kwargs)
    aux = None
    if aux_classifier_widths:
        if num_classes < 1:
            raise ValueError("an auxiliary classifier needs a conditional VAE (num_classes > 0)")
        aux = ConvClassifier(
            num_classes,
            widths=tuple(aux_classifier_widths),
            convs_per_stage=1,
            feature_dim=128,
            dropout=0.0,
            norm="none",
        )
    return VAE(encoder, decoder, latent_dim, num_classes, label_embed_dim, aux)
