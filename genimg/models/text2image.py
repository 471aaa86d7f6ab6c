"""Text encoders and a text-conditional DCGAN generator / projection discriminator.

Captions arrive as int32 token ids ``[B, L]`` with 0 as padding (``genimg.data.scenes``).

- `TransformerTextEncoder`: token + learned position embeddings, pre-LayerNorm transformer
  blocks whose self-attention never attends to padding, and a mean over the real tokens:
  a caption gives the same vector however much padding follows it.
- `BagOfWordsEncoder`: the mean of the real tokens' embeddings and an MLP (an embedding
  bag): the baseline, blind to word order ("a bag left of a shoe" = "a shoe left of a bag").
- `TextGenerator`: the DCGAN generator with ``concat(z, text)`` as its input and FiLM batch
  norm (`FiLMBatchNorm`: scale and shift predicted from the text vector, the continuous
  counterpart of class-conditional batch norm) in every stage.
- `TextDiscriminator`: the DCGAN discriminator with a projection term on the text vector,
  ``logit = psi(phi(x)) + <W e(t), phi(x)>`` (Miyato & Koyama 2018, with the class embedding
  replaced by a linear map of the caption embedding); ``phi(x)`` keeps the spatial layout
  (flattened last feature map), so the projection can check what is where.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from genimg.models.gan import dcgan_num_stages
from genimg.models.layers import ConvTranspose, unscaled_batch_norm
from genimg.ops import onednn

ENCODERS = ("transformer", "bow")


def masked_mean(x, mask):
    """Mean of ``x [B, L, D]`` over the positions where ``mask [B, L]`` is True."""
    mask = mask.astype(x.dtype)[..., None]
    return jnp.sum(x * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


class TransformerBlock(nn.Module):
    """Pre-LN self-attention (padding keys masked out) and a GELU MLP, both residual."""

    dim: int
    heads: int

    @nn.compact
    def __call__(self, x, valid):  # [B, L, D], [B, L] bool
        # Every query attends to the real tokens only; padded queries are computed too (and
        # dropped by the pooling), so no attention row is ever fully masked.
        mask = nn.make_attention_mask(jnp.ones_like(valid), valid)
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.dim)(
            h, h, mask=mask
        )
        h = nn.LayerNorm()(x)
        h = nn.Dense(self.dim)(nn.gelu(nn.Dense(4 * self.dim)(h)))
        return x + h


class TransformerTextEncoder(nn.Module):
    """Token ids ``[B, L]`` (0 = padding) -> caption vector ``[B, dim]``."""

    vocab_size: int
    max_len: int
    dim: int = 64
    depth: int = 2
    heads: int = 4

    @nn.compact
    def __call__(self, tokens):
        valid = tokens > 0
        x = nn.Embed(self.vocab_size, self.dim)(tokens)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.max_len, self.dim))
        x = x + pos[: tokens.shape[1]]
        for _ in range(self.depth):
            x = TransformerBlock(self.dim, self.heads)(x, valid)
        return masked_mean(nn.LayerNorm()(x), valid)


class BagOfWordsEncoder(nn.Module):
    """Token ids ``[B, L]`` -> MLP(mean of the real tokens' embeddings) ``[B, dim]``."""

    vocab_size: int
    max_len: int
    dim: int = 64

    @nn.compact
    def __call__(self, tokens):
        x = masked_mean(nn.Embed(self.vocab_size, self.dim)(tokens), tokens > 0)
        return nn.Dense(self.dim)(nn.gelu(nn.Dense(self.dim)(x)))


def text_encoder(kind: str, vocab_size: int, max_len: int, dim: int, depth: int, heads: int):
    """The encoder module named ``kind`` (one of `ENCODERS`)."""
    if kind == "transformer":
        return TransformerTextEncoder(vocab_size, max_len, dim, depth, heads)
    if kind == "bow":
        return BagOfWordsEncoder(vocab_size, max_len, dim)
    raise ValueError(f"unknown text encoder '{kind}'; expected one of {', '.join(ENCODERS)}")


class FiLMBatchNorm(nn.Module):
    """Batch norm without its own affine part, then ``(1 + gamma(e)) * x + beta(e)`` with
    ``gamma``, ``beta`` linear in the condition vector ``e [B, D]`` (initialised to 0)."""

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, e):
        x = unscaled_batch_norm(self, x)
        c = x.shape[-1]
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
        gamma = nn.Dense(c, kernel_init=nn.initializers.zeros)(e).reshape(shape)
        beta = nn.Dense(c, kernel_init=nn.initializers.zeros)(e).reshape(shape)
        return x * (1.0 + gamma) + beta


