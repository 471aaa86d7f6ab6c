"""Synthesis on any family, through the capabilities of its `Family` record.

- sampling: `generate` (optionally for chosen classes);
- latent spaces: `latent_traversal`; `lerp`, `slerp` and `interpolate_codes` between codes
  drawn from the prior (`prior_codes`) or encoded from images (`encode_images`), decoded by
  `decode_codes`;
- arithmetic: `class_means` of codes, `vector_arithmetic` (``z - mean[b] + mean[a]``: the
  same example moved from class b to class a) and, for conditional families, `relabel` (the
  same ``z`` decoded for another class); `predict_labels` labels samples with a classifier;
- inpainting: `make_mask`, `inpaint_invert` (optimise the code of a generator on the visible
  pixels), `inpaint_encode_decode` (iterate an encoder-decoder with the visible pixels
  clamped), and the baselines `inpaint_mean` and `inpaint_nearest`;
- compositing: `matte`, `compose` and `composite_scenes` (several generated objects on one
  canvas, with the per-pixel class map of the top object).

Everything takes ``(family, state, ...)`` and works for every family that has the pieces it
needs; it never names a family. A tool that needs a capability the family lacks raises a
one-line `UserError` that names it (`require`). Images are float ``[N, H, W, C]`` in [0, 1]
unless marked uint8; a mask is bool ``[N, H, W, 1]``, True where a pixel is hidden. A family
that samples draws its codes from a standard normal of ``latent_dim`` dimensions and maps
them to images with ``decode`` (the GAN generator, the VAE decoder's mean).
"""

from __future__ import annotations

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.ndimage
import tqdm
from PIL import Image

from genimg import images as images_lib
from genimg.data import decode_inputs
from genimg.errors import UserError
from genimg.train.family import Family

# What each capability is, for the errors of `require`.
_CAPABILITIES = {
    "sample": "sampler",
    "encode": "encoder",
    "decode": "decoder or generator",
    "reconstruct": "encoder-decoder",
    "latent_dim": "latent size",
    "classify": "classifier",
}


def require(family: Family, task: str, *capabilities: str) -> None:
    """Raise a one-line `UserError` unless ``family`` has every capability named."""
    missing = [c for c in capabilities if getattr(family, c) is None]
    if missing:
        what = " and no ".join(f"{_CAPABILITIES[c]} (Family.{c})" for c in missing)
        raise UserError(f"family '{family.name}' cannot {task}: it has no {what}")


def _jit(family: Family, name: str, fn):
    """``jax.jit(fn)`` cached on the (frozen) family record under ``name``."""
    cache = family.__dict__.setdefault("_synthesis_jit", {})
    if name not in cache:
        cache[name] = jax.jit(fn)
    return cache[name]


def map_batches(fn, arrays, batch_size: int):
    """``fn(*chunk)`` over the leading axis of ``arrays`` (None entries pass through) in
    chunks of one fixed size (the last one padded by repeating its first row, so ``fn``
    compiles once), concatenated as numpy; ``fn`` may return an array or a tuple of them."""
    n = len(next(a for a in arrays if a is not None))
    size = max(1, min(batch_size, n))
    outs = []
    for start in range(0, n, size):
        keep = min(size, n - start)
        chunk = []
        for a in arrays:
            if a is None:
                chunk.append(None)
                continue
            part = np.asarray(a[start : start + size])
            if keep < size:
                part = np.concatenate([part, np.repeat(part[:1], size - keep, axis=0)])
            chunk.append(part)
        out = jax.device_get(fn(*chunk))
        out = out if isinstance(out, tuple) else (out,)
        outs.append([np.asarray(o)[:keep] for o in out])
    joined = tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))
    return joined if len(joined) > 1 else joined[0]


def _jitted_sampler(family: Family):
    """``jax.jit(family.sample)`` with ``num`` static, cached on the family record."""
    fn = getattr(family, "_jitted_sample", None)
    if fn is None:
        fn = jax.jit(family.sample, static_argnums=2)
        object.__setattr__(family, "_jitted_sample", fn)  # the record is frozen; a cache
    return fn


