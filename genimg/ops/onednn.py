"""2-D convolutions on CPU in oneDNN (through the XLA FFI), the CPU default under "auto".

`conv(x, w, strides, padding)` computes exactly `lax.conv_general_dilated(x, w, strides,
padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))` for float32 (up to summation order),
with forward, input-gradient and kernel-gradient in oneDNN (`onednn_conv.cc`). The three ops are
each other's transposes, so gradients of any order work (WGAN-GP and R1 penalties included).
`conv_general_dilated` has `lax.conv_general_dilated`'s signature (pass it to
`nn.Conv(conv_general_dilated=...)`): it uses oneDNN where it can (float32, NHWC/HWIO, no
dilation, one group, non-negative padding, CPU backend) and `lax.conv_general_dilated`
otherwise. Under `vmap` the custom calls run once per batch element (`vmap_method="sequential"`):
correct but slow; the models never vmap over convolutions.

Backends (`conv_fn`, `resolve_conv_backend`; the `model.conv_backend` config key): "auto" (the
configs' default) is oneDNN on the CPU backend where the extension and its runtime load, XLA
elsewhere (GPU/TPU, other platforms, a failed build), chosen once per process and logged in
one line; "onednn" insists (a one-line `ConfigError` where unavailable); "xla" never uses it.

The extension is built by `pip install -e .` on Linux x86-64, the one platform with
oneDNN wheels (optional: elsewhere, or without a compiler, the install succeeds and the backend
is unavailable; asking for it then raises a one-line `ConfigError` that names the fix). It is
compiled against oneDNN's headers only; here `libdnnl.so.3` is loaded with RTLD_GLOBAL, then the
extension. The library comes from the `onednn-cpu-gomp` wheel (oneDNN 3.2, CPU only, GNU OpenMP;
a dependency of the base install on Linux x86-64), else from the `onednn` wheel (a SYCL build:
its CPU engine is served by the OpenCL CPU runtime of `intel-opencl-rt`, found through
`OCL_ICD_FILENAMES`, which is then set here when unset).
`GENIMG_ONEDNN_LIB=/path/to/libdnnl.so.3` picks another oneDNN build; the extension must have
been compiled against the same oneDNN version's headers.

Measured 2026-11-25 on the 2-core AVX-512 CPU machines (oneDNN 3.13, jax 0.10.2, batch 64,
benchmarks/train_throughput.py, best of alternating runs): DCGAN step 229 -> 175 ms, DCGAN at
batch 256 910 -> 698 ms, conv VAE step 11.6 -> 9.2 ms; per conv (fwd+bwd) 1.3-2.6x faster.
With another process on the machine both backends slowed down about 2x (no clear loser).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.machinery
import logging
import os
import platform
import re
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genimg.errors import ConfigError

_TARGETS = {
    "fwd": ("genimg_onednn_conv_fwd", "GenimgOnednnConvFwd"),
    "bwd_data": ("genimg_onednn_conv_bwd_data", "GenimgOnednnConvBwdData"),
    "bwd_weights": ("genimg_onednn_conv_bwd_weights", "GenimgOnednnConvBwdWeights"),
}
_NHWC = ("NHWC", "HWIO", "NHWC")
_lock = threading.Lock()
_state: dict = {}  # "error": str | None once loading was tried


def _libdnnl_path() -> str | None:
    """libdnnl.so.3: $GENIMG_ONEDNN_LIB, the `onednn-cpu-gomp` or `onednn` wheel's, or None."""
    env = os.environ.get("GENIMG_ONEDNN_LIB")
    if env:
        return env
    from importlib import metadata

    for dist in ("onednn-cpu-gomp", "onednn"):
        try:
            files = metadata.distribution(dist).files or ()
        except Exception:  # not installed, or metadata unreadable
            continue
        for f in files:
            if f.name == "libdnnl.so.3":
                return str(f.locate().resolve())
    path = os.path.join(sys.prefix, "lib", "libdnnl.so.3")
    return path if os.path.exists(path) else None


def _dlopen(path: str, libdir: str, depth: int = 0) -> ctypes.CDLL:
    """dlopen(path, RTLD_GLOBAL), first loading from `libdir` any dependency the loader misses."""
    for _ in range(32):
        try:
            return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            m = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", str(err))
            dep = m and os.path.join(libdir, m.group(1))
            if depth > 16 or not dep or dep == path or not os.path.exists(dep):
                raise
            _dlopen(dep, libdir, depth + 1)
    raise OSError(f"could not load {path}")


