"""Encoder / decoder trunks shared by the autoencoders and VAEs, and the plain autoencoder.

Encoders map images ``[B, H, W, C]`` to ``[B, out_features]`` (the code for an AE; mean and
log-variance stacked for a VAE). Decoders map ``[B, D]`` to ``[B, H, W, out_channels]``: the
raw parameters of the output likelihood (logits, or Gaussian mean [and log-scale]).

At 28x28x1 the default conv pair is exactly the benchmark's "convvae" network
(``benchmarks/torch_peer.py``)::

    Conv(3, s2, p1) 32 ReLU -> Conv(3, s2, p1) 64 ReLU -> flatten -> Dense(out_features)
    Dense(7*7*64) ReLU -> [7, 7, 64] -> ConvT(3, s2, p1, op1) 32 ReLU -> ConvT(3, s2, p1, op1) C

Activation, normalisation (a stateless module factory such as ``nn.LayerNorm``; batch norm is
left out so that likelihoods do not depend on the batch) and dropout are injectable.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genimg.models.layers import ConvTranspose
from genimg.ops import onednn

Array = jax.Array
ModuleFactory = Callable[[], nn.Module]


def _post(x, act, norm, dropout, train):
    """norm -> activation -> dropout, the order used after every hidden layer."""
    if norm is not None:
        x = norm()(x)
    x = act(x)
    if dropout > 0:
        x = nn.Dropout(dropout, deterministic=not train)(x)
    return x


def conv_base_size(size: int, num_stages: int) -> int:
    """Side of the decoder's first feature map: ``size / 2**num_stages`` (must be exact)."""
    base = size // 2**num_stages
    if base < 1 or base * 2**num_stages != size:
        raise ValueError(
            f"image side {size} is not divisible by 2**{num_stages} (one halving per conv "
            "width); change data.image_size or model.widths"
        )
    return base


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convolutions (torch padding 1), flatten, one dense layer."""

    out_features: int
    widths: Sequence[int] = (32, 64)
    act: Callable[[Array], Array] = nn.relu
    norm: ModuleFactory | None = None
    dropout: float = 0.0
    conv_backend: str = "xla"  # "xla" | "onednn" | "auto" (see genimg.ops.onednn)

    @nn.compact
    def __call__(self, x, cond=None, train: bool = False):
        """``x [B, H, W, C]``, optional ``cond [B, E]`` joined to the flattened features."""
        conv_base_size(x.shape[1], len(self.widths))  # fails early with a clear message
        conv_base_size(x.shape[2], len(self.widths))
        conv_fn = onednn.conv_fn(self.conv_backend)
        for width in self.widths:
            x = nn.Conv(
                width,
                (3, 3),
                strides=(2, 2),
                padding=((1, 1), (1, 1)),
                conv_general_dilated=conv_fn,
            )(x)
            x = _post(x, self.act, self.norm, self.dropout, train)
        x = x.reshape((x.shape[0], -1))  # [B, H/2^n * W/2^n * widths[-1]]
        if cond is not None:
            x = jnp.concatenate([x, cond], axis=-1)
        return nn.Dense(self.out_features)(x)


class ConvDecoder(nn.Module):
    """Dense to a small feature map, then stride-2 ``ConvTranspose(3, s2, p1, op1)`` layers."""

    image_shape: tuple[int, int, int]
    out_channels: int
    widths: Sequence[int] = (32, 64)  # as the encoder's; used in reverse
    act: Callable[[Array], Array] = nn.relu
    norm: ModuleFactory | None = None
    dropout: float = 0.0
    conv_backend: str = "xla"  # "xla" | "onednn" | "auto"; see layers.ConvTranspose

    @nn.compact
    def __call__(self, z, train: bool = False):
        height, width, _ = self.image_shape
        n = len(self.widths)
        bh, bw = conv_base_size(height, n), conv_base_size(width, n)
        x = nn.Dense(bh * bw * self.widths[-1])(z)
        x = _post(x, self.act, self.norm, self.dropout, train)
        x = x.reshape((z.shape[0], bh, bw, self.widths[-1]))  # [B, h, w, widths[-1]]
        up = functools.partial(
            ConvTranspose,
            kernel_size=3,
            strides=2,
            padding=1,
            output_padding=1,
            conv_backend=self.conv_backend,
        )
        for features in reversed(self.widths[:-1]):
            x = up(features)(x)
            x = _post(x, self.act, self.norm, self.dropout, train)
        return up(self.out_channels)(x)  # [B, H, W, out_channels]


class MLPEncoder(nn.Module):
    """Flatten, hidden dense layers (784-500 as in the Flax VAE example), one dense output."""

    out_features: int
    hidden: Sequence[int] = (500,)
    act: Callable[[Array], Array] = nn.relu
    norm: ModuleFactory | None = None
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, cond=None, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        if cond is not None:
            x = jnp.concatenate([x, cond], axis=-1)
        for width in self.hidden:
            x = _post(nn.Dense(width)(x), self.act, self.norm, self.dropout, train)
        return nn.Dense(self.out_features)(x)


class MLPDecoder(nn.Module):
    """Hidden dense layers, then a dense layer to ``H * W * out_channels``, reshaped."""

    image_shape: tuple[int, int, int]
    out_channels: int
    hidden: Sequence[int] = (500,)
    act: Callable[[Array], Array] = nn.relu
    norm: ModuleFactory | None = None
    dropout: float = 0.0

    @nn.compact
    def __call__(self, z, train: bool = False):
        x = z
        for width in self.hidden:
            x = _post(nn.Dense(width)(x), self.act, self.norm, self.dropout, train)
        height, width, _ = self.image_shape
        x = nn.Dense(height * width * self.out_channels)(x)
        return x.reshape((z.shape[0], height, width, self.out_channels))


class AutoEncoder(nn.Module):
    """Deterministic autoencoder: ``x -> code [B, D] -> decoder output [B, H, W, C']``."""

    encoder: nn.Module  # images -> [B, D]
    decoder: nn.Module  # [B, D] -> [B, H, W, C']

    def encode(self, x, train: bool = False):
        return self.encoder(x, train=train)

    def decode(self, code, train: bool = False):
        return self.decoder(code, train=train)

    def __call__(self, x, train: bool = False):
        return self.decode(self.encode(x, train=train), train=train)


def make_trunks(
    arch: str,
    image_shape: Sequence[int],
    code_features: int,
    out_channels: int,
    *,
    widths: Sequence[int] = (32, 64),
    hidden: Sequence[int] = (500,),
    act: Callable[[Array], Array] = nn.relu,
    norm: ModuleFactory | None = None,
    dropout: float = 0.0,
    conv_backend: str = "xla",
) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) for ``arch`` in {"conv", "mlp"}.

    ``code_features`` is the encoder's output width (latent size for an AE, twice it for a
    VAE); the decoder's input width follows from what it is given. ``conv_backend`` ("xla" |
    "onednn", see ``genimg.ops.onednn``) runs the conv trunks' convolutions; MLPs ignore it.
    """
    onednn.check_conv_backend(conv_backend)  # also for "mlp", which never uses it
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or math.prod(image_shape) <= 0:
        raise ValueError(f"image_shape must be (H, W, C) with positive sides, got {image_shape}")
    common = dict(act=act, norm=norm, dropout=dropout)
    if arch == "conv":
        return (
            ConvEncoder(code_features, widths=tuple(widths), conv_backend=conv_backend, **common),
            ConvDecoder(
                image_shape,
                out_channels,
                widths=tuple(widths),
                conv_backend=conv_backend,
                **common,
            ),
        )
    if arch == "mlp":
        return (
            MLPEncoder(code_features, hidden=tuple(hidden), **common),
            MLPDecoder(image_shape, out_channels, hidden=tuple(hidden), **common),
        )
    raise ValueError(f"unknown architecture '{arch}'; expected 'conv' or 'mlp'")
