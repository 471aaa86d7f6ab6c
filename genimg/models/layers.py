"""Layers shared by the generators and decoders: a fast, exact transposed convolution.

`ConvTranspose` computes exactly what

    nn.ConvTranspose(features, (k, k), strides=(s, s),
                     padding=((k - 1 - p, k - 1 - p + op),) * 2, transpose_kernel=False)

computes, with the same parameters (`kernel` [k, k, Cin, Cout], `bias` [Cout]), so checkpoints
move freely between its implementations and flax's. Padding follows torch: `(p, op)` give the
same output size as `torch.nn.ConvTranspose2d(k, stride=s, padding=p, output_padding=op)`,
`H_out = (H - 1) * s - 2 * p + k + op`.

Implementations (`impl`):
- "transpose": `lax.conv_transpose`, i.e. a stride-1 conv over the input dilated with s - 1
  zeros. Most of its multiply-adds hit those zeros, and XLA:CPU computes the gradients of a
  conv over a dilated input very slowly, so its backward pass is many times slower than the
  sub-pixel form's (measurements: benchmarks/README.md, "XLA on CPU").
- "subpixel": the same sum re-indexed. Output pixel `s*q + r` (phase r) only ever sees kernel
  taps `a = s*d + lo - r` applied to input pixel `q + d`, so one stride-1 conv from Cin to
  `s*s*Cout` channels, whose kernel is gathered from `kernel` by those indices (zeros where a
  falls outside [0, k)), followed by depth-to-space gives every phase at once. Exact for any
  (k, s, p, op); when the output is not s times the input the extra rows are cropped.
- "native": the transposed conv as what it is, the input gradient of the strided convolution
  it transposes (oneDNN's backward-data, `onednn.conv_input_grad`, which is also what torch's
  `ConvTranspose2d` runs on CPU). No multiply-add is wasted: the sub-pixel form's shared
  window reads every phase's zero taps (k=5, s=2: 36 taps per 4 outputs instead of 25; k=3:
  16 instead of 9). Needs the oneDNN backend, float32, `padding >= output_padding`,
  `padding < k` and at least 4 output channels (oneDNN's backward-data to 1-3 channels is
  slower than XLA's, see `onednn.MIN_ONEDNN_DX_CHANNELS`); elsewhere it is "subpixel".
- "auto" (default): on CPU "native" where oneDNN runs the convolutions and the layer fits it,
  else "subpixel", the fastest exact form with XLA's convolutions (benchmarks/README.md);
  "transpose" elsewhere (GPU/TPU libraries implement strided transposed convs natively). For
  stride 1 all are the same plain convolution.

`conv_backend` picks who runs the stride-1 convolutions of the "subpixel" and stride-1 forms:
"xla" (the module's default, `lax.conv_general_dilated`), "onednn" (`genimg.ops.onednn`, CPU
only; same parameters, same function up to float32 summation order) or "auto" (oneDNN on CPU
where available, else XLA: the experiments' configs default to it). "transpose" always uses XLA;
"native" needs oneDNN.

Weights from torch: `kernel_from_torch(w)` maps a ConvTranspose2d weight [Cin, Cout, k, k] to
ours by flipping both spatial axes and moving channels last (torch's op is the adjoint of a
correlation, ours is a correlation over the dilated input, hence the flip).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen.dtypes import promote_dtype
from jax import lax

from genimg.ops import onednn

Array = jax.Array
Initializer = Callable[..., Array]

_NHWC = ("NHWC", "HWIO", "NHWC")
IMPLS = ("auto", "native", "subpixel", "transpose")


def conv_transpose_padding(kernel_size: int, padding: int, output_padding: int = 0):
    """torch ConvTranspose2d (p, op) -> the (low, high) padding of the dilated input per axis."""
    lo = kernel_size - 1 - padding
    return lo, lo + output_padding


def conv_transpose_out(size: int, kernel_size: int, stride: int, padding: int, out_pad: int = 0):
    """Output size of torch ConvTranspose2d along one axis (no dilation)."""
    return (size - 1) * stride - 2 * padding + kernel_size + out_pad


def conv_out(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output size of torch Conv2d / `nn.Conv(padding=((p, p), (p, p)))` along one axis."""
    return (size + 2 * padding - kernel_size) // stride + 1


def kernel_from_torch(weight) -> np.ndarray:
    """torch ConvTranspose2d weight [Cin, Cout, k, k] -> our `kernel` [k, k, Cin, Cout]."""
    w = np.asarray(weight)
    return np.ascontiguousarray(np.transpose(w[:, :, ::-1, ::-1], (2, 3, 0, 1)))