def _extension_path() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        hits = glob.glob(os.path.join(here, "_onednn_conv" + suffix))
        if hits:
            return hits[0]
    return None


def _load() -> str | None:
    """Loads oneDNN and the extension and registers the FFI targets; returns why not, or None."""
    with _lock:
        if "error" in _state:
            return _state["error"]
        _state["error"] = error = _try_load()
        return error


def _try_load() -> str | None:
    ext = _extension_path()
    if ext is None:
        return "the extension genimg/ops/_onednn_conv*.so was not built"
    dnnl = _libdnnl_path()
    if dnnl is None:
        return "libdnnl.so.3 not found (the 'onednn-cpu-gomp' package is not installed)"
    libdir = os.path.dirname(dnnl)
    icd = os.path.join(libdir, "libintelocl.so")
    if "OCL_ICD_FILENAMES" not in os.environ and os.path.exists(icd):
        os.environ["OCL_ICD_FILENAMES"] = icd  # the wheel's .icd file names a build-machine path
    try:
        _dlopen(dnnl, libdir)
        lib = ctypes.CDLL(ext)
    except OSError as err:
        return f"loading failed: {err}"
    msg = ctypes.create_string_buffer(512)
    if lib.GenimgOnednnProbe(msg, len(msg)) != 0:
        return f"no oneDNN CPU engine: {msg.value.decode(errors='replace')}"
    for name, symbol in _TARGETS.values():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return None


def is_available() -> bool:
    """True when the oneDNN convolutions can run in this process."""
    return _load() is None


def _hint() -> str:
    """The fix: the install where oneDNN has wheels (Linux x86-64), the XLA convs elsewhere."""
    if sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64"):
        return (
            "install it with pip install -e '.[onednn]' (needs a C++ compiler), "
            "or set model.conv_backend=xla"
        )
    return (
        f"it needs Linux x86-64 (oneDNN has no wheels for {sys.platform} "
        f"{platform.machine()}): set model.conv_backend=xla"
    )


def unavailable_reason() -> str | None:
    """Why `is_available()` is False, as one actionable line; None when it is available."""
    error = _load()
    return None if error is None else f"oneDNN conv backend unavailable: {error}; {_hint()}"


def require() -> None:
    """Raises `ConfigError` (one line, with the fix) unless the backend is available."""
    reason = unavailable_reason()
    if reason is not None:
        raise ConfigError(reason)


