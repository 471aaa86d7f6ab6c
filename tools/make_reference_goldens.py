r"""Writes the golden outputs of the PyTorch reference computations that the tests compare genimg
against without torch: `tests/data/reference_*.npz`.

Needs torch, torchvision and pytorch-fid (`pip install -e ".[reference]"`, CPU is enough):

    python -m tools.make_reference_goldens          # rewrite the files
    python -m tools.make_reference_goldens --check  # exit 1 unless the stored files are current

Nothing big is stored. The weights and inputs are drawn from seeded NumPy generators by the
functions below, which the tests call too; the files hold what the reference computes from
them (and the FID Inception's calibrated batch-norm statistics, which both sides then use):

- `reference_inception.npz`: pytorch-fid's FID Inception-v3 (`fid_inception_v3()` for the
  logits, `InceptionV3([3])` for the 2048-d pool features) with `inception_state_dict()`'s
  random weights (He-scaled convs, batch-norm scale around 1 and bias around 0). Its batch-norm
  running statistics are those of one pass in training mode over 2 calibration images, rounded
  to float16 (they are stored, 138 KB; the outputs are computed with the rounded values):
  random statistics would let activations blow up or vanish through 94 layers. Outputs on 2
  smooth 299x299 images: pool features and logits in float32, and the logits of image 0 in
  float64 (the float64 forward equals ours to rounding).
- `reference_conv_transpose.npz`: `torch.nn.ConvTranspose2d` in float64 for the (kernel,
  stride, padding, output_padding) configs of tests/test_layers.py, 3 -> 4 channels on a
  [2, 5, 6, 3] input.
- `reference_resize.npz`: `torch.nn.functional.interpolate(bilinear, align_corners=False)` to
  299x299 (pytorch-fid's resize, genimg's "legacy" mode) of random uint8 images, at a seeded
  subset of 2048 output pixels (plus the corners) per shape, not whole images.

The tests that read these files run everywhere; where torch is installed,
tests/test_reference_goldens.py recomputes them and checks they are current (CI installs
torch and sets GENIMG_REQUIRE_REFERENCE=1 so that it cannot skip).
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import zlib
from unittest import mock

import numpy as np

DATA = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"
INCEPTION_FILE = DATA / "reference_inception.npz"
CONV_TRANSPOSE_FILE = DATA / "reference_conv_transpose.npz"
RESIZE_FILE = DATA / "reference_resize.npz"

INCEPTION_SEED = 0
CALIBRATION_SEED, IMAGES_SEED = 1, 2
# (kernel, stride, padding, output_padding): tests/test_layers.py's MODEL_CONFIGS + ODD_CONFIGS.
CONV_TRANSPOSE_CONFIGS = [
    (5, 2, 2, 1),
    (5, 1, 2, 0),
    (3, 2, 1, 1),
    (4, 2, 1, 0),
    (5, 2, 2, 0),
    (3, 2, 0, 0),
    (3, 2, 3, 0),
    (4, 3, 1, 2),
]
RESIZE_SHAPES = [(2, 37, 53, 3), (1, 400, 512, 3), (2, 299, 64, 3)]
RESIZE_PIXELS = 2048
SIZE = 299


# --- inputs: NumPy only (the tests call these) ---------------------------------------------------


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def inception_state_shapes() -> dict[str, tuple[int, ...]]:
    """pytorch-fid's Inception state dict: tensor name -> shape (torch layout), without
    `num_batches_tracked`; derived from genimg's variable tree (module names are torchvision's)."""
    from genimg.metrics import inception_weights as iw

    shapes = {}
    for flat, shape in iw.expected_shapes().items():
        collection, *path, leaf = flat.split("/")
        module = ".".join(path)
        if collection == "batch_stats":
            shapes[f"{module}.running_{leaf}"] = shape
        elif leaf == "kernel" and len(shape) == 4:  # HWIO -> OIHW
            shapes[f"{module}.weight"] = (shape[3], shape[2], shape[0], shape[1])
        elif leaf == "kernel":  # [in, out] -> [out, in]
            shapes[f"{module}.weight"] = (shape[1], shape[0])
        elif leaf == "scale":
            shapes[f"{module}.weight"] = shape
        else:
            shapes[f"{module}.{leaf}"] = shape
    return shapes


def inception_state_dict(bn_stats=None, seed: int = INCEPTION_SEED) -> dict[str, np.ndarray]:
    """Seeded random weights in pytorch-fid's state-dict layout (float32), each tensor from its
    own generator (keyed by its name, so the order of the names does not matter). Batch-norm
    running statistics come from `bn_stats` (name -> array); without it they are 0 and 1."""
    state = {}
    for name, shape in inception_state_shapes().items():
        rng = _rng(seed, zlib.crc32(name.encode()))
        if name.endswith(("running_mean", "running_var")):
            default = np.zeros if name.endswith("mean") else np.ones
            value = bn_stats[name] if bn_stats is not None else default(shape)
        elif len(shape) == 4:  # conv: He-scaled
            value = rng.standard_normal(shape, np.float32) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif len(shape) == 2:  # the fc layer
            value = rng.standard_normal(shape, np.float32) / np.sqrt(shape[1])
        elif name.endswith("bn.weight"):
            value = rng.random(shape, np.float32) + 0.5
        else:  # biases
            value = rng.standard_normal(shape, np.float32) * 0.2
        state[name] = np.asarray(value, np.float32)
    return state


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float64 weights of bilinear resizing, align_corners=False."""
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), i0), 1 - frac)
    np.add.at(weights, (np.arange(n_out), i1), frac)
    return weights