class _EncoderFields(nn.Module):
    """The text-encoder fields shared by the generator and the discriminator."""

    vocab_size: int = 32
    max_len: int = 8
    encoder: str = "transformer"
    text_dim: int = 64
    text_depth: int = 2
    text_heads: int = 4

    def encode(self, tokens):
        return text_encoder(
            self.encoder,
            self.vocab_size,
            self.max_len,
            self.text_dim,
            self.text_depth,
            self.text_heads,
        )(tokens)


class TextGenerator(_EncoderFields):
    """``(z [B, Z], tokens [B, L]) -> images [B, H, W, C]`` in tanh range (see module doc)."""

    image_shape: tuple[int, int, int] = (56, 56, 1)
    width: int = 32
    kernel_size: int = 4
    axis_name: str | None = None
    upsample_impl: str = "auto"
    conv_backend: str = "xla"  # "xla" | "onednn" | "auto"; see layers.ConvTranspose

    @nn.compact
    def __call__(self, z, tokens, train: bool = True):
        size, _, channels = self.image_shape
        n_up, base = dcgan_num_stages(size)
        e = self.encode(tokens)  # [B, text_dim]
        k = self.kernel_size

        def norm(x):
            return FiLMBatchNorm(
                use_running_average=not train, axis_name=self.axis_name if train else None
            )(x, e)

        up = functools.partial(
            ConvTranspose,
            kernel_size=k,
            padding=(k - 1) // 2,
            impl=self.upsample_impl,
            conv_backend=self.conv_backend,
        )
        features = self.width * 2**n_up
        x = nn.Dense(base * base * features, use_bias=False)(jnp.concatenate([z, e], -1))
        x = nn.relu(norm(x)).reshape((-1, base, base, features))  # [B, base, base, F]
        for _ in range(n_up - 1):
            features //= 2
            x = up(features, strides=2, output_padding=k % 2, use_bias=False)(x)
            x = nn.relu(norm(x))
        x = up(channels, strides=2, output_padding=k % 2, use_bias=True)(x)  # [B, H, W, C]
        return jnp.tanh(x)


class TextDiscriminator(_EncoderFields):
    """``(images, tokens) -> logits [B]``: stride-2 convs (LeakyReLU 0.2, optional spectral
    norm) and the text projection term."""

    width: int = 32
    kernel_size: int = 4
    spectral_norm: bool = True
    conv_backend: str = "xla"  # "xla" | "onednn" | "auto" (see genimg.ops.onednn)

    @nn.compact
    def __call__(self, x, tokens, train: bool = True):
        n_down, _ = dcgan_num_stages(x.shape[1])
        e = self.encode(tokens)
        k, p = self.kernel_size, (self.kernel_size - 1) // 2
        conv_fn = onednn.conv_fn(self.conv_backend)

        def layer(module, h):
            if self.spectral_norm:
                return nn.SpectralNorm(module)(h, update_stats=train)
            return module(h)

        for i in range(n_down):
            pad = ((p, k - 2 - p), (p, k - 2 - p)) if k % 2 == 0 else ((p, p), (p, p))
            conv = nn.Conv(
                self.width * 2**i,
                (k, k),
                strides=(2, 2),
                padding=pad,
                conv_general_dilated=conv_fn,
            )
            x = nn.leaky_relu(layer(conv, x), negative_slope=0.2)
        phi = x.reshape((x.shape[0], -1))  # [B, F], spatial layout kept
        logits = layer(nn.Dense(1), phi)[:, 0]
        return logits + jnp.sum(layer(nn.Dense(phi.shape[-1]), e) * phi, axis=-1)
