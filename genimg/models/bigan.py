"""BiGAN / ALI networks (Donahue et al. 2017; Dumoulin et al. 2017): an encoder E(x) -> z and
a joint discriminator D(x, z); the generator G(z) -> x is the DCGAN's
(`genimg.models.gan.DCGANGenerator`).

`ConvEncoder`: stride-2 5x5 convs (``width * 2**i`` channels) with LeakyReLU(0.2) down to
<= 7 px, as the DCGAN discriminator, then a dense layer to ``z_dim`` (linear: a deterministic
encoder, as BiGAN's).

`JointDiscriminator`: the image path is the same conv stack (flattened), the latent path a
dense layer, both LeakyReLU(0.2); their concatenation goes through ``hidden`` dense units
(LeakyReLU: the "penultimate features", returned with ``features_only=True``) to one logit.
Optional dropout after every activation and spectral normalisation of every layer (its
power-iteration vectors live in ``batch_stats``), as for the DCGAN discriminator.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from genimg.models.gan import dcgan_num_stages


def _conv_stack(x, width: int, kernel_size: int, layer, post):
    n_down, _ = dcgan_num_stages(x.shape[1])
    p = (kernel_size - 1) // 2
    for i in range(n_down):
        conv = nn.Conv(
            width * 2**i, (kernel_size, kernel_size), strides=(2, 2), padding=((p, p), (p, p))
        )
        x = post(layer(conv, x))
    return x.reshape((x.shape[0], -1))


class ConvEncoder(nn.Module):
    """Images ``[B, H, W, C]`` in [-1, 1] -> codes ``[B, z_dim]``."""

    z_dim: int
    width: int = 64
    kernel_size: int = 5

    @nn.compact
    def __call__(self, x, train: bool = True):
        del train
        h = _conv_stack(
            x,
            self.width,
            self.kernel_size,
            lambda module, h: module(h),
            lambda h: nn.leaky_relu(h, 0.2),
        )
        return nn.Dense(self.z_dim)(h)


class JointDiscriminator(nn.Module):
    """``(images [B, H, W, C], codes [B, z_dim])`` -> logits ``[B]`` (``features``: the
    penultimate activations ``[B, hidden]``)."""

    width: int = 64
    kernel_size: int = 5
    hidden: int = 512  # units of the z path and of the joint layer
    dropout: float = 0.0
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, z, train: bool = True, features_only: bool = False):
        def layer(module, h):
            if self.spectral_norm:
                return nn.SpectralNorm(module)(h, update_stats=train)
            return module(h)

        def post(h):
            h = nn.leaky_relu(h, 0.2)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            return h

        hx = _conv_stack(x, self.width, self.kernel_size, layer, post)  # [B, F]
        hz = post(layer(nn.Dense(self.hidden), z))  # [B, hidden]
        h = post(layer(nn.Dense(self.hidden), jnp.concatenate([hx, hz], axis=-1)))
        if features_only:
            return h  # [B, hidden]
        return layer(nn.Dense(1), h)[:, 0]