def inception_images(seed: int, n: int = 2) -> np.ndarray:
    """[n, 299, 299, 3] float32 in [0, 1]: 19x19 random colours, bilinearly upsampled (smooth,
    like natural images; white noise is needlessly ill-conditioned)."""
    coarse = _rng(seed).random((n, 19, 19, 3))
    m = _bilinear_matrix(19, SIZE)
    return np.einsum("oh,nhwc,pw->nopc", m, coarse, m, optimize=True).astype(np.float32)


def conv_transpose_inputs(config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [2, 5, 6, 3] (NHWC), weight [3, 4, k, k] (torch layout), bias [4]; float64."""
    k = config[0]
    rng = _rng(1, *config)
    return rng.normal(size=(2, 5, 6, 3)), rng.normal(size=(3, 4, k, k)), rng.normal(size=(4,))


def conv_transpose_key(config) -> str:
    return "k{}_s{}_p{}_op{}".format(*config)


def resize_images(shape) -> np.ndarray:
    """Random uint8 images of `shape` [N, H, W, C]."""
    return _rng(3, *shape).integers(0, 256, shape, dtype=np.uint8)


def resize_key(shape) -> str:
    return "x".join(map(str, shape))


def resize_pixels(shape) -> np.ndarray:
    """[K, 4] (image, row, column, channel) indices of the checked output pixels: the four
    corners of every image and channel, then `RESIZE_PIXELS` random ones."""
    n, ends = shape[0], (0, SIZE - 1)
    corners = [(i, y, x, c) for i in range(n) for y in ends for x in ends for c in range(3)]
    random = _rng(4, *shape).integers(0, (n, SIZE, SIZE, 3), size=(RESIZE_PIXELS, 4))
    return np.concatenate([np.array(corners), random]).astype(np.int32)


# --- the reference: torch --------------------------------------------------------------------


@functools.cache
def _torch():
    import torch

    torch.set_num_threads(2)
    return torch


def _versions() -> np.ndarray:
    import pytorch_fid
    import torchvision

    torch = _torch()
    return np.array(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"pytorch-fid {pytorch_fid.__version__}, numpy {np.__version__}"
    )


def _fid_net(state_dict):
    """pytorch-fid's `fid_inception_v3()` with `state_dict` instead of the download."""
    import pytorch_fid.inception as pfi

    torch = _torch()
    tensors = {k: torch.from_numpy(v) for k, v in state_dict.items()}
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: tensors):
        net = pfi.fid_inception_v3()
    return net, pfi


def calibrate_inception() -> dict[str, np.ndarray]:
    """Batch-norm running statistics after one training-mode pass over 2 calibration images,
    rounded to float16 (name -> float16 array)."""
    torch = _torch()
    net, _ = _fid_net(inception_state_dict())
    ours = set(inception_state_shapes())
    theirs = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    assert ours == theirs, (sorted(ours - theirs)[:3], sorted(theirs - ours)[:3])
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # running statistics := those of the calibration batch
    net.train()
    x = torch.from_numpy(inception_images(CALIBRATION_SEED).transpose(0, 3, 1, 2))
    with torch.no_grad():
        net(2 * x - 1)
    stats = {
        k: v.numpy().astype(np.float16)
        for k, v in net.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }
    assert all(np.isfinite(v).all() for v in stats.values())
    assert min(float(v.min()) for k, v in stats.items() if k.endswith("var")) > 1e-3
    return stats