def generate(
    family: Family,
    state,
    num: int,
    seed: int = 0,
    batch_size: int = 256,
    labels=None,
    progress: bool = True,
):
    """``(images uint8 [num, H, W, C], labels int32 [num] or None)``.

    Drawn in fixed-size batches (one compilation) from ``fold_in(key(seed), start)``.
    ``labels`` (conditional families only) asks for those classes, one per sample; without
    them a conditional family draws balanced classes per batch.
    """
    if family.sample is None:
        raise UserError(f"family '{family.name}' cannot sample")
    if num < 1:
        raise UserError(f"the number of samples must be >= 1, got {num}")
    labels = family.check_labels(labels, num)
    sample = _jitted_sampler(family)
    rng = jax.random.key(seed)
    images, drawn = [], []
    for start in tqdm.trange(
        0, num, batch_size, desc="sampling", unit="batch", disable=not progress
    ):
        chunk = None
        if labels is not None:
            chunk = labels[start : start + batch_size]
            chunk = jnp.asarray(chunk[np.arange(batch_size) % len(chunk)])  # pad by repetition
        x, y = sample(state, jax.random.fold_in(rng, start), batch_size, chunk)
        keep = min(batch_size, num - start)
        images.append(np.asarray(jax.device_get(x))[:keep])
        if y is not None:
            drawn.append(np.asarray(jax.device_get(y), np.int32)[:keep])
    out_labels = np.concatenate(drawn) if drawn else None
    return images_lib.to_uint8(np.concatenate(images)), out_labels


def latent_traversal(
    family: Family, state, x, labels=None, num_dims: int = 10, num_steps: int = 11, span=3.0
):
    """Images ``[D * S, H, W, C]``: row ``d`` sweeps latent dimension ``d`` over
    ``linspace(-span, span, S)`` around the code of ``x[:1]``, the other dimensions fixed."""
    if family.encode is None or family.decode is None:
        raise UserError(f"family '{family.name}' has no encoder and decoder to traverse")
    labels = None if labels is None else jnp.asarray(labels)[:1]
    code = family.encode(state, x[:1], labels)  # [1, L]
    dims = min(num_dims, code.shape[-1])
    values = jnp.linspace(-span, span, num_steps)
    z = jnp.tile(code, (dims * num_steps, 1))  # [D * S, L]
    rows = jnp.repeat(jnp.arange(dims), num_steps)
    z = z.at[jnp.arange(dims * num_steps), rows].set(jnp.tile(values, dims))
    tiled = None if labels is None else jnp.repeat(labels, dims * num_steps)
    return family.decode(state, z, tiled)


