"""Image data sources: a source string in, uint8 NHWC arrays out.

`load(source, split, image_size)` reads a whole split into host memory and returns an
`ImageData`. Sources:

  tfds:NAME[:SPLIT]  TensorFlow Datasets, read from prepared ArrayRecord data with
                     `tfds.data_source` (no TensorFlow needed). Data dir: $GENIMG_TFDS_DIR, else
                     $TFDS_DATA_DIR, else TFDS's default. Nothing is downloaded unless
                     $GENIMG_TFDS_DOWNLOAD=1 (preparing most datasets needs TensorFlow:
                     `pip install 'genimg[tfds-prepare]'`). A SPLIT in the string overrides the
                     `split` argument and may use TFDS slicing (`tfds:mnist:train[:10%]`); a
                     version goes with the name (`tfds:mnist:3.0.1:test`).
  idx:DIR            MNIST-format IDX files: DIR/train-images-idx3-ubyte[.gz] and
                     DIR/train-labels-idx1-ubyte[.gz] for split 'train', t10k-* for 'test'
                     (the `train-images.idx3-ubyte` spelling is accepted too).
  folder:DIR         PNG/JPEG files. One sub-folder per class (sorted names give the class ids),
                     or images directly in DIR (labels=None). If DIR has both `train/` and
                     `test/` sub-folders, DIR/<split> is read; otherwise DIR serves every split.
                     C=1 when every image is grayscale, else RGB (C=3; alpha is dropped).
  npz:FILE           Arrays `images` (uint8 NHWC or NHW, or float in [0, 1]) and optional
                     `labels`, used for every split; or `<split>_images` / `<split>_labels`.
  real_vs_fake:REAL,FAKE[,FAKE...]
                     Real images (label 0) against generated ones (label 1), for a detector
                     of generated images: REAL is any source above, each FAKE usually an
                     npz:FILE or folder:DIR of samples (`python -m genimg.sample`'s output;
                     any source works, e.g. `real_vs_fake:digits,digits`), all read
                     with `split` (an npz with `train_images` / `test_images` keeps held-out
                     samples apart; a plain `images` array serves every split). The classes
                     are balanced (the first as many real images as there are fakes are kept)
                     and mixed in a fixed shuffled order.
  scenes[:OPTIONS]   captioned 56x56 scenes of Fashion-MNIST items (`genimg.data.scenes`):
                     splits 'train', 'test', 'heldout'; labels are caption token ids [N, L];
                     OPTIONS like n=20000,n_test=2000,seed=0.
  digits             scikit-learn's embedded 8x8 digits (1797 images, 0..16 scaled to 0..255):
                     the first 1438 are 'train', the remaining 359 'test' (fixed, no shuffle).
  mnist, fashion_mnist, kmnist, cifar10
                     A local copy if one is found. Searched, in order:
                     $GENIMG_DATA_DIR/NAME/ (default ~/.cache/genimg/data/NAME/; IDX files;
                     for cifar10 the python batches `cifar-10-batches-py/` or `cifar10.npz`
                     with train_/test_ keys), then /usr/share/datasets/fashion-mnist (Debian's
                     fashion-mnist package) for fashion_mnist and /usr/share/datasets/mnist
                     for mnist. Else mnist/fashion_mnist/kmnist are downloaded into the first
                     folder (checked; `genimg.data.download`; GENIMG_DOWNLOAD=0 disables it),
                     and when that fails, or for cifar10, `tfds:NAME` is used.

`image_size` resizes to image_size x image_size with PIL-style antialiased bilinear
filtering (non-square images are stretched). `max_examples` keeps the first N images.
Every user-facing problem raises `DataError` with a one-line message that says what to do.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import numbers
import os
import pathlib
import pickle
import re
import zlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from genimg.data import download, scenes
from genimg.errors import UserError

SOURCES_HELP = (
    "tfds:NAME[:SPLIT], idx:DIR, folder:DIR, npz:FILE, scenes[:OPTIONS], digits, mnist, "
    "fashion_mnist, cifar10, kmnist, paired:(folder|folder_btoa|npz|labelmap|edges):..., "
    "real_vs_fake:REAL,FAKE[,FAKE...]"
)
_LOCAL_ALTERNATIVES = (
    "idx:DIR (MNIST-format files), folder:DIR (PNG/JPEG), npz:FILE or digits, "
    "or put a local copy in $GENIMG_DATA_DIR/<name>/"
)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SYSTEM_COPIES = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}
_SHORT_NAMES = ("mnist", "fashion_mnist", "kmnist", "cifar10")
_DIGITS_NUM_TRAIN = 1438  # 80% of sklearn's 1797 digits, rounded up.
# Labels are class ids 0..K-1 (a conditional model holds K embeddings): a larger id is a
# corrupt or mis-encoded label file, not a data set.
MAX_CLASSES = 2**16


class DataError(UserError, ValueError):
    """A data problem the user can fix; the message is one line naming the problem and fix."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A split held in host memory."""

    images: np.ndarray  # uint8 [N, H, W, C], C in {1, 3}; the targets of paired data
    # int32 [N] class ids, int32 [N, L] token ids (captions; num_classes is then None), or None
    labels: np.ndarray | None
    num_classes: int | None
    description: str  # what was actually loaded; the run logs it
    # Paired data (``paired:`` sources, `genimg.data.paired`): the input of each example,
    # uint8 [N, H, W, C'] -- an image (C' channels, 0..255) or, when ``input_classes`` is
    # set, a label map of class ids [N, H, W, 1] below ``input_classes``.
    inputs: np.ndarray | None = None
    input_classes: int | None = None

    def __post_init__(self):
        images, labels, inputs = self.images, self.labels, self.inputs
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(
                f"ImageData.images must be uint8 [N, H, W, C] with C in (1, 3), got "
                f"{images.dtype} {images.shape}"
            )
        if labels is not None and (
            labels.dtype != np.int32 or labels.ndim not in (1, 2) or labels.shape[0] != len(images)
        ):
            raise DataError(
                f"ImageData.labels must be int32 [{len(images)}] or [{len(images)}, L], got "
                f"{labels.dtype} {labels.shape}"
            )
        if inputs is None:
            if self.input_classes is not None:
                raise DataError("ImageData.input_classes is set but there are no inputs")
            return
        if inputs.dtype != np.uint8 or inputs.ndim != 4 or inputs.shape[:3] != images.shape[:3]:
            raise DataError(
                f"ImageData.inputs must be uint8 [{', '.join(map(str, images.shape[:3]))}, C] "
                f"like the images, got {inputs.dtype} {inputs.shape}"
            )
        if self.input_classes is not None and (
            inputs.shape[-1] != 1 or (inputs.size and int(inputs.max()) >= self.input_classes)
        ):
            raise DataError(
                f"ImageData.inputs must be label maps [N, H, W, 1] with ids below "
                f"input_classes={self.input_classes}, got shape {inputs.shape} with max "
                f"{int(inputs.max()) if inputs.size else None}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """What a model sees of each input: ``(H, W, input_classes)`` for label maps (one-hot),
        ``(H, W, C')`` for image inputs, None without inputs."""
        if self.inputs is None:
            return None
        h, w, c = self.inputs.shape[1:]
        return (h, w, self.input_classes or c)

    def __len__(self) -> int:
        return self.images.shape[0]


class _Loaded(NamedTuple):
    """What a source reader returns; `load` finishes it into an `ImageData`."""

    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None
    num_classes: int | None
    where: str  # e.g. "idx:/usr/share/datasets/fashion-mnist"
    total: int  # images in the split before `max_examples`
    note: str = ""  # e.g. how mixed-size images were resized


def load(
    source: str,
    split: str = "train",
    image_size: int | None = None,
    *,
    max_examples: int | None = None,
) -> ImageData:
    """Loads a whole split of `source` (see the module docstring) as uint8 NHWC arrays.

    Args:
      source: e.g. "fashion_mnist", "idx:/path/to/dir", "tfds:cifar10:test".
      split: "train" or "test" (TFDS sources accept any TFDS split string).
      image_size: if set, images are resized to image_size x image_size.
      max_examples: if set, keep only the first `max_examples` images.

    Returns:
      An `ImageData` whose description says which copy was read.

    Raises:
      DataError: the source is unknown, missing, corrupt or not prepared.
    """
    if not isinstance(source, str) or not source:
        raise DataError(f"data source must be a non-empty string, one of {SOURCES_HELP}")
    image_size = _positive_int_or_none(image_size, "image_size")
    max_examples = _positive_int_or_none(max_examples, "max_examples")

    kind, sep, arg = source.partition(":")
    if kind == "tfds" and sep:
        name, split = _parse_tfds_arg(arg, split)
        loaded = _load_tfds(name, split, image_size, max_examples)
    elif kind in ("idx", "folder", "npz") and sep:
        if not arg:
            raise DataError(f"data source '{source}' needs a path after '{kind}:'")
        readers: dict[str, Callable[..., _Loaded]] = {
            "idx": _load_idx,
            "folder": _load_folder,
            "npz": _load_npz,
        }
        loaded = readers[kind](os.path.expanduser(arg), split, image_size, max_examples)
    elif kind == "paired":
        raise DataError(
            f"'{source}' is a paired source: read it with genimg.data.load (genimg.data.paired)"
        )
    elif kind == "real_vs_fake" and sep:
        loaded = _load_real_vs_fake(arg, split, image_size)
    elif kind == "scenes":
        loaded = _load_scenes(arg, split)
    elif source == "digits":
        loaded = _load_digits(split)
    elif source in _SHORT_NAMES:
        loaded = _load_short_name(source, split, image_size, max_examples)
    else:
        raise DataError(f"unknown data source '{source}'; expected one of {SOURCES_HELP}")
    return _finish(loaded, split, image_size, max_examples)


def _positive_int_or_none(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def _finish(
    loaded: _Loaded, split: str, image_size: int | None, max_examples: int | None
) -> ImageData:
    """Applies `max_examples` and `image_size` and writes the description."""
    images, labels = loaded.images, loaded.labels
    if images.shape[0] == 0:
        raise DataError(f"{loaded.where} has no images for split '{split}'")
    if 0 in images.shape[1:3]:
        raise DataError(f"{loaded.where}: the images have no pixels (shape {images.shape})")
    if max_examples is not None:
        images = images[:max_examples]
        labels = None if labels is None else labels[:max_examples]
    n, h, w = images.shape[:3]
    noun = "image" if loaded.total == 1 else "images"
    count = f"{n} {noun}" if n == loaded.total else f"first {n} of {loaded.total} {noun}"
    details = [split, count] + ([loaded.note] if loaded.note else [])
    if image_size is not None and (h, w) != (image_size, image_size):
        images = resize_images(images, image_size)
        details.append(f"resized {h}x{w} -> {image_size}x{image_size}")
    return ImageData(
        images=np.ascontiguousarray(images),
        labels=None if labels is None else np.ascontiguousarray(labels, dtype=np.int32),
        num_classes=loaded.num_classes,
        description=f"{loaded.where} ({', '.join(details)})",
    )


# ---------------------------------------------------------------------------------------------
# Resizing.


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes uint8 [N, H, W, C] to [N, size, size, C] with Pillow's BILINEAR filter.

    Pillow's bilinear filter widens with the downscale factor, so downscaling is antialiased
    (the "clean" resize FID tooling expects). Pillow resizes in two separable passes,
    horizontal then vertical, rounding to uint8 in between; we run each pass once over a
    tall strip of many images (the vertical pass on transposed images), which gives the same
    bytes as resizing image by image (for non-square inputs Pillow >= 13 may do the vertical
    pass first, moving a few pixels by one grey level) at a fraction of the Python overhead:
    60k 28x28 -> 32x32 takes about 1.3 s on a loaded 2-core CPU vs 2.7 s image by image.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"resize_images needs uint8 [N, H, W, C] with C in (1, 3), got "
            f"{images.dtype} {images.shape}"
        )
    n, h, w, c = images.shape
    out = np.empty((n, size, size, c), np.uint8)
    chunk = max(1, (1 << 24) // (h * max(w, size) * c))  # ~16 MB strips
    for start in range(0, n, chunk):
        x = images[start : start + chunk]
        m = x.shape[0]
        x = _resize_rows(x.reshape(m * h, w, c), size).reshape(m, h, size, c)
        x = np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(m * size, h, c)
        x = _resize_rows(x, size).reshape(m, size, size, c)  # [M, W', H', C]
        out[start : start + chunk] = x.transpose(0, 2, 1, 3)
    return out


def _resize_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """[M, W, C] -> [M, size, C]: Pillow's horizontal BILINEAR pass over M independent rows."""
    m, w, c = rows.shape
    strip = Image.fromarray(rows[..., 0] if c == 1 else rows)
    return np.asarray(strip.resize((size, m), Image.BILINEAR)).reshape(m, size, c)


def _stack(
    images: Sequence[np.ndarray], image_size: int | None, names: Sequence[str]
) -> tuple[np.ndarray, str]:
    """Stacks HWC uint8 images of possibly different sizes into [N, H, W, C].

    Mixed sizes need `image_size`; the images of another size are resized one by one, and the
    returned note says how many. Equal sizes are left to the batched `resize_images`.
    """
    shapes = {im.shape[:2] for im in images}
    if len(shapes) > 1 and image_size is None:
        first = images[0].shape[:2]
        i = next(i for i, im in enumerate(images) if im.shape[:2] != first)
        raise DataError(
            f"images have different sizes ({names[0]} is {first[0]}x{first[1]}, {names[i]} is "
            f"{images[i].shape[0]}x{images[i].shape[1]}); pass image_size=N to resize them all"
        )
    if len(shapes) == 1:
        return np.stack(images), ""
    target = (image_size, image_size)
    resized = sum(im.shape[:2] != target for im in images)
    images = [im if im.shape[:2] == target else _pil_resize(im, image_size) for im in images]
    return np.stack(images), f"resized {resized} mixed-size images to {image_size}x{image_size}"


def _pil_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes one uint8 HWC image with PIL's (antialiased) bilinear filter."""
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize((size, size), Image.BILINEAR))
    return out.reshape(size, size, image.shape[-1])


# ---------------------------------------------------------------------------------------------
# IDX (MNIST format).


def parse_idx(data: bytes, name: str, ndim: int) -> np.ndarray:
    """Parses an uncompressed IDX file of unsigned bytes with `ndim` dimensions.

    Args:
      data: the file's bytes.
      name: the file's name, for error messages.
      ndim: the expected number of dimensions (3 for images, 1 for labels).

    Returns:
      A writable uint8 array of the dimensions stored in the header.
    """
    if data[:2] == b"\x1f\x8b":
        raise DataError(f"{name} is gzip-compressed but not named .gz; rename it to end in .gz")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{name} is not an IDX file (bad magic {data[:4].hex() or 'none'}); "
            "expected MNIST-format files, re-download or fix the path"
        )
    if data[2] != 0x08:
        raise DataError(
            f"{name}: IDX data type 0x{data[2]:02x} is not supported (only unsigned byte 0x08)"
        )
    if data[3] != ndim:
        raise DataError(f"{name}: IDX file has {data[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: IDX header is truncated ({len(data)} bytes); re-download it")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected, found = math.prod(dims), len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "too long"
        raise DataError(
            f"{name}: IDX data is {problem}: header says {'x'.join(map(str, dims))} = {expected} "
            f"bytes, file has {found}; re-download it"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def _read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """Reads a raw or gzipped IDX file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}; re-download it") from e
    return parse_idx(data, str(path), ndim)


def _idx_candidates(directory: pathlib.Path, prefix: str, kind: str) -> list[pathlib.Path]:
    """Accepted spellings of e.g. train-images-idx3-ubyte, in order of preference."""
    ndim = 3 if kind == "images" else 1
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return [directory / (n + ext) for n in names for ext in ("", ".gz")]


def _find_idx(directory: pathlib.Path, split: str, kind: str) -> pathlib.Path | None:
    prefix = _idx_prefix(split)
    return next((p for p in _idx_candidates(directory, prefix, kind) if p.is_file()), None)


def _idx_prefix(split: str) -> str:
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise DataError(f"IDX data has splits 'train' and 'test', got split '{split}'")
    return prefixes[split]


def _load_idx(directory: str, split: str, image_size=None, max_examples=None) -> _Loaded:
    del image_size, max_examples  # Applied by `_finish`; the files are read whole.
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise DataError(f"idx:{directory}: no such directory; pass the folder holding the files")
    paths = {}
    for kind in ("images", "labels"):
        paths[kind] = _find_idx(root, split, kind)
        if paths[kind] is None:
            names = " or ".join(p.name for p in _idx_candidates(root, _idx_prefix(split), kind)[:2])
            raise DataError(f"idx:{directory}: no {names}[.gz] in {root} for split '{split}'")
    images = _read_idx(paths["images"], 3)
    labels = _read_idx(paths["labels"], 1)
    if len(labels) != len(images):
        raise DataError(
            f"{paths['labels']} has {len(labels)} labels but {paths['images'].name} has "
            f"{len(images)} images; the files do not belong together"
        )
    return _Loaded(
        images=images[..., None],
        labels=labels.astype(np.int32),
        num_classes=int(labels.max()) + 1 if len(labels) else None,
        where=f"idx:{root}",
        total=len(images),
    )


# ---------------------------------------------------------------------------------------------
# Image folders.


def _folder_root(directory: pathlib.Path, split: str) -> pathlib.Path:
    """DIR/<split> when DIR has train/ and test/ sub-folders, else DIR itself."""
    if (directory / "train").is_dir() and (directory / "test").is_dir():
        root = directory / split
        if not root.is_dir():
            raise DataError(
                f"folder:{directory} has train/ and test/ sub-folders but no '{split}/'; "
                "use split='train' or 'test'"
            )
        return root
    return directory


def _image_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")
    )


_GRAY_MODES = ("1", "L", "LA")
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _image_mode(path: pathlib.Path) -> str:
    """Pillow mode from the file header alone (cheap; the file is closed again)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
    except _IMAGE_ERRORS as e:
        raise DataError(f"cannot read image {path}: {e}; delete or replace the file") from e
    if mode.startswith(("I", "F")):
        raise DataError(f"image {path} has {mode} pixels (16/32-bit); convert it to 8-bit")
    return mode


def _read_image(path: pathlib.Path, mode: str) -> np.ndarray:
    """Decodes one image as uint8 [H, W, C] in `mode` ("L" or "RGB"; alpha is dropped)."""
    try:
        with Image.open(path) as image:
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # how Pillow asks for transparent palettes
            array = np.asarray(image.convert(mode))
    except _IMAGE_ERRORS as e:
        raise DataError(f"cannot read image {path}: {e}; delete or replace the file") from e
    return array[..., None] if mode == "L" else array


def _load_folder(directory: str, split: str, image_size=None, max_examples=None) -> _Loaded:
    base = pathlib.Path(directory)
    if not base.is_dir():
        raise DataError(f"folder:{directory}: no such directory")
    root = _folder_root(base, split)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _image_files(root)
    if class_dirs and loose:
        raise DataError(
            f"folder:{root} mixes images ({loose[0].name}) with class sub-folders; "
            "move the images into a sub-folder per class"
        )
    if class_dirs:
        files, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            found = _image_files(class_dir)
            if not found:
                raise DataError(
                    f"folder:{root}: class folder '{class_dir.name}' has no PNG/JPEG images; "
                    "remove it or add images"
                )
            files += found
            labels += [label] * len(found)
    else:
        files, labels = loose, None
    if not files:
        raise DataError(
            f"folder:{root} has no PNG/JPEG images (directly or in one sub-folder per class)"
        )
    total = len(files)
    if max_examples is not None:
        files = files[:max_examples]
        labels = None if labels is None else labels[:max_examples]

    gray = all(_image_mode(p) in _GRAY_MODES for p in files)  # one RGB image makes all RGB
    arrays = [_read_image(p, "L" if gray else "RGB") for p in files]
    images, note = _stack(arrays, image_size, [str(p) for p in files])
    return _Loaded(
        images=images,
        labels=None if labels is None else np.asarray(labels, np.int32),
        num_classes=len(class_dirs) if class_dirs else None,
        where=f"folder:{root}",
        total=total,
        note=note,
    )


# ---------------------------------------------------------------------------------------------
# npz files and sklearn digits.


def _to_uint8_images(images: np.ndarray, name: str) -> np.ndarray:
    """uint8 NHWC from uint8/integer NHW(C) or float NHW(C) in [0, 1]."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"{name}: images must be [N, H, W] or [N, H, W, C] with C in (1, 3), got "
            f"shape {images.shape}"
        )
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (
            np.nanmin(images) < 0 or np.nanmax(images) > 1 or np.isnan(images).any()
        ):
            raise DataError(f"{name}: float images must lie in [0, 1]; store uint8 0..255 instead")
        return np.floor(images * 255 + 0.5).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{name}: integer images must lie in 0..255")
        return images.astype(np.uint8)
    raise DataError(f"{name}: images have dtype {images.dtype}; store uint8 or float in [0, 1]")


def _labels_and_classes(labels, count: int, name: str):
    if labels is None:
        return None, None
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (count,):
        raise DataError(
            f"{name}: labels must be integers of shape ({count},), got {labels.dtype} "
            f"{labels.shape}"
        )
    if count and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
        raise DataError(
            f"{name}: labels must be class ids 0..{MAX_CLASSES - 1}, found "
            f"{labels.min()}..{labels.max()}; number the classes 0..K-1"
        )
    return labels.astype(np.int32), (int(labels.max()) + 1 if count else None)


def _load_npz(file: str, split: str, image_size=None, max_examples=None) -> _Loaded:
    del image_size, max_examples
    path = pathlib.Path(file)
    if not path.is_file():
        raise DataError(f"npz:{file}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # noqa: BLE001 -- numpy/zipfile fail on bad bytes in many ways
        raise DataError(f"npz:{file}: cannot read it as .npz ({_first_line(e)})") from e
    if "images" in arrays:
        image_key, label_key = "images", "labels"
    elif f"{split}_images" in arrays:
        image_key, label_key = f"{split}_images", f"{split}_labels"
    else:
        raise DataError(
            f"npz:{file} has keys {sorted(arrays)}; expected 'images' (and optional 'labels') "
            f"or '{split}_images' (and '{split}_labels')"
        )
    images = _to_uint8_images(arrays[image_key], f"{path}[{image_key}]")
    labels, num_classes = _labels_and_classes(
        arrays.get(label_key), len(images), f"{path}[{label_key}]"
    )
    return _Loaded(images, labels, num_classes, f"npz:{path}", len(images))


# ---------------------------------------------------------------------------------------------
# Real against generated images.


def _load_real_vs_fake(arg: str, split: str, image_size=None) -> _Loaded:
    """Real images (label 0, the first as many as there are fakes) and every FAKE's images
    (label 1), all of one shape (``image_size`` resizes each part)."""
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) < 2 or not all(parts):
        raise DataError(
            f"real_vs_fake:{arg}: expected real_vs_fake:REAL,FAKE[,FAKE...] (a real source, "
            "then sources of generated images such as npz:FILE or folder:DIR)"
        )
    real, fakes = parts[0], parts[1:]
    if any(p.partition(":")[0] == "real_vs_fake" for p in parts):
        raise DataError("real_vs_fake: its parts cannot be real_vs_fake sources themselves")
    fake_sets = [load(f, split, image_size) for f in fakes]
    n_fake = sum(len(f) for f in fake_sets)
    real_set = load(real, split, image_size, max_examples=n_fake)
    shapes = {f.images.shape[1:] for f in (real_set, *fake_sets)}
    if len(shapes) > 1:
        raise DataError(
            f"real_vs_fake: the parts have different image shapes {sorted(shapes)}; set "
            "data.image_size (channel counts must match)"
        )
    images = np.concatenate([real_set.images] + [f.images for f in fake_sets])
    labels = np.repeat(np.array([0, 1], np.int32), [len(real_set), n_fake])
    order = np.random.default_rng(0).permutation(len(images))  # max_examples keeps both
    where = "; ".join(d.description for d in (real_set, *fake_sets))
    total = len(images)
    return _Loaded(
        images[order], labels[order], 2, f"real_vs_fake[{where}]", total, "real=0, generated=1"
    )


def _load_digits(split: str) -> _Loaded:
    from sklearn.datasets import load_digits

    if split not in ("train", "test"):
        raise DataError(f"digits has splits 'train' and 'test', got split '{split}'")
    digits = load_digits()
    images = np.floor(digits.images * (255 / 16) + 0.5).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    part = slice(None, _DIGITS_NUM_TRAIN) if split == "train" else slice(_DIGITS_NUM_TRAIN, None)
    images, labels = images[part], labels[part]
    return _Loaded(images, labels, 10, "digits:sklearn", len(images))


def _load_scenes(arg: str, split: str) -> _Loaded:
    """Captioned scenes (`genimg.data.scenes`): train scenes from Fashion-MNIST's train items,
    test and held-out scenes from its test items."""
    try:
        options = scenes.parse_options(arg)
        if split not in scenes.SPLITS:
            raise scenes.PromptError(
                f"scenes have splits {', '.join(scenes.SPLITS)}, got split '{split}'"
            )
    except scenes.PromptError as e:
        raise DataError(str(e)) from None
    item_split = "train" if split == "train" else "test"
    items = _load_short_name("fashion_mnist", item_split, None, None)
    num = options["n"] if split == "train" else options["n_test"]
    made = scenes.generate(items.images, items.labels, split, num, options["seed"])
    where = f"scenes:n={options['n']},n_test={options['n_test']},seed={options['seed']}"
    return _Loaded(made.images, made.tokens, None, f"{where} <- {items.where}", num)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches.


def _load_cifar_batches(directory: pathlib.Path, split: str) -> _Loaded:
    """Reads the `cifar-10-batches-py` pickles (data_batch_1..5, test_batch)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = directory / name
        images_i, labels_i = _read_cifar_batch(path)
        images.append(images_i)
        labels.append(labels_i)
    images, labels = np.concatenate(images), np.concatenate(labels)
    return _Loaded(images, labels, 10, f"cifar10-batches:{directory}", len(images))


def _read_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 32, 32, 3] and int32 [N] labels 0..9 of one CIFAR-10 python batch."""
    fix = "re-download it"
    try:
        with open(path, "rb") as f:
            # The official CIFAR-10 distribution is pickled; only read trusted copies.
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # noqa: BLE001 -- unpickling bad bytes fails in many ways
        raise DataError(f"cannot read CIFAR-10 batch {path}: {_first_line(e)}; {fix}") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (no b'data' and b'labels'); {fix}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: data must be uint8 [N, 3072], got {data.dtype} {data.shape}; {fix}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(data),):
        raise DataError(
            f"{path}: labels must be {len(data)} integers, got {labels.dtype} {labels.shape}; {fix}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Short names: a local copy first, then TFDS.


def _local_dirs(name: str) -> list[pathlib.Path]:
    dirs = [download.data_dir() / name]  # $GENIMG_DATA_DIR/NAME, else ~/.cache/genimg/data/NAME
    dirs += [pathlib.Path(d) for d in _SYSTEM_COPIES.get(name, ())]
    return dirs


def _load_short_name(name: str, split: str, image_size, max_examples) -> _Loaded:
    searched = _local_dirs(name)
    for directory in searched:
        if name == "cifar10":
            if split not in ("train", "test"):
                raise DataError(f"cifar10 has splits 'train' and 'test', got split '{split}'")
            for batches in (directory / "cifar-10-batches-py", directory):
                if (batches / "test_batch").is_file():
                    loaded = _load_cifar_batches(batches, split)
                    return loaded._replace(where=f"{name} -> {loaded.where}")
            if (directory / "cifar10.npz").is_file():
                loaded = _load_npz(str(directory / "cifar10.npz"), split)
                return loaded._replace(where=f"{name} -> {loaded.where}")
        elif _find_idx(directory, split, "images") is not None:
            loaded = _load_idx(str(directory), split)
            return loaded._replace(where=f"{name} -> {loaded.where}")
    download_note = ""
    if name in download.IDX_DATASETS and download.downloads_enabled():
        try:  # small IDX datasets: fetch them into the first folder searched
            loaded = _load_idx(str(download.download_idx_dataset(name, searched[0])), split)
            return loaded._replace(where=f"{name} -> downloaded {loaded.where}")
        except download.DownloadError as e:
            download_note = f" (download failed: {_first_line(e)})"
    where = ", ".join(str(d) for d in searched) + download_note
    loaded = _load_tfds(name, split, image_size, max_examples, searched=where)
    return loaded._replace(where=f"{name} -> {loaded.where}")


# ---------------------------------------------------------------------------------------------
# TensorFlow Datasets.

_VERSION = re.compile(r"^(\d+\.(?:\d+|\*)\.(?:\d+|\*))(?::|$)")


def _parse_tfds_arg(arg: str, split: str) -> tuple[str, str]:
    """'mnist' -> ('mnist', split); 'mnist:test' and 'mnist:3.0.1:test' -> name, 'test'."""
    name, sep, rest = arg.partition(":")
    if sep and (version := _VERSION.match(rest)):
        name, rest = f"{name}:{version.group(1)}", rest[version.end() :]
        sep = ":" if rest else ""
    if not name:
        raise DataError("tfds source needs a dataset name, e.g. 'tfds:mnist' or 'tfds:mnist:test'")
    return name, (rest if sep and rest else split)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _load_tfds(
    name: str, split: str, image_size, max_examples, *, searched: str | None = None
) -> _Loaded:
    import tensorflow_datasets as tfds

    data_dir = os.environ.get("GENIMG_TFDS_DIR") or None
    shown_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:  # unknown, malformed
        raise DataError(
            f"TFDS has no dataset '{name}'; check the name at tensorflow.org/datasets/catalog "
            f"or use one of {SOURCES_HELP}"
        ) from e

    if os.environ.get("GENIMG_TFDS_DOWNLOAD") == "1":
        try:
            builder.download_and_prepare(file_format="array_record")
        except ImportError as e:
            module = (e.name or "tensorflow").split(".")[0]
            fix = (
                "pip install 'genimg[tfds-prepare]'"
                if module == "tensorflow"
                else f"pip install {module}"
            )
            raise DataError(
                f"preparing TFDS dataset '{name}' needs the missing module '{module}'; {fix}, "
                f"or use a local copy: {_LOCAL_ALTERNATIVES}"
            ) from e
        except Exception as e:  # noqa: BLE001 -- download/prepare errors vary; keep one line.
            raise DataError(
                f"preparing TFDS dataset '{name}' in {shown_dir} failed ({_first_line(e)}); "
                f"use a local copy instead: {_LOCAL_ALTERNATIVES}"
            ) from e

    try:
        source = builder.as_data_source(split=split)
    except Exception as e:  # noqa: BLE001
        if not builder.is_prepared():
            hint = f" (no local copy in {searched})" if searched is not None else ""
            raise DataError(
                f"TFDS dataset '{name}' is not prepared in {shown_dir}{hint}; set "
                "GENIMG_TFDS_DOWNLOAD=1 to prepare it (needs internet and "
                "pip install 'genimg[tfds-prepare]'), point $GENIMG_TFDS_DIR at a prepared "
                f"copy, or use {_LOCAL_ALTERNATIVES}"
            ) from e
        if isinstance(e, NotImplementedError):  # prepared as TFRecord: no random access
            raise DataError(
                f"TFDS dataset '{name}' in {shown_dir} is not in ArrayRecord format "
                f"({_first_line(e)}); prepare it again with file_format='array_record' or use "
                f"{_LOCAL_ALTERNATIVES}"
            ) from e
        raise DataError(
            f"cannot read split '{split}' of TFDS dataset '{name}' in {shown_dir} "
            f"({_first_line(e)}); splits: {', '.join(builder.info.splits) or 'unknown'}"
        ) from e

    features = source.dataset_info.features
    if "image" not in features:
        raise DataError(
            f"TFDS dataset '{name}' has no 'image' feature (features: {', '.join(features)})"
        )
    has_label = "label" in features
    total = len(source)
    count = total if max_examples is None else min(total, max_examples)
    examples = _read_records(source, count)
    arrays = [np.asarray(ex["image"], np.uint8) for ex in examples]
    arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
    if len({a.shape[-1] for a in arrays}) > 1:
        raise DataError(f"TFDS dataset '{name}' mixes channel counts; it is not supported")
    images, note = _stack(arrays, image_size, [f"{name}[{i}]" for i in range(count)])
    labels = num_classes = None
    if has_label:
        labels = np.asarray([ex["label"] for ex in examples], np.int32)
        num_classes = getattr(features["label"], "num_classes", None)
    return _Loaded(images, labels, num_classes, f"tfds:{name}", total, note)


def _read_records(source, count: int, chunk: int = 1024) -> list:
    """The first `count` examples of a TFDS data source, read in batches (about 4x faster
    than one by one: 60k 28x28 records in ~6.5 s instead of ~28 s on a loaded 2-core CPU)."""
    try:
        first = list(source.__getitems__(list(range(min(chunk, count)))))
    except TypeError:  # tfds.testing.mock_data's sources only support one-by-one reads.
        return [source[i] for i in range(count)]
    rest = (
        source.__getitems__(list(range(s, min(s + chunk, count))))
        for s in range(chunk, count, chunk)
    )
    return first + [example for batch in rest for example in batch]