def inception_reference(bn_stats=None) -> dict[str, np.ndarray]:
    """The golden arrays of `reference_inception.npz` (calibrating when `bn_stats` is None)."""
    torch = _torch()
    if bn_stats is None:
        bn_stats = calibrate_inception()
    state_dict = inception_state_dict({k: v.astype(np.float32) for k, v in bn_stats.items()})
    net, pfi = _fid_net(state_dict)
    net.eval()
    tensors = {k: torch.from_numpy(v) for k, v in state_dict.items()}
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: tensors):
        pool_net = pfi.InceptionV3([pfi.InceptionV3.DEFAULT_BLOCK_INDEX]).eval()
    images = torch.from_numpy(inception_images(IMAGES_SEED).transpose(0, 3, 1, 2))
    with torch.no_grad():
        pool = pool_net(images)[0][:, :, 0, 0]
        logits = net.fc(pool)
        logits64 = net.double()(2 * images[:1].double() - 1)
    out = {
        "pool": pool.numpy(),
        "logits": logits.numpy(),
        "logits64": logits64.numpy(),
        "num_params": np.array(sum(p.numel() for p in net.parameters())),
        "versions": _versions(),
    }
    out.update({f"bn/{k}": v for k, v in bn_stats.items()})
    return out


def conv_transpose_reference() -> dict[str, np.ndarray]:
    torch = _torch()
    out = {"versions": _versions()}
    for config in CONV_TRANSPOSE_CONFIGS:
        k, s, p, op = config
        x, w, b = conv_transpose_inputs(config)
        conv = torch.nn.ConvTranspose2d(3, 4, k, stride=s, padding=p, output_padding=op)
        conv = conv.double()
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
            conv.bias.copy_(torch.from_numpy(b))
            y = conv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
        out[conv_transpose_key(config)] = y.astype(np.float32)
    return out


def resize_reference() -> dict[str, np.ndarray]:
    torch = _torch()
    out = {"versions": _versions()}
    for shape in RESIZE_SHAPES:
        images = resize_images(shape)
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
        y = torch.nn.functional.interpolate(
            x, size=(SIZE, SIZE), mode="bilinear", align_corners=False
        )
        y = y.numpy().transpose(0, 2, 3, 1)
        idx = resize_pixels(shape)
        out[f"{resize_key(shape)}/index"] = idx
        out[f"{resize_key(shape)}/value"] = y[tuple(idx.T)]
    return out


# --- files -------------------------------------------------------------------------------------

# Tolerances of --check: max |fresh - stored| / max |stored| per array. The torch outputs are
# float32 sums of many products, so another CPU or torch version moves them in the last bits.
_REL_TOL = {"pool": 1e-4, "logits": 1e-4, "logits64": 1e-10}
_DEFAULT_REL_TOL = 1e-5


def load(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def compare(fresh: dict, stored: dict, bn_rel_tol: float = 2e-3) -> list[str]:
    """Differences between freshly computed golden arrays and stored ones (empty: current)."""
    problems = []
    if set(fresh) != set(stored):
        problems.append(f"keys differ: {sorted(set(fresh) ^ set(stored))[:4]}")
    for key in sorted(set(fresh) & set(stored)):
        a, b = fresh[key], stored[key]
        if key == "versions":
            continue  # informative only
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{key}: {a.dtype}{a.shape} vs stored {b.dtype}{b.shape}")
        elif a.dtype.kind in "iu":
            if not np.array_equal(a, b):
                problems.append(f"{key}: integers differ")
        else:
            # Batch-norm statistics are float16: one rounding step apart is the same value.
            tol = bn_rel_tol if key.startswith("bn/") else _REL_TOL.get(key, _DEFAULT_REL_TOL)
            a, b = a.astype(np.float64), b.astype(np.float64)
            err = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))
            if not err <= tol:
                problems.append(f"{key}: relative difference {err:.2e} > {tol:.0e}")
    return problems


def check_inception() -> list[str]:
    """The stored Inception goldens against a fresh run: the calibration, then the outputs
    with the stored statistics (so a float16 rounding flip cannot move them)."""
    stored = load(INCEPTION_FILE)
    bn = {k[3:]: v for k, v in stored.items() if k.startswith("bn/")}
    fresh_bn = calibrate_inception()
    problems = compare(
        {f"bn/{k}": v for k, v in fresh_bn.items()}, {f"bn/{k}": v for k, v in bn.items()}
    )
    fresh = inception_reference(bn)
    return problems + compare(fresh, stored)


GOLDENS = {
    INCEPTION_FILE: inception_reference,
    CONV_TRANSPOSE_FILE: conv_transpose_reference,
    RESIZE_FILE: resize_reference,
}


def check() -> list[str]:
    """Every stored golden file against a fresh computation: the list of problems."""
    problems = [f"{INCEPTION_FILE.name}: {p}" for p in check_inception()]
    for path, fn in GOLDENS.items():
        if path != INCEPTION_FILE:
            problems += [f"{path.name}: {p}" for p in compare(fn(), load(path))]
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the stored files instead of writing"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        print("stale" if problems else "current")
        return 1 if problems else 0
    DATA.mkdir(parents=True, exist_ok=True)
    for path, fn in GOLDENS.items():
        np.savez_compressed(path, **fn())
        print(f"wrote {path.relative_to(DATA.parent.parent)} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
