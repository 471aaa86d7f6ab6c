"""pix2pix networks (Isola et al. 2017): a U-Net generator and a PatchGAN discriminator.

`UNetGenerator` maps inputs ``[B, H, W, Cin]`` (one-hot label maps, edge maps, images; in
[0, 1]) to images ``[B, H, W, C]`` in [-1, 1] (tanh). Encoder level ``i``: 4x4 stride-2 conv
(``width * 2**i`` channels, capped at ``max_width``), norm (not on the first level),
LeakyReLU(0.2). At the coarsest level a 3x3 bottleneck conv. Decoder level ``i``: the
concatenation of the previous output and encoder level ``i``'s output (the skip connection),
4x4 stride-2 transposed conv, norm, ReLU; the last one outputs the image. Dropout (rate
``dropout``, the model's only noise source, as in the paper) follows the bottleneck and the
innermost decoder levels, ``dropout_layers`` layers in all. The paper's 256 px U-Net has 8
levels down to 1x1; small images get as many levels as their size allows: 28 -> 14 -> 7
(2 levels), 32 and 64 down to 4x4 (3 and 4 levels), 8 (the digits) -> 4 (1 level).

`PatchDiscriminator` scores ``(input, image)`` pairs, concatenated along channels, per patch:
``layers`` 4x4 stride-2 convs, one 4x4 stride-1 conv, a 4x4 stride-1 conv to one logit per
patch, ``[B, H', W']``. Its receptive field (`patch_receptive_field`) is 16 px for
``layers=1`` (the default here: a quarter of a 64 px image, as the paper's 70 px patch is of
256 px), 34 px for 2 and the paper's 70 px for 3.

``norm``: "instance" (default: the paper trains with batch norm at batch size 1, which is
instance normalisation), "batch" (running statistics in ``batch_stats``, averaged over
``axis_name`` under pmap) or "none".
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from genimg.models.layers import ConvTranspose

NORMS = ("instance", "batch", "none")


def make_norm(kind: str, train: bool, axis_name: str | None = None):
    """A factory of norm layers (``None`` for "none")."""
    if kind == "instance":
        return functools.partial(nn.InstanceNorm, epsilon=1e-5)
    if kind == "batch":
        return functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            axis_name=axis_name if train else None,
        )
    if kind == "none":
        return None
    raise ValueError(f"unknown norm '{kind}'; expected one of {', '.join(NORMS)}")


def unet_levels(size: int, min_size: int = 4) -> int:
    """Stride-2 levels for a square image: halve while the side is even and stays >= min_size."""
    levels = 0
    while size % 2 == 0 and size // 2 >= min_size:
        size //= 2
        levels += 1
    if levels == 0:
        raise ValueError(f"image size {size} is too small or odd for a U-Net; use 8, 28, 32, 64")
    return levels


def patch_receptive_field(layers: int) -> int:
    """Receptive field (px) of one `PatchDiscriminator` logit with ``layers`` stride-2 convs."""
    rf = 4 + 3  # the output conv and the stride-1 conv before it, 4x4 each
    for _ in range(layers):
        rf = (rf - 1) * 2 + 4
    return rf


def _conv(features, strides, use_bias=True):
    return nn.Conv(
        features, (4, 4), strides=(strides, strides), padding=((1, 1), (1, 1)), use_bias=use_bias
    )


class UNetGenerator(nn.Module):
    """Inputs ``[B, H, W, Cin]`` in [0, 1] -> images ``[B, H, W, out_channels]`` in [-1, 1]."""

    out_channels: int
    width: int = 64  # channels of the first level; doubles per level up to max_width
    max_width: int = 512
    levels: int = 0  # stride-2 levels; 0 = `unet_levels` of the image size
    dropout: float = 0.5
    dropout_layers: int = 3  # the bottleneck and the innermost decoder levels
    norm: str = "instance"
    axis_name: str | None = None  # batch norm only: statistics averaged over this pmap axis
    upsample_impl: str = "auto"  # see layers.ConvTranspose

    @nn.compact
    def __call__(self, x, train: bool = True):
        size = x.shape[1]
        levels = self.levels or unet_levels(size)
        if size % 2**levels or x.shape[2] % 2**levels:
            raise ValueError(
                f"a {levels}-level U-Net needs sides divisible by {2**levels}, got {x.shape[1:3]}"
            )
        norm = make_norm(self.norm, train, self.axis_name)
        post = (lambda h: norm()(h)) if norm else (lambda h: h)
        widths = [min(self.width * 2**i, self.max_width) for i in range(levels)]
        skips = []
        h = x
        for i, w in enumerate(widths):
            h = _conv(w, 2, use_bias=i == 0 or norm is None)(h)
            h = nn.leaky_relu(h if i == 0 else post(h), 0.2)  # [B, H / 2^(i+1), ..., w]
            self.sow("intermediates", f"down{i}", h)
            skips.append(h)
        drops = self.dropout_layers

        def dropout(h):
            nonlocal drops
            if drops > 0 and self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            drops -= 1
            return h

        h = nn.Conv(widths[-1], (3, 3), padding=((1, 1), (1, 1)), use_bias=norm is None)(h)
        h = dropout(nn.relu(post(h)))  # the bottleneck, at the coarsest level
        for i in reversed(range(levels)):
            h = jnp.concatenate([h, skips[i]], axis=-1)
            last = i == 0
            features = self.out_channels if last else widths[i - 1]
            h = ConvTranspose(
                features,
                kernel_size=4,
                strides=2,
                padding=1,
                output_padding=0,
                use_bias=last or norm is None,
                impl=self.upsample_impl,
            )(h)
            if not last:
                h = dropout(nn.relu(post(h)))
                self.sow("intermediates", f"up{i}", h)
        return jnp.tanh(h)


class PatchDiscriminator(nn.Module):
    """``(inputs [B, H, W, Cin], images [B, H, W, C])`` -> patch logits ``[B, H', W']``."""

    width: int = 64
    layers: int = 1  # stride-2 convs; see patch_receptive_field
    norm: str = "instance"
    axis_name: str | None = None

    @nn.compact
    def __call__(self, inputs, images, train: bool = True):
        norm = make_norm(self.norm, train, self.axis_name)
        post = (lambda h: norm()(h)) if norm else (lambda h: h)
        h = jnp.concatenate([inputs, images], axis=-1)
        h = nn.leaky_relu(_conv(self.width, 2)(h), 0.2)
        for i in range(1, self.layers):
            h = _conv(self.width * min(2**i, 8), 2, use_bias=norm is None)(h)
            h = nn.leaky_relu(post(h), 0.2)
        h = _conv(self.width * min(2**self.layers, 8), 1, use_bias=norm is None)(h)
        h = nn.leaky_relu(post(h), 0.2)
        return _conv(1, 1)(h)[..., 0]
