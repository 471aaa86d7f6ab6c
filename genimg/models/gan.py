"""GAN generators and discriminators: the classic MLP GAN and a DCGAN for 28, 32 and 64 px.

Generators map ``z [B, z_dim]`` to images ``[B, H, W, C]`` (``tanh`` range [-1, 1] for DCGAN,
``sigmoid`` range [0, 1] for the MLP GAN); discriminators map images to one logit per image
``[B]``. ``train`` switches batch norm between batch statistics and running averages and
turns dropout on.

Class-conditional variants (``num_classes > 0``; every call then takes int32 ``labels [B]``):

- generator ``conditioning="cbn"``: every batch norm is a `ConditionalBatchNorm` (a scale and
  shift per class); ``"concat"``: the one-hot label is appended to ``z`` (Mirza & Osindero
  2014). The MLP generator has no batch norm, so it only concatenates.
- discriminator ``conditioning="projection"`` (Miyato & Koyama 2018): with ``phi(x)`` the
  features before the last layer and ``psi`` that layer, ``logit = psi(phi(x)) +
  <embed(y), phi(x)>``, the class embedding spectrally normalised along with the other layers
  when ``spectral_norm`` is on; ``"concat"``: one-hot label maps are appended to the input
  image's channels (to the flattened input of the MLP).

With ``num_classes=0`` (the default) the modules hold and compute exactly what the
unconditional ones always did.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genimg.models.layers import ConditionalBatchNorm, ConvTranspose
from genimg.ops import onednn

G_CONDITIONING = ("cbn", "concat")
D_CONDITIONING = ("projection", "concat")


def check_labels(num_classes: int, labels) -> None:
    """A conditional module needs labels and an unconditional one takes none."""
    if num_classes and labels is None:
        raise ValueError(f"a class-conditional module ({num_classes} classes) needs labels")
    if not num_classes and labels is not None:
        raise ValueError("labels given to an unconditional module (num_classes=0)")


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} '{value}'; expected one of {', '.join(choices)}")


def append_label_maps(x, labels, num_classes: int):
    """``x [B, H, W, C]`` with ``num_classes`` one-hot label channels appended."""
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)[:, None, None, :]
    return jnp.concatenate([x, jnp.broadcast_to(one_hot, x.shape[:3] + (num_classes,))], -1)


def projection(features, labels, num_classes: int, wrap=lambda module, x: module(x)):
    """``<embed(y), phi(x)>`` [B] of the projection discriminator; ``wrap(module, x)`` applies
    the embedding (e.g. spectrally normalised). Called inside a compact module."""
    embed = nn.Embed(
        num_classes, features.shape[-1], embedding_init=nn.initializers.xavier_uniform()
    )
    return jnp.sum(wrap(embed, labels) * features, axis=-1)


class MLPGenerator(nn.Module):
    """The classic fully connected generator: z -> 256 -> 512 -> 1024 -> H*W*C, sigmoid."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    hidden: Sequence[int] = (256, 512, 1024)
    num_classes: int = 0  # > 0: class-conditional (the one-hot label is appended to z)
    conditioning: str = "concat"  # the only choice without batch norm

    @nn.compact
    def __call__(self, z, labels=None, train: bool = True):
        del train  # no batch norm or dropout: kept for a uniform generator interface
        check_labels(self.num_classes, labels)
        x = z
        if self.num_classes:
            if self.conditioning != "concat":
                raise ValueError(
                    f"the MLP generator has no batch norm to condition: conditioning "
                    f"'{self.conditioning}' is not available, use 'concat'"
                )
            x = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        x = nn.Dense(math.prod(self.image_shape))(x)
        return nn.sigmoid(x).reshape((z.shape[0],) + tuple(self.image_shape))


class MLPDiscriminator(nn.Module):
    """The classic fully connected discriminator: flatten -> 512 -> 256 -> 1 logit."""

    hidden: Sequence[int] = (512, 256)
    num_classes: int = 0  # > 0: class-conditional
    conditioning: str = "projection"  # "projection" | "concat" (one-hot appended to the input)

    @nn.compact
    def __call__(self, x, labels=None, train: bool = True):
        del train
        check_labels(self.num_classes, labels)
        x = x.reshape((x.shape[0], -1))
        if self.num_classes:
            _check_choice("discriminator conditioning", self.conditioning, D_CONDITIONING)
            if self.conditioning == "concat":
                one_hot = jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)
                x = jnp.concatenate([x, one_hot], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        logits = nn.Dense(1)(x)[:, 0]  # psi(phi(x)), phi = the last hidden layer
        if self.num_classes and self.conditioning == "projection":
            logits = logits + projection(x, labels, self.num_classes)
        return logits


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
    num_classes: int = 0  # > 0: class-conditional
    conditioning: str = "cbn"  # "cbn" (conditional batch norm) | "concat" (one-hot joins z)

    @nn.compact
    def __call__(self, z, labels=None, train: bool = True):
        size, _, channels = self.image_shape
        n_up, base = dcgan_num_stages(size)
        check_labels(self.num_classes, labels)
        k = self.kernel_size
        norm_kwargs = dict(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            axis_name=self.axis_name if train else None,
        )
        cbn = False
        if self.num_classes:
            _check_choice("generator conditioning", self.conditioning, G_CONDITIONING)
            cbn = self.conditioning == "cbn"
            if not cbn:
                z = jnp.concatenate(
                    [z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1
                )

        def norm():
            if cbn:
                module = ConditionalBatchNorm(self.num_classes, **norm_kwargs)
                return lambda x: module(x, labels)
            return nn.BatchNorm(**norm_kwargs)

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
    num_classes: int = 0  # > 0: class-conditional
    conditioning: str = "projection"  # "projection" | "concat" (one-hot maps join the input)

    @nn.compact
    def __call__(self, x, labels=None, train: bool = True):
        n_down, _ = dcgan_num_stages(x.shape[1])
        check_labels(self.num_classes, labels)
        if self.num_classes:
            _check_choice("discriminator conditioning", self.conditioning, D_CONDITIONING)
            if self.conditioning == "concat":
                x = append_label_maps(x, labels, self.num_classes)
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
        x = x.reshape((x.shape[0], -1))  # phi(x) [B, F]
        logits = layer(nn.Dense(1), x)[:, 0]  # psi(phi(x))
        if self.num_classes and self.conditioning == "projection":
            logits = logits + projection(x, labels, self.num_classes, layer)
        return logits