def translate_all(
    family: Family,
    state,
    inputs: np.ndarray,
    input_classes: int | None = None,
    batch_size: int = 256,
    rng=None,
    progress: bool = True,
) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` translations of paired-data inputs (uint8 ``[N, H, W, C']``, label
    ids when ``input_classes`` is set) by an image-to-image family, in fixed-size batches (the
    last one padded, so the network compiles once). ``rng`` turns the family's noise on."""
    if family.translate is None:
        raise UserError(f"family '{family.name}' does not translate inputs to images")
    inputs = np.asarray(inputs)
    fn = getattr(family, "_jitted_translate", None)
    if fn is None:
        fn = jax.jit(family.translate)
        object.__setattr__(family, "_jitted_translate", fn)  # the record is frozen; a cache
    batch = min(batch_size, len(inputs))
    out = []
    for start in tqdm.trange(
        0, len(inputs), batch, desc="translating", unit="batch", disable=not progress
    ):
        chunk = inputs[start : start + batch]
        keep = len(chunk)
        if keep < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - keep, *chunk.shape[1:]), chunk.dtype)])
        x = decode_inputs(chunk, input_classes)
        key = None if rng is None else jax.random.fold_in(rng, start)
        y = fn(state, x) if key is None else fn(state, x, key)
        out.append(np.asarray(jax.device_get(y))[:keep])
    return images_lib.to_uint8(np.concatenate(out))


# --- codes and interpolation -------------------------------------------------------------------


def prior_codes(family: Family, rng: jax.Array, num: int) -> jax.Array:
    """``num`` codes ``[num, latent_dim]`` from the standard normal prior of a family that
    samples (a GAN's z, a VAE's prior)."""
    require(family, "draw codes from a prior", "sample", "decode", "latent_dim")
    return jax.random.normal(rng, (num, family.latent_dim))


def encode_images(family: Family, state, images, labels=None, batch_size: int = 256):
    """Codes ``[N, latent_dim]`` of float images (a VAE's posterior means) as numpy."""
    require(family, "encode images", "encode")
    labels = family.check_labels(labels, len(images))
    fn = _jit(family, "encode", family.encode)
    return map_batches(lambda x, y: fn(state, x, y), (images, labels), batch_size)


def decode_codes(family: Family, state, codes, labels=None, batch_size: int = 256):
    """Images ``[..., H, W, C]`` (numpy) of codes ``[..., latent_dim]`` (and labels ``[...]``)."""
    require(family, "decode codes", "decode")
    codes = np.asarray(codes, np.float32)
    lead = codes.shape[:-1]
    flat = codes.reshape(-1, codes.shape[-1])
    flat_labels = None
    if labels is not None:
        flat_labels = family.check_labels(np.broadcast_to(labels, lead).reshape(-1), len(flat))
    fn = _jit(family, "decode", family.decode)
    out = map_batches(lambda z, y: fn(state, z, y), (flat, flat_labels), batch_size)
    return out.reshape(*lead, *out.shape[1:])


def lerp(a, b, t):
    """``(1 - t) a + t b`` for codes ``a``, ``b`` ``[..., D]`` and ``t`` broadcasting."""
    t = jnp.asarray(t)[..., None]
    return (1.0 - t) * a + t * b


def slerp(a, b, t, eps: float = 1e-7):
    """Spherical interpolation (Shoemake 1985; for GAN latents White 2016):
    ``sin((1 - t) w) / sin(w) a + sin(t w) / sin(w) b`` with ``w`` the angle between ``a`` and
    ``b``. For codes of equal norm every point has that norm (a Gaussian code's typical norm,
    where lerp would pass through the unlikely low-norm middle); it returns ``a`` at t=0 and
    ``b`` at t=1 and falls back to lerp for (anti)parallel codes."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    t = jnp.asarray(t)[..., None]
    cos = jnp.sum(a * b, -1, keepdims=True) / (
        jnp.linalg.norm(a, axis=-1, keepdims=True) * jnp.linalg.norm(b, axis=-1, keepdims=True)
    )
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    sin = jnp.sin(omega)
    safe = jnp.where(sin > eps, sin, 1.0)
    spherical = (jnp.sin((1.0 - t) * omega) * a + jnp.sin(t * omega) * b) / safe
    out = jnp.where(sin > eps, spherical, lerp(a, b, t[..., 0]))
    # The ends bit for bit (the formula gives them only up to rounding).
    return jnp.where(t == 0, a, jnp.where(t == 1, b, out))


INTERPOLATIONS = {"lerp": lerp, "slerp": slerp}


def interpolate_codes(a, b, steps: int, mode: str = "slerp") -> np.ndarray:
    """``[P, steps, D]``: ``steps`` evenly spaced points from ``a[p]`` to ``b[p]`` (both
    included) by ``mode`` ("lerp" or "slerp")."""
    if mode not in INTERPOLATIONS:
        raise UserError(f"unknown interpolation '{mode}'; expected lerp or slerp")
    if steps < 2:
        raise UserError(f"interpolation needs at least 2 steps, got {steps}")
    t = jnp.linspace(0.0, 1.0, steps)
    a, b = jnp.asarray(a)[:, None], jnp.asarray(b)[:, None]  # [P, 1, D]
    return np.asarray(INTERPOLATIONS[mode](a, b, t[None, :]))


# --- arithmetic ----------------------------------------------------------------------------------


def predict_labels(classifier: Family, clf_state, images, batch_size: int = 500):
    """``(labels int32 [N], confidence [N])``: a classifier's top class and its softmax
    probability for float images in [0, 1]."""
    require(classifier, "label images", "classify")
    fn = _jit(classifier, "classify", classifier.classify)

    def top(x):
        probs = jax.nn.softmax(fn(clf_state, x)[1], axis=-1)
        return jnp.argmax(probs, -1).astype(jnp.int32), jnp.max(probs, -1)

    return map_batches(top, (np.asarray(images, np.float32),), batch_size)


def class_means(codes, labels, num_classes: int):
    """``(means [K, D], counts [K])`` of codes per class (NaN rows for absent classes)."""
    codes, labels = np.asarray(codes, np.float64), np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    sums = np.zeros((num_classes, codes.shape[-1]))
    np.add.at(sums, labels, codes)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    return means.astype(np.float32), counts


def vector_arithmetic(family: Family, state, codes, source, means, targets, batch_size=256):
    """Images ``[R, T, H, W, C]``: ``decode(codes[r] - means[source[r]] + means[targets[t]])``,
    i.e. ``c - b + a`` with ``b``, ``a`` class-mean codes: example ``r`` moved from its class to
    each target class (the column of its own class decodes its own code)."""
    means = np.asarray(means)
    missing = [
        int(c) for c in np.unique(np.concatenate([source, targets])) if np.isnan(means[c]).any()
    ]
    if missing:
        raise UserError(f"no codes of class {missing[0]} to average: its class mean is undefined")
    codes = np.asarray(codes)[:, None] - means[source][:, None] + means[targets][None]
    return decode_codes(family, state, codes, None, batch_size)


def relabel(family: Family, state, codes, targets, batch_size: int = 256):
    """Images ``[R, T, H, W, C]``: the same code ``codes[r]`` decoded for each class
    ``targets[t]`` of a conditional family ("same pose, other garment")."""
    if not family.conditional:
        raise UserError(f"family '{family.name}' is unconditional: it has no class to change")
    codes = np.broadcast_to(np.asarray(codes)[:, None], (len(codes), len(targets), codes.shape[-1]))
    labels = np.broadcast_to(np.asarray(targets)[None], codes.shape[:2])
    return decode_codes(family, state, codes, labels, batch_size)


# --- inpainting ----------------------------------------------------------------------------------

MASK_HELP = (
    "center, left, right, top, bottom, random:P (each pixel hidden with probability P) or "
    "FILE.png (white = hidden)"
)


def load_mask_file(path, height: int, width: int) -> np.ndarray:
    """A PNG mask ``[H, W]`` bool, True (hidden) where the grey level is >= 128; it must have
    the images' size."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} not found")
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
    except OSError as err:
        raise UserError(f"mask file {path} is not a readable image ({err})") from err
    if grey.shape != (height, width):
        raise UserError(
            f"mask file {path} is {grey.shape[1]}x{grey.shape[0]} (width x height); the "
            f"images are {width}x{height}"
        )
    return grey >= 128


def make_mask(spec: str, num: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Masks ``[num, H, W, 1]`` bool, True where a pixel is hidden: ``center`` (the central
    square of half the side), ``left`` / ``right`` / ``top`` / ``bottom`` (that half),
    ``random:P`` (each pixel independently with probability P, a fresh draw per image from
    ``seed``) or a PNG file of the images' size (the same mask for every image)."""
    mask = np.zeros((num, height, width, 1), bool)
    if spec == "center":
        mask[:, height // 4 : height // 4 + height // 2, width // 4 : width // 4 + width // 2] = (
            True
        )
    elif spec == "left":
        mask[:, :, : width // 2] = True
    elif spec == "right":
        mask[:, :, width // 2 :] = True
    elif spec == "top":
        mask[:, : height // 2] = True
    elif spec == "bottom":
        mask[:, height // 2 :] = True
    elif spec.startswith("random:"):
        match = re.fullmatch(r"random:([0-9.eE+-]+)", spec)
        p = float(match.group(1)) if match else -1.0
        if not 0.0 <= p <= 1.0:
            raise UserError(f"mask {spec}: P must be a probability in [0, 1], like random:0.5")
        mask = np.random.default_rng(seed).random(mask.shape) < p
    elif spec.lower().endswith(".png") or pathlib.Path(spec).is_file():
        mask[:] = load_mask_file(spec, height, width)[None, :, :, None]
    else:
        raise UserError(f"unknown mask '{spec}'; expected {MASK_HELP}")
    return mask


def _visible_fill(images, mask):
    """Per-image mean of the visible pixels ``[N, 1, 1, C]`` (0.5 where none is visible)."""
    visible = ~mask
    count = visible.sum(axis=(1, 2), keepdims=True)
    total = (images * visible).sum(axis=(1, 2), keepdims=True)
    return np.where(count > 0, total / np.maximum(count, 1), 0.5).astype(np.float32)


def inpaint_mean(images, mask, mean_image) -> np.ndarray:
    """Baseline: the hidden pixels of ``images`` from ``mean_image`` [H, W, C] (e.g. the
    training set's mean)."""
    return np.where(mask, np.asarray(mean_image, np.float32)[None], images)


def inpaint_nearest(images, mask, reference, batch_size: int = 250):
    """Baseline: fill each hole from the reference image (e.g. a training image) nearest to it
    on the visible pixels (squared distance). Returns ``(filled, neighbour indices [N])``."""
    ref = jnp.asarray(reference, jnp.float32).reshape(len(reference), -1)  # [M, P]
    ref_sq = jnp.square(ref)

    @jax.jit
    def nearest(x, m):  # x [B, H, W, C], m [B, H, W, 1] -> [B]
        v = jnp.broadcast_to(~m, x.shape).reshape(len(x), -1).astype(jnp.float32)
        x = x.reshape(len(x), -1)
        # sum_p v (x - r)^2 = sum v x^2 - 2 (v x) . r + v . r^2, for every reference r at once
        dist = jnp.sum(v * x * x, -1, keepdims=True) - 2.0 * (v * x) @ ref.T + v @ ref_sq.T
        return jnp.argmin(dist, axis=-1)

    index = map_batches(nearest, (np.asarray(images, np.float32), mask), batch_size)
    neighbours = np.asarray(reference, np.float32)[index]
    return np.where(mask, neighbours, images), index


def inpaint_encode_decode(
    family: Family,
    state,
    images,
    mask,
    labels=None,
    *,
    iterations: int = 20,
    init=None,
    batch_size: int = 256,
) -> np.ndarray:
    """Fill the hidden pixels by iterating the family's encoder-decoder with the visible
    pixels clamped: ``x <- where(mask, reconstruct(x), x_visible)``, ``iterations`` times from
    the hole filled with ``init`` ([H, W, C] or [N, H, W, C]; default: each image's mean
    visible pixel). A VAE then moves towards a fixed point of its posterior-mean
    reconstruction, a denoising autoencoder denoises its own fill (Rezende et al. 2014 impute
    missing pixels the same way). Visible pixels are returned exactly as given."""
    require(family, "inpaint by encode-decode", "reconstruct")
    if iterations < 1:
        raise UserError(f"encode-decode inpainting needs >= 1 iteration, got {iterations}")
    images = np.asarray(images, np.float32)
    labels = family.check_labels(labels, len(images))
    fill = _visible_fill(images, mask) if init is None else np.asarray(init, np.float32)
    start = np.where(mask, np.broadcast_to(fill, images.shape), images)
    reconstruct = family.reconstruct

    def run(state, x, x0, m, y):
        body = lambda _, cur: jnp.where(m, reconstruct(state, cur, y), x)
        return jax.lax.fori_loop(0, iterations, body, x0)

    fn = _jit(family, f"encode_decode_{iterations}", run)
    filled = map_batches(
        lambda x, x0, m, y: fn(state, x, x0, m, y), (images, start, mask, labels), batch_size
    )
    return np.where(mask, filled, images)  # visible pixels bit for bit


def inpaint_invert(
    family: Family,
    state,
    images,
    mask,
    labels=None,
    *,
    seed: int = 0,
    steps: int = 100,
    restarts: int = 2,
    lr: float = 0.1,
    prior_weight: float = 0.01,
    batch_size: int = 128,
    progress: bool = False,
):
    """Fill the hidden pixels from the generator: find a code ``z`` whose image fits the
    visible pixels (Yeh et al. 2017, with a pixel loss), then take the hole from ``decode(z)``.

    Minimises ``mean_visible((decode(z) - x)^2) + prior_weight * mean(z^2)`` (the second term
    is the standard normal prior's negative log-density, up to scale) with Adam(``lr``) for
    ``steps`` steps from ``restarts`` independent draws of ``z`` per image, and keeps the
    restart with the lowest visible-pixel error. ``labels``: the class of each image for a
    conditional family. Returns ``(filled images, info)`` with ``info`` holding the chosen
    ``codes`` and the visible-pixel MSE of the best restart ``before`` and ``after``
    optimisation (``[N]`` each). Visible pixels are returned exactly as given.
    """
    require(family, "inpaint by inverting the generator", "decode", "latent_dim")
    if steps < 0 or restarts < 1:
        raise UserError(f"inversion needs steps >= 0 and restarts >= 1, got {steps}, {restarts}")
    images = np.asarray(images, np.float32)
    labels = family.check_labels(labels, len(images))
    decode, dim = family.decode, family.latent_dim
    tx = optax.adam(lr)

    def run(state, x, m, y, rng):  # x [B, H, W, C] -> codes [B, D], errors before / after
        b = x.shape[0]
        visible = jnp.broadcast_to(~m, x.shape).astype(jnp.float32)
        count = jnp.maximum(jnp.sum(visible, axis=(1, 2, 3)), 1.0)  # [B]
        tiled_y = None if y is None else jnp.tile(y, restarts)

        def errors(z):  # z [R, B, D] -> visible MSE [R, B], prior [R, B]
            out = decode(state, z.reshape(restarts * b, dim), tiled_y).reshape(restarts, *x.shape)
            mse = jnp.sum(visible * jnp.square(out - x), axis=(2, 3, 4)) / count
            return mse, jnp.mean(jnp.square(z), axis=-1)

        def objective(z):  # the problems are independent: the sum separates their gradients
            mse, prior = errors(z)
            return jnp.sum(mse + prior_weight * prior)

        def body(_, carry):
            z, opt_state = carry
            grads = jax.grad(objective)(z)
            updates, opt_state = tx.update(grads, opt_state, z)
            return optax.apply_updates(z, updates), opt_state

        z0 = jax.random.normal(rng, (restarts, b, dim))
        before, _ = errors(z0)
        z, _ = jax.lax.fori_loop(0, steps, body, (z0, tx.init(z0)))
        after, _ = errors(z)
        best = jnp.argmin(after, axis=0)  # [B]
        codes = jnp.take_along_axis(z, best[None, :, None], axis=0)[0]
        first = jnp.take_along_axis(before, best[None], axis=0)[0]
        last = jnp.take_along_axis(after, best[None], axis=0)[0]
        return codes, first, last

    fn = _jit(family, f"invert_{steps}_{restarts}_{lr}_{prior_weight}", run)
    base = jax.random.key(seed)
    chunks = []
    size = max(1, min(batch_size, len(images)))
    for start in tqdm.trange(0, len(images), size, desc="inverting", disable=not progress):
        sl = slice(start, start + size)
        part = (images[sl], mask[sl], None if labels is None else labels[sl])
        chunks.append(
            map_batches(
                lambda x, m, y, _s=start: fn(state, x, m, y, jax.random.fold_in(base, _s)),
                part,
                size,
            )
        )
    codes, before, after = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
    generated = decode_codes(family, state, codes, labels, batch_size)
    filled = np.where(mask, generated, images)
    return filled, {"codes": codes, "before": before, "after": after}


# --- compositing ---------------------------------------------------------------------------------

MATTES = ("hard", "soft")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2


def matte(objects, mode: str = "soft", threshold: float = 0.1, fill_holes: bool = True):
    """Alpha ``[N, h, w, 1]`` in [0, 1] of bright objects on a dark background (as generated
    for Fashion-MNIST / MNIST) from their own brightness: "hard" is 1 where the brightness
    exceeds ``threshold``; "soft" ramps linearly from 0 at ``threshold / 2`` to 1 at
    ``1.5 * threshold`` (a soft matte with the hard one as its limit). With ``fill_holes``
    dark pixels enclosed by the silhouette are opaque too (a black pattern on a garment still
    hides what lies behind it)."""
    if mode not in MATTES:
        raise UserError(f"unknown matte '{mode}'; expected hard or soft")
    if not 0.0 < threshold < 1.0:
        raise UserError(f"the matte threshold must be in (0, 1), got {threshold}")
    objects = np.asarray(objects, np.float32)
    lum = objects[..., 0] if objects.shape[-1] == 1 else objects[..., :3] @ _LUMA  # [N, h, w]
    hard = lum > threshold
    filled = np.stack([scipy.ndimage.binary_fill_holes(h) for h in hard]) if fill_holes else hard
    if mode == "hard":
        alpha = filled.astype(np.float32)
    else:
        ramp = np.clip((lum - threshold) / threshold + 0.5, 0.0, 1.0)
        alpha = np.maximum(ramp, (filled & ~hard).astype(np.float32))
    return alpha[..., None].astype(np.float32)


def compose(objects, alphas, labels, positions, canvas_shape, background: int):
    """Layer ``objects`` ``[M, h, w, C]`` onto a black canvas ``(H, W)`` in order (the last on
    top), each at ``positions[m] = (top, left)``: ``canvas = alpha * object + (1 - alpha) *
    canvas``. Returns ``(image [H, W, C], label_map [H, W], instance_map [H, W])``: per pixel
    the class (``labels[m]``) and the index ``m`` of the topmost object whose alpha is > 0
    there, ``background`` and -1 where there is none."""
    objects, alphas = np.asarray(objects, np.float32), np.asarray(alphas, np.float32)
    height, width = canvas_shape
    _, h, w, channels = objects.shape
    image = np.zeros((height, width, channels), np.float32)
    label_map = np.full((height, width), background, np.int32)
    instance_map = np.full((height, width), -1, np.int32)
    for m, (top, left) in enumerate(np.asarray(positions, int)):
        if not (0 <= top <= height - h and 0 <= left <= width - w):
            raise ValueError(
                f"object {m} at {(top, left)} does not fit the {height}x{width} canvas"
            )
        region = (slice(top, top + h), slice(left, left + w))
        a = alphas[m]
        image[region] = a * objects[m] + (1.0 - a) * image[region]
        on = a[..., 0] > 0
        label_map[region][on] = labels[m]
        instance_map[region][on] = m
    return image, label_map, instance_map


def composite_scenes(
    family: Family,
    state,
    num_scenes: int,
    *,
    canvas: int = 64,
    items: tuple[int, int] = (2, 4),
    classes=None,
    label_images=None,
    num_classes: int | None = None,
    matte_mode: str = "soft",
    threshold: float = 0.1,
    seed: int = 0,
    batch_size: int = 256,
) -> dict:
    """``num_scenes`` canvases of ``canvas x canvas`` pixels, each with a number of generated
    objects uniform in ``items = (min, max)``, at uniform random positions, layered in drawing
    order with alpha from their own `matte`.

    Objects of a conditional family are drawn for classes uniform over ``classes`` (default:
    all); an unconditional family's samples are labelled by ``label_images`` (float images ->
    int labels, e.g. a classifier via `predict_labels`; ``num_classes`` then says how many
    classes it has) and those of ``classes`` kept. Deterministic given ``seed``.

    Returns numpy arrays: ``images`` [N, S, S, C] in [0, 1], ``label_maps`` [N, S, S] uint8
    (class of the top object, ``background`` = the number of classes where none),
    ``instance_maps`` [N, S, S] int8 (layer index of the top object, -1 where none),
    ``alphas`` [N, S, S] (coverage of the composed objects), ``items`` [N, max, 4] int32
    (class, top, left, layer; -1 rows past each scene's count) and ``background``.
    """
    require(family, "composite generated objects", "sample")
    lo, hi = items
    if not 1 <= lo <= hi:
        raise UserError(f"items per scene must satisfy 1 <= min <= max, got {lo}..{hi}")
    if family.conditional:
        num_classes = family.num_classes
    elif label_images is None or not num_classes:
        raise UserError(
            f"family '{family.name}' is unconditional: compositing needs class ids for the "
            "label map, from a classifier of its samples"
        )
    classes = np.arange(num_classes) if classes is None else np.unique(np.asarray(classes))
    if len(classes) == 0 or classes.min() < 0 or classes.max() >= num_classes:
        raise UserError(f"classes must lie in 0..{num_classes - 1}, got {classes.tolist()}")
    if num_classes > 255:
        raise UserError(f"label maps are uint8: at most 255 classes, this run has {num_classes}")
    rng = np.random.default_rng(seed)
    counts = rng.integers(lo, hi + 1, size=num_scenes)
    total = int(counts.sum())

    if family.conditional:
        labels = rng.choice(classes, size=total).astype(np.int32)
        objects, _ = generate(family, state, total, seed, batch_size, labels, progress=False)
        objects = objects.astype(np.float32) / 255.0
    else:
        # Draw a pool large enough to hold `total` objects of the wanted classes.
        pool = total * max(2, 2 * num_classes // len(classes))
        drawn, _ = generate(family, state, pool, seed, batch_size, progress=False)
        drawn = drawn.astype(np.float32) / 255.0
        predicted = np.asarray(label_images(drawn))
        keep = np.flatnonzero(np.isin(predicted, classes))
        if len(keep) < total:
            raise UserError(
                f"the classifier put only {len(keep)} of {pool} samples in classes "
                f"{classes.tolist()}; {total} are needed"
            )
        keep = keep[:total]
        objects, labels = drawn[keep], predicted[keep].astype(np.int32)

    _, h, w, channels = objects.shape
    if h > canvas or w > canvas:
        raise UserError(f"the canvas ({canvas} px) is smaller than an object ({h}x{w})")
    alphas = matte(objects, matte_mode, threshold)
    scenes = np.zeros((num_scenes, canvas, canvas, channels), np.float32)
    label_maps = np.zeros((num_scenes, canvas, canvas), np.uint8)
    instance_maps = np.zeros((num_scenes, canvas, canvas), np.int8)
    coverage = np.zeros((num_scenes, canvas, canvas), np.float32)
    table = np.full((num_scenes, hi, 4), -1, np.int32)
    start = 0
    for i, count in enumerate(counts):
        sl = slice(start, start + count)
        tops = rng.integers(0, canvas - h + 1, size=count)
        lefts = rng.integers(0, canvas - w + 1, size=count)
        positions = np.stack([tops, lefts], -1)
        scenes[i], label_maps[i], instance_maps[i] = compose(
            objects[sl], alphas[sl], labels[sl], positions, (canvas, canvas), num_classes
        )
        coverage[i] = _coverage(alphas[sl], positions, canvas)
        table[i, :count] = np.stack([labels[sl], tops, lefts, np.arange(count)], -1)
        start += count
    return {
        "images": scenes,
        "label_maps": label_maps,
        "instance_maps": instance_maps,
        "alphas": coverage,
        "items": table,
        "background": num_classes,
    }


def _coverage(alphas, positions, canvas: int) -> np.ndarray:
    """The composed alpha ``[S, S]``: ``1 - prod(1 - alpha_m)`` over the layered objects."""
    clear = np.ones((canvas, canvas), np.float32)
    h, w = alphas.shape[1:3]
    for a, (top, left) in zip(alphas, positions, strict=True):
        clear[top : top + h, left : left + w] *= 1.0 - a[..., 0]
    return 1.0 - clear