def depth_to_space(x: Array, block: int) -> Array:
    """[B, H, W, s*s*C] with channels ordered (row phase, col phase, C) -> [B, H*s, W*s, C]."""
    b, h, w, c = x.shape
    c //= block * block
    x = x.reshape(b, h, w, block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * block, w * block, c)


def _subpixel_geometry(k: int, s: int, lo: int):
    """Offsets [dmin, dmax] of the input pixels that any phase reads (dilated-input padding lo)."""
    # Phase r, tap a reads input q + d with s*d = r + a - lo; r + a spans [0, s + k - 2].
    dmin = -(lo // s)  # ceil(-lo / s)
    dmax = (s + k - 2 - lo) // s
    return dmin, dmax


def _gather_phases(kernel: Array, axis: int, k: int, s: int, lo: int) -> Array:
    """Stacks, for each phase r, the taps a = s*d + lo - r (d = dmin..dmax) of one kernel axis.

    Returns the kernel with `axis` replaced by two axes [s (phase), K' (offset)], zeros where a
    tap index falls outside [0, k).
    """
    dmin, dmax = _subpixel_geometry(k, s, lo)
    taps = dmax - dmin + 1
    first = s * dmin + lo - (s - 1)  # smallest tap index read (phase s - 1, d = dmin)
    last = s * dmax + lo  # largest (phase 0, d = dmax)
    pad_lo, pad_hi = max(0, -first), max(0, last - (k - 1))
    pads = [(0, 0)] * kernel.ndim
    pads[axis] = (pad_lo, pad_hi)
    kp = jnp.pad(kernel, pads)
    phases = []
    for r in range(s):
        start = s * dmin + lo - r + pad_lo
        phases.append(lax.slice_in_dim(kp, start, start + s * (taps - 1) + 1, s, axis))
    return jnp.stack(phases, axis=axis)


def subpixel_kernel(kernel: Array, stride: int, lo: int) -> Array:
    """[k, k, Cin, Cout] transposed-conv kernel -> [K', K', Cin, s*s*Cout] stride-1 conv kernel.

    Output channels are ordered (row phase, column phase, Cout), as `depth_to_space` expects.
    """
    k, _, cin, cout = kernel.shape
    w = _gather_phases(kernel, 0, k, stride, lo)  # [s, K', k, Cin, Cout]
    w = _gather_phases(w, 2, k, stride, lo)  # [s, K', s, K', Cin, Cout]
    taps = w.shape[1]
    w = w.transpose(1, 3, 4, 0, 2, 5)  # [K', K', Cin, s, s, Cout]
    return w.reshape(taps, taps, cin, stride * stride * cout)


def conv_transpose_subpixel(
    x: Array, kernel: Array, stride: int, pads, precision=None, conv=lax.conv_general_dilated
) -> Array:
    """`lax.conv_transpose(x, kernel, (s, s), pads)` (NHWC, HWIO) as conv + depth-to-space.

    `conv` has the signature of `lax.conv_general_dilated` (e.g. `onednn.conv_general_dilated`).
    """
    (lo, hi), (lo_w, hi_w) = pads
    if (lo, hi) != (lo_w, hi_w):
        raise ValueError(f"subpixel needs the same padding on both axes, got {pads}")
    k = kernel.shape[0]
    s = stride
    _, h, w, _ = x.shape
    out_h = (h - 1) * s + lo + hi - k + 2
    out_w = (w - 1) * s + lo + hi - k + 2
    dmin, dmax = _subpixel_geometry(k, s, lo)
    qh, qw = -(-out_h // s), -(-out_w // s)  # rows/cols per phase before cropping
    conv_pads = ((-dmin, qh - 1 + dmax - (h - 1)), (-dmin, qw - 1 + dmax - (w - 1)))
    y = conv(
        x,
        subpixel_kernel(kernel, s, lo),
        window_strides=(1, 1),
        padding=conv_pads,
        dimension_numbers=_NHWC,
        precision=precision,
    )  # [B, qh, qw, s*s*Cout]
    y = depth_to_space(y, s)
    if (qh * s, qw * s) != (out_h, out_w):
        y = y[:, :out_h, :out_w]
    return y


def native_fits(x: Array, kernel: Array, padding: int, output_padding: int) -> bool:
    """Whether the "native" (oneDNN backward-data) form computes this transposed conv."""
    k, cout = kernel.shape[0], kernel.shape[-1]
    return (
        x.dtype == jnp.float32
        and kernel.dtype == jnp.float32
        and 0 <= padding - output_padding
        and padding < k
        and cout >= onednn.MIN_ONEDNN_DX_CHANNELS
        and kernel.shape[0] == kernel.shape[1]  # conv_transpose_native reads k from axis 0
    )


def conv_transpose_native(
    x: Array, kernel: Array, stride: int, padding: int, output_padding: int
) -> Array:
    """Torch-style `ConvTranspose2d(k, stride, padding, output_padding)` of x [B, H, W, Cin]
    with our [k, k, Cin, Cout] kernel, as oneDNN's backward-data of the stride-s conv from
    [B, H', W', Cout] to [B, H, W, Cin] (see `native_fits` for where it applies)."""
    k, s, p, op = kernel.shape[0], stride, padding, output_padding
    b, h, w, _ = x.shape
    out_shape = (b, (h - 1) * s - 2 * p + k + op, (w - 1) * s - 2 * p + k + op, kernel.shape[-1])
    # Ours correlates the dilated input with `kernel`; the conv it transposes correlates with the
    # spatially flipped kernel, from Cout to Cin channels.
    conv_kernel = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    return onednn.conv_input_grad(x, conv_kernel, out_shape, (s, s), ((p, p - op),) * 2)


class ConvTranspose(nn.Module):
    """Transposed conv with torch (k, s, p, op) semantics and flax `nn.ConvTranspose` params."""

    features: int
    kernel_size: int = 5
    strides: int = 2
    padding: int = 2
    output_padding: int = 1  # extra rows/cols at the bottom/right, as in torch; < strides
    use_bias: bool = True
    impl: str = "auto"  # "auto" | "native" | "subpixel" | "transpose": the same function
    conv_backend: str = "xla"  # "xla" | "onednn" | "auto": who runs subpixel / stride-1 convs
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:  # [B, H, W, Cin] -> [B, H', W', features]
        k, s = self.kernel_size, self.strides
        if not 0 <= self.output_padding < s:
            raise ValueError(f"output_padding must be in [0, strides), got {self.output_padding}")
        if self.impl not in IMPLS:
            raise ValueError(f"unknown impl {self.impl!r}; expected one of {IMPLS}")
        conv = onednn.conv_fn(self.conv_backend)
        kernel = self.param(
            "kernel", self.kernel_init, (k, k, x.shape[-1], self.features), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        pads = (conv_transpose_padding(k, self.padding, self.output_padding),) * 2
        impl = self.impl
        if impl == "auto":
            impl = "native" if jax.default_backend() == "cpu" else "transpose"
        if impl == "native" and not (
            conv is onednn.conv_general_dilated
            and jax.default_backend() == "cpu"
            and native_fits(x, kernel, self.padding, self.output_padding)
        ):
            impl = "subpixel"
        if s == 1:  # no dilation: every form is this plain convolution
            y = conv(x, kernel, (1, 1), pads, dimension_numbers=_NHWC, precision=self.precision)
        elif impl == "native":
            y = conv_transpose_native(x, kernel, s, self.padding, self.output_padding)
        elif impl == "subpixel":
            y = conv_transpose_subpixel(x, kernel, s, pads, precision=self.precision, conv=conv)
        else:
            y = lax.conv_transpose(
                x, kernel, (s, s), pads, dimension_numbers=_NHWC, precision=self.precision
            )
        if bias is not None:
            y = y + bias
        return y


def unscaled_batch_norm(module, x: Array) -> Array:
    """flax's `nn.BatchNorm` without its affine part, built inside ``module``'s compact call
    from its ``use_running_average``, ``momentum``, ``epsilon`` and ``axis_name`` fields: the
    normalisation of the conditional batch norms, whose scale and shift come from a condition."""
    return nn.BatchNorm(
        use_running_average=module.use_running_average,
        momentum=module.momentum,
        epsilon=module.epsilon,
        use_scale=False,
        use_bias=False,
        axis_name=module.axis_name,
    )(x)


class ConditionalBatchNorm(nn.Module):
    """Batch norm with a class-dependent scale and shift (de Vries et al. 2017; Miyato &
    Koyama 2018): ``gamma[y] * (x - mean) / sqrt(var + eps) + beta[y]``.

    The normalisation is flax's `nn.BatchNorm` without its own affine part (batch statistics
    in training, running averages otherwise, ``axis_name`` for cross-device statistics); the
    affine part is one row of ``scale`` [K, C] (initialised to 1) and ``bias`` [K, C] (0) per
    example, picked by its label.
    """

    num_classes: int
    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, labels: Array) -> Array:  # [B, ..., C], [B] -> [B, ..., C]
        x = unscaled_batch_norm(self, x)
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (self.num_classes, features))
        bias = self.param("bias", nn.initializers.zeros, (self.num_classes, features))
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (features,)
        return x * scale[labels].reshape(shape) + bias[labels].reshape(shape)
