"""The Inception-v3 used by FID and IS, as a Flax linen module (NHWC, inference only).

This is the network of pytorch-fid's `fid_inception_v3()` (itself a port of the TensorFlow graph
`inception-2015-12-05` that the original FID code uses), not torchvision's ImageNet Inception-v3.
It differs from torchvision's in three places, all reproduced here:

- the 3x3 average pools inside blocks A, C and E_1 ignore the zero padding
  (`count_include_pad=False`, as TensorFlow's average pool does);
- the pool branch of the last block (E_2, `Mixed_7c`) uses a 3x3 *max* pool;
- the classifier has 1008 outputs (the TF graph's label space), not 1000.

Module and parameter names follow torchvision's attribute names (`Mixed_5b/branch1x1/conv`), so
a PyTorch state dict maps onto the Flax tree by name; see `genimg.metrics.inception_weights`.

Input: float images in [0, 1] of shape [N, 299, 299, 3] (see `genimg.metrics.preprocess` for the
resize). Output: the 2048-d pool3 features (FID, KID, precision/recall) and the 1008 logits (IS).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
POOL_DIM = 2048
NUM_CLASSES = 1008


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm (running statistics, eps 1e-3) -> ReLU."""

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0  # symmetric zero padding (h, w), as in torch.nn.Conv2d
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        ph, pw = _pair(self.padding)
        x = nn.Conv(
            self.features,
            _pair(self.kernel_size),
            strides=_pair(self.strides),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3_same(x):
    # TensorFlow semantics: the padded zeros are not counted in the mean.
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_same(x):
    return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and avg-pool branches."""

    pool_features: int
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv(*a, precision=self.precision, **k)
        b1 = conv(64, 1, name="branch1x1")(x)
        b5 = conv(48, 1, name="branch5x5_1")(x)
        b5 = conv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = conv(64, 1, name="branch3x3dbl_1")(x)
        b3 = conv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = conv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Mixed_6a)."""

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv(*a, precision=self.precision, **k)
        b3 = conv(384, 3, strides=2, name="branch3x3")(x)
        bd = conv(64, 1, name="branch3x3dbl_1")(x)
        bd = conv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = conv(96, 3, strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b/c/d/e)."""

    channels_7x7: int
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv(*a, precision=self.precision, **k)
        c7 = self.channels_7x7
        b1 = conv(192, 1, name="branch1x1")(x)
        b7 = conv(c7, 1, name="branch7x7_1")(x)
        b7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = conv(c7, 1, name="branch7x7dbl_1")(x)
        bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = conv(192, 1, name="branch_pool")(_avg_pool_3x3_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (Mixed_7a)."""

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv(*a, precision=self.precision, **k)
        b3 = conv(192, 1, name="branch3x3_1")(x)
        b3 = conv(320, 3, strides=2, name="branch3x3_2")(b3)
        b7 = conv(192, 1, name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, 3, strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 branches (Mixed_7b: avg pool; Mixed_7c: max pool)."""

    use_max_pool: bool = False  # True only for the FID net's last block (pytorch-fid's E_2)
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv(*a, precision=self.precision, **k)
        b1 = conv(320, 1, name="branch1x1")(x)
        b3 = conv(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = conv(448, 1, name="branch3x3dbl_1")(x)
        bd = conv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        pooled = _max_pool_3x3_same(x) if self.use_max_pool else _avg_pool_3x3_same(x)
        bp = conv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: images in [0, 1] -> (pool3 features [N, 2048], logits [N, 1008]).

    Inference only: BatchNorm always uses the running statistics, there is no dropout, and the
    variables must be `{"params": ..., "batch_stats": ...}` as returned by
    `genimg.metrics.inception_weights.load_inception_params`.
    """

    num_classes: int = NUM_CLASSES
    # HIGHEST keeps float32 convolutions exact on GPUs/TPUs (no TF32/bf16 passes), so features
    # match the reference to ~1e-5; pass None to trade accuracy for speed.
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images):
        if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"FIDInceptionV3 expects images of shape [N, {INPUT_SIZE}, {INPUT_SIZE}, 3] in "
                f"[0, 1], got {tuple(images.shape)}; resize with "
                "genimg.metrics.preprocess.resize_for_inception first."
            )
        if not jnp.issubdtype(images.dtype, jnp.floating):
            raise ValueError(
                f"FIDInceptionV3 expects float images in [0, 1], got dtype {images.dtype}; "
                "convert with genimg.metrics.preprocess.resize_for_inception first."
            )
        p = self.precision
        conv = lambda *a, **k: BasicConv(*a, precision=p, **k)
        x = 2.0 * images - 1.0  # [0, 1] -> [-1, 1], as pytorch-fid
        x = conv(32, 3, strides=2, name="Conv2d_1a_3x3")(x)  # [N, 149, 149, 32]
        x = conv(32, 3, name="Conv2d_2a_3x3")(x)  # [N, 147, 147, 32]
        x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)  # [N, 147, 147, 64]
        x = _max_pool_3x3_s2(x)  # [N, 73, 73, 64]
        x = conv(80, 1, name="Conv2d_3b_1x1")(x)  # [N, 73, 73, 80]
        x = conv(192, 3, name="Conv2d_4a_3x3")(x)  # [N, 71, 71, 192]
        x = _max_pool_3x3_s2(x)  # [N, 35, 35, 192]
        x = InceptionA(32, precision=p, name="Mixed_5b")(x)  # [N, 35, 35, 256]
        x = InceptionA(64, precision=p, name="Mixed_5c")(x)  # [N, 35, 35, 288]
        x = InceptionA(64, precision=p, name="Mixed_5d")(x)  # [N, 35, 35, 288]
        x = InceptionB(precision=p, name="Mixed_6a")(x)  # [N, 17, 17, 768]
        x = InceptionC(128, precision=p, name="Mixed_6b")(x)
        x = InceptionC(160, precision=p, name="Mixed_6c")(x)
        x = InceptionC(160, precision=p, name="Mixed_6d")(x)
        x = InceptionC(192, precision=p, name="Mixed_6e")(x)  # [N, 17, 17, 768]
        x = InceptionD(precision=p, name="Mixed_7a")(x)  # [N, 8, 8, 1280]
        x = InceptionE(use_max_pool=False, precision=p, name="Mixed_7b")(x)  # [N, 8, 8, 2048]
        x = InceptionE(use_max_pool=True, precision=p, name="Mixed_7c")(x)  # [N, 8, 8, 2048]
        pool = jnp.mean(x, axis=(1, 2))  # [N, 2048]
        logits = nn.Dense(self.num_classes, precision=p, name="fc")(pool)  # [N, 1008]
        return pool, logits
