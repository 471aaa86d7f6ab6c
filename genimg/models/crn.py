"""The cascaded refinement network of Chen & Koltun (2017), "Photographic Image Synthesis
with Cascaded Refinement Networks".

A cascade of refinement modules at doubling resolutions. Module ``i`` works at side
``base * 2**i`` (the coarsest side ``base`` in 4..7, as the DCGAN's: 28 -> 7, 14, 28; 32 and
64 -> 4, 8, ...); its input is the label map averaged down to its size, concatenated (after
the first module) with the previous module's features upsampled 2x bilinearly. Each module is
two 3x3 convs, each followed by layer normalisation (over H, W and C, per example, as the
paper's ``slim.layer_norm``) and LeakyReLU(0.2). A 1x1 conv maps the last module's features
to the image; unlike the paper's linear output we bound it with tanh, to [-1, 1], like the
U-Net. Features: ``width`` at the finest module, doubling toward the coarse ones up to
``max_width`` (the paper: 1024 at low resolution).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from genimg.models.gan import dcgan_num_stages


def module_sizes(size: int) -> list[int]:
    """Sides of the refinement modules for a square image of side ``size``."""
    n, base = dcgan_num_stages(size)
    return [base * 2**i for i in range(n + 1)]


def area_downsample(x, size: int):
    """Average ``[B, H, W, C]`` over ``H / size`` x ``W / size`` blocks (integer factors)."""
    b, h, w, c = x.shape
    fh, fw = h // size, w // size
    if fh * size != h or fw * size != w:
        raise ValueError(f"cannot average {h}x{w} down to {size}x{size}")
    return x.reshape(b, size, fh, size, fw, c).mean(axis=(2, 4))


class CascadedRefinementNetwork(nn.Module):
    """Label maps ``[B, H, W, K]`` in [0, 1] -> images ``[B, H, W, out_channels]`` in [-1, 1]."""

    out_channels: int
    width: int = 64  # features of the finest module; doubles per coarser module
    max_width: int = 512

    @nn.compact
    def __call__(self, layout, train: bool = True):
        del train  # no dropout or batch statistics: kept for the translator interface
        sizes = module_sizes(layout.shape[1])
        h = None
        for i, size in enumerate(sizes):
            features = min(self.width * 2 ** (len(sizes) - 1 - i), self.max_width)
            x = area_downsample(layout, size)  # [B, size, size, K]
            if h is not None:
                b, _, _, c = h.shape
                up = jax.image.resize(h, (b, size, size, c), "bilinear")
                x = jnp.concatenate([x, up], axis=-1)
            for _ in range(2):
                x = nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)))(x)
                x = nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1)(x)
                x = nn.leaky_relu(x, 0.2)
            h = x  # [B, size, size, features]
            self.sow("intermediates", f"module{i}", h)
        return jnp.tanh(nn.Conv(self.out_channels, (1, 1))(h))
