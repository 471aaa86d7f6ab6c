"""GAN generators and discriminators: the classic MLP GAN and a DCGAN for 28, 32 and 64 px.

Generators map ``z [B, z_dim]`` to images ``[B, H, W, C]`` (``tanh`` range [-1, 1] for DCGAN,
``sigmoid`` range [0, 1] for the MLP GAN); discriminators map images to one logit per image
``[B]``. ``train`` switches batch norm between batch statistics and running averages and
turns dropout on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from genimg.models.layers import ConvTranspose
from genimg.ops import onednn


class MLPGenerator(nn.Module):
    """The classic fully connected generator: z -> 256 -> 512 -> 1024 -> H*W*C, sigmoid."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    hidden: Sequence[int] = (256, 512, 1024)

    @nn.compact
    def __call__(self, z, train: bool = True):
        del train  # no batch norm or dropout: kept for a uniform generator interface
        x = z
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        x = nn.Dense(math.prod(self.image_shape))(x)
        return nn.sigmoid(x).reshape((z.shape[0],) + tuple(self.image_shape))


class MLPDiscriminator(nn.Module):
    """The classic fully connected discriminator: flatten -> 512 -> 256 -> 1 logit."""

    hidden: Sequence[int] = (512, 256)

    @nn.compact
    def __call__(self, x, train: bool = True):
        del train
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(1)(x)[:, 0]


def dcgan_num_stages(size: int) -> tuple[int, int]:
    """(number of 2x stages, base side) for a square image: 28 -> (2, 7), 32 -> (3, 4)."""
    n, base = 0, size
    while base % 2 == 0 and base > 7:
        base //= 2
        n += 1
    if n == 0 or base not in (4, 5, 6, 7):
        raise ValueError(
            f"DCGAN image size {size} is not supported; use a size base * 2**n with base in "
            "4..7 and n >= 1 (e.g. data.image_size=28, 32 or 64)"
        )
    return n, base


class DCGANGenerator(nn.Module):
    """Dense projection + batch-normalised (transposed) convolutions, tanh output.

    At 28x28x1 with ``width=64`` this is exactly the TensorFlow-tutorial DCGAN:
    Dense(7*7*256, no bias) BN ReLU -> ConvT5 s1 128 BN ReLU -> ConvT5 s2 64 BN ReLU -> ConvT5 s2 C.
    Larger images start from a 4x4 base and add one stride-2 stage per doubling.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    width: int = 64
    kernel_size: int = 5
    axis_name: str | None = None  # batch-norm statistics are averaged over this pmap axis
    upsample_impl: str = "auto"  # see layers.ConvTranspose
    conv_backend: str = "xla"  # "xla" | "onednn" | "auto"; see layers.ConvTranspose

    @nn.compact
    def __call__(self, z, train: bool = True):
        size, _, channels = self.image_shape
        n_up, base = dcgan_num_stages(size)
        k = self.kernel_size
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            axis_name=self.axis_name if train else None,
        )
        up = functools.partial(
            ConvTranspose,
            kernel_size=k,
            padding=(k - 1) // 2,
            impl=self.upsample_impl,
            conv_backend=self.conv_backend,
        )
        features = self.width * 2**n_up
        x = nn.Dense(base * base * features, use_bias=False)(z)
        x = nn.relu(norm()(x)).reshape((-1, base, base, features))  # [B, base, base, F]
        features //= 2
        x = up(features, strides=1, output_padding=0, use_bias=False)(x)
        x = nn.relu(norm()(x))
        for _ in range(n_up - 1):
            features //= 2
            x = up(features, strides=2, output_padding=k % 2, use_bias=False)(x)
            x = nn.relu(norm()(x))
        x = up(channels, strides=2, output_padding=k % 2, use_bias=True)(x)  # [B, H, W, C]
        return jnp.tanh(x)


class DCGANDiscriminator(nn.Module):
    """Stride-2 convolutions with LeakyReLU(0.2) down to <= 7 px, then one dense logit.

    Optional dropout after each activation and optional spectral normalisation of every
    layer (Miyato et al. 2018; its power-iteration vectors live in ``batch_stats``).
    """

    width: int = 64
    kernel_size: int = 5
    dropout: float = 0.0
    spectral_norm: bool = False
    conv_backend: str = "xla"  # "xla" | "onednn" | "auto" (see genimg.ops.onednn)

    @nn.compact
    def __call__(self, x, train: bool = True):
        n_down, _ = dcgan_num_stages(x.shape[1])
        k, p = self.kernel_size, (self.kernel_size - 1) // 2
        conv_fn = onednn.conv_fn(self.conv_backend)

        def layer(module, h):
            if self.spectral_norm:
                return nn.SpectralNorm(module)(h, update_stats=train)
            return module(h)

        for i in range(n_down):
            conv = nn.Conv(
                self.width * 2**i,
                (k, k),
                strides=(2, 2),
                padding=((p, p), (p, p)),
                conv_general_dilated=conv_fn,
            )
            x = nn.leaky_relu(layer(conv, x), negative_slope=0.2)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = x.reshape((x.shape[0], -1))
        return layer(nn.Dense(1), x)[:, 0]