def _call(op: str, out_shape, a, b, strides, padding):
    (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
    return jax.ffi.ffi_call(
        _TARGETS[op][0],
        jax.ShapeDtypeStruct(out_shape, jnp.float32),
        vmap_method="sequential",
    )(
        a,
        b,
        stride_h=np.int64(sh),
        stride_w=np.int64(sw),
        pad_top=np.int64(pt),
        pad_bottom=np.int64(pb),
        pad_left=np.int64(pl),
        pad_right=np.int64(pr),
    )


def _out_shape(x_shape, w_shape, strides, padding):
    n, h, w, _ = x_shape
    kh, kw, _, o = w_shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
    return (n, (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1, o)


# The three ops are linear in each argument and transposes of each other:
# <fwd(x, w), g> = <x, bwd_data(g, w)> = <w, bwd_weights(x, g)>, so each one's VJP is built
# from the other two and differentiation can be repeated.


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _fwd(x, w, strides, padding):
    return _call("fwd", _out_shape(x.shape, w.shape, strides, padding), x, w, strides, padding)


def _fwd_fwd(x, w, strides, padding):
    return _fwd(x, w, strides, padding), (x, w)


def _fwd_bwd(strides, padding, res, g):
    x, w = res
    return _dx(g, w, x.shape, strides, padding), _bwd_weights(x, g, w.shape, strides, padding)


# Below this many input channels oneDNN's backward-data kernels are slower than XLA's (DCGAN's
# 1 -> 64 first layer at batch 64: 3.2 ms vs 1.2 ms on the 2-core AVX-512 machines), so the
# input gradient of such convs is left to XLA (and layers.ConvTranspose's "native" form, which
# is a backward-data, to the sub-pixel form).
MIN_ONEDNN_DX_CHANNELS = 4


def _dx(dy, w, x_shape, strides, padding):
    """Input gradient: oneDNN's backward-data, or XLA's transpose for very few input channels."""
    if x_shape[-1] >= MIN_ONEDNN_DX_CHANNELS:
        return _bwd_data(dy, w, x_shape, strides, padding)
    x = jax.ShapeDtypeStruct(x_shape, dy.dtype)
    conv = functools.partial(lax.conv_general_dilated, dimension_numbers=_NHWC)
    return jax.linear_transpose(lambda x: conv(x, w, strides, padding), x)(dy)[0]


_fwd.defvjp(_fwd_fwd, _fwd_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _bwd_data(dy, w, x_shape, strides, padding):
    return _call("bwd_data", x_shape, dy, w, strides, padding)


def _bwd_data_fwd(dy, w, x_shape, strides, padding):
    return _bwd_data(dy, w, x_shape, strides, padding), (dy, w)


def _bwd_data_bwd(x_shape, strides, padding, res, g):  # g: [N, H, W, C]
    dy, w = res
    return _fwd(g, w, strides, padding), _bwd_weights(g, dy, w.shape, strides, padding)


_bwd_data.defvjp(_bwd_data_fwd, _bwd_data_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _bwd_weights(x, dy, w_shape, strides, padding):
    return _call("bwd_weights", w_shape, x, dy, strides, padding)


def _bwd_weights_fwd(x, dy, w_shape, strides, padding):
    return _bwd_weights(x, dy, w_shape, strides, padding), (x, dy)


def _bwd_weights_bwd(w_shape, strides, padding, res, g):  # g: [KH, KW, C, O]
    x, dy = res
    return _dx(dy, g, x.shape, strides, padding), _fwd(x, g, strides, padding)


_bwd_weights.defvjp(_bwd_weights_fwd, _bwd_weights_bwd)


def _normalize(strides, padding):
    strides = tuple(int(s) for s in strides)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(strides) != 2 or len(padding) != 2:
        raise ValueError(f"2-D convolution expected, got strides {strides}, padding {padding}")
    return strides, padding


def _checked(a, w, strides, padding):
    """The public ops' common checks: the backend is available (`ConfigError` otherwise), both
    operands are float32, padding is >= 0. Returns (strides, padding) normalised."""
    require()
    strides, padding = _normalize(strides, padding)
    if a.dtype != jnp.float32 or w.dtype != jnp.float32:
        raise TypeError(f"oneDNN conv is float32 only, got {a.dtype} and {w.dtype}")
    if min(min(p) for p in padding) < 0:
        raise ValueError(f"oneDNN conv needs padding >= 0, got {padding}")
    return strides, padding


def conv(x, w, strides=(1, 1), padding=((0, 0), (0, 0))):
    """`lax.conv_general_dilated(x, w, strides, padding, ("NHWC", "HWIO", "NHWC"))` in oneDNN.

    x [N, H, W, C] and w [KH, KW, C, O], float32; padding is explicit ((lo, hi), (lo, hi)),
    each >= 0. Raises `ConfigError` (one line, with the fix) when the backend is unavailable.
    """
    strides, padding = _checked(x, w, strides, padding)
    return _fwd(x, w, strides, padding)


def conv_input_grad(dy, w, x_shape, strides=(1, 1), padding=((0, 0), (0, 0))):
    """The input gradient of `conv(x, w, strides, padding)` for output cotangent `dy`, with x of
    `x_shape`: oneDNN's backward-data. As a function of `dy` this is a transposed convolution
    (torch's `conv_transpose2d(dy, w.transpose(3, 2, 0, 1))` in NCHW), which is how
    `layers.ConvTranspose` runs its "native" form. Differentiable to any order, like `conv`.

    dy [N, OH, OW, O], w [KH, KW, C, O], x_shape (N, H, W, C), float32; padding >= 0 and
    consistent with the shapes (OH = (H + pt + pb - KH) // sh + 1, likewise OW).
    """
    strides, padding = _checked(dy, w, strides, padding)
    x_shape = tuple(int(d) for d in x_shape)
    want = _out_shape(x_shape, w.shape, strides, padding)
    if tuple(dy.shape) != want or x_shape[-1] != w.shape[2]:
        raise ValueError(
            f"conv_input_grad: dy {tuple(dy.shape)} and w {tuple(w.shape)} do not fit x "
            f"{x_shape} (a conv of x gives {want})"
        )
    return _bwd_data(dy, w, x_shape, strides, padding)


def _supported(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
    preferred_element_type,
):
    """Explicit ((lo, hi), (lo, hi)) padding when oneDNN can compute this conv, else None."""
    if lhs.ndim != 4 or rhs.ndim != 4 or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
        return None
    if preferred_element_type not in (None, jnp.float32, np.float32):
        return None
    if feature_group_count != 1 or batch_group_count != 1:
        return None
    if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
        return None
    if dimension_numbers is None:
        return None  # lax's default is NCHW/OIHW
    want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != want:
        return None
    if 0 in lhs.shape or 0 in rhs.shape or len(window_strides) != 2:
        return None
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if min(min(p) for p in padding) < 0:
        return None
    if any(lhs.shape[1 + i] + sum(padding[i]) < rhs.shape[i] for i in range(2)):
        return None
    if jax.default_backend() != "cpu" or not is_available():
        return None
    return padding


def _crop_negative_padding(lhs, rhs, padding, lhs_dilation, dimension_numbers):
    """(lhs cropped, padding >= 0) for explicit negative padding without lhs dilation."""
    if isinstance(padding, str) or any(d != 1 for d in (lhs_dilation or ())):
        return lhs, padding
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if min(min(p) for p in padding) >= 0:
        return lhs, padding
    if dimension_numbers is None:
        spatial = tuple(range(2, lhs.ndim))
    else:
        spatial = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers).lhs_spec[2:]
    if len(spatial) != len(padding):
        return lhs, padding
    for dim, (lo, hi) in zip(spatial, padding, strict=True):
        start, stop = max(0, -lo), lhs.shape[dim] - max(0, -hi)
        if stop <= start:
            return lhs, padding  # nothing left: let lax report it
        lhs = lax.slice_in_dim(lhs, start, stop, axis=dim)
    return lhs, tuple((max(0, lo), max(0, hi)) for lo, hi in padding)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """`lax.conv_general_dilated`, computed by oneDNN where supported (see the module doc).

    Negative explicit padding is applied as a crop of `lhs` first, on both paths: XLA's CPU
    convolution reads past the input when one side of a dimension is negative and the other
    positive (jax 0.10, e.g. padding ((-1, 1), (0, 0))), and a crop is exact.
    """
    lhs, padding = _crop_negative_padding(lhs, rhs, padding, lhs_dilation, dimension_numbers)
    pads = _supported(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        batch_group_count,
        preferred_element_type,
    )
    if pads is None:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    return _fwd(lhs, rhs, _normalize(window_strides, pads)[0], pads)


CONV_BACKENDS = ("auto", "xla", "onednn")
log = logging.getLogger("genimg")
_auto_choice: dict = {}  # "auto" -> (resolved backend, why), once per process


def check_conv_backend(backend: str) -> None:
    """ValueError (one line) unless `backend` is one of `CONV_BACKENDS`."""
    if backend not in CONV_BACKENDS:
        raise ValueError(f"unknown conv_backend {backend!r}; expected one of {CONV_BACKENDS}")


def _choose_auto() -> tuple[str, str]:
    """("onednn" | "xla", why) for "auto" in this process: oneDNN on the CPU backend when it is
    available, XLA on GPU/TPU and wherever the extension or its runtime is missing."""
    backend = jax.default_backend()
    if backend != "cpu":
        return "xla", f"jax runs on {backend}"
    reason = unavailable_reason()
    if reason is not None:
        return "xla", reason
    return "onednn", "oneDNN for the CPU convolutions it supports, XLA for the others"


def resolve_conv_backend(backend: str) -> str:
    """What `backend` runs on in this process: "xla" or "onednn".

    "auto" picks once per process and logs the choice in one line (an unavailable oneDNN is a
    fallback to XLA with its reason, not an error); "onednn" raises `ConfigError` (one line,
    with the fix) when the backend is unavailable; "xla" is "xla".
    """
    check_conv_backend(backend)
    if backend == "xla":
        return "xla"
    if backend == "onednn":
        require()
        return "onednn"
    choice = _choose_auto()  # the same in every call of a process (the backend loads once)
    with _lock:
        first = "auto" not in _auto_choice
        resolved, why = _auto_choice.setdefault("auto", choice)
    if first:
        log.info("conv_backend=auto: %s convolutions (%s)", resolved, why)
    return resolved


def conv_fn(backend: str):
    """The `conv_general_dilated` to use for `backend` ("auto" | "xla" | "onednn").

    "onednn" raises `ConfigError` (one line, with the fix) if the backend is unavailable, so a
    run that asked for it never silently measures XLA instead; "auto" falls back to XLA
    (`resolve_conv_backend`). Either way oneDNN takes only the convolutions it supports
    (`conv_general_dilated`), on the CPU backend.
    """
    if resolve_conv_backend(backend) == "xla":
        return lax.conv_general_dilated
    return conv_general_dilated
