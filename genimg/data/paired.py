"""Paired data for image-to-image models: an input and a target image per example.

`load(source, split, image_size)` reads every source of `genimg.data.sources` and, for
``paired:`` sources, an `ImageData` whose ``images`` are the targets and whose ``inputs`` are
what a model translates from:

  paired:folder:DIR        PNG/JPEG files, each the input A and the target B side by side
                           (``A|B``, width twice the height: the pix2pix format). DIR/<split>
                           when DIR has train/ and test/ sub-folders, as for folder:DIR.
  paired:folder_btoa:DIR   the same files, translating B -> A (e.g. the facades set).
  paired:npz:FILE          arrays ``inputs`` and ``targets`` (or ``<split>_inputs`` /
                           ``<split>_targets``), optional ``labels``. Targets are images as for
                           npz:FILE. Inputs are images too, unless the file has
                           ``input_classes`` (K): then they are integer label maps [N, H, W]
                           with ids 0..K-1. The names ``label_maps`` (for the inputs; label
                           maps, K = ``input_classes`` or the largest id in the file + 1) and
                           ``images`` (for the targets) are accepted too, so the per-pixel
                           layouts of a compositing tool can be rendered.
  paired:labelmap:SOURCE   the images of any source with their semantic label map
                           (`genimg.data.transforms.semantic_label_map`, 4 classes) as input,
                           e.g. paired:labelmap:fashion_mnist or paired:labelmap:npz:FILE.
  paired:edges:SOURCE      the images of any source with their Canny edge map (1 channel,
                           0/255) as input.

Label-map inputs are stored as uint8 class ids ``[N, H, W, 1]`` with ``input_classes`` set;
`genimg.data.TrainData` one-hot encodes them per batch. ``image_size`` resizes targets and
image inputs with the antialiased bilinear filter of `genimg.data.sources.resize_images` and
label maps with nearest neighbours; the transforms run on the resized images.
"""

from __future__ import annotations

import os
import pathlib
import zlib

import numpy as np

from genimg.data import sources, transforms
from genimg.data.sources import DataError, ImageData

KINDS = ("folder", "folder_btoa", "npz", "labelmap", "edges")
PREFIX = "paired:"


def load(
    source: str,
    split: str = "train",
    image_size: int | None = None,
    *,
    max_examples: int | None = None,
) -> ImageData:
    """`genimg.data.sources.load`, plus the ``paired:`` sources of the module docstring."""
    if not (isinstance(source, str) and source.startswith(PREFIX)):
        return sources.load(source, split, image_size, max_examples=max_examples)
    image_size = sources._positive_int_or_none(image_size, "image_size")
    max_examples = sources._positive_int_or_none(max_examples, "max_examples")
    kind, sep, arg = source[len(PREFIX) :].partition(":")
    if kind not in KINDS or not sep or not arg:
        raise DataError(
            f"paired source '{source}' must be paired:KIND:ARG with KIND one of "
            f"{', '.join(KINDS)} (e.g. paired:labelmap:fashion_mnist, paired:folder:DIR)"
        )
    if kind in transforms.TRANSFORMS:
        return _load_transform(kind, arg, split, image_size, max_examples)
    if kind == "npz":
        inputs, targets, labels, input_classes, where = _read_npz(os.path.expanduser(arg), split)
    else:
        inputs, targets, where = _read_folder(os.path.expanduser(arg), split, kind)
        labels, input_classes = None, None
    total = len(targets)
    if max_examples is not None:
        inputs, targets = inputs[:max_examples], targets[:max_examples]
        labels = None if labels is None else labels[:max_examples]
    n, h, w = targets.shape[:3]
    details = [split, f"{n} pairs" if n == total else f"first {n} of {total} pairs"]
    if image_size is not None and (h, w) != (image_size, image_size):
        targets = sources.resize_images(targets, image_size)
        inputs = (
            resize_nearest(inputs, image_size)
            if input_classes
            else sources.resize_images(inputs, image_size)
        )
        details.append(f"resized {h}x{w} -> {image_size}x{image_size}")
    num_classes = None if labels is None else int(labels.max()) + 1 if len(labels) else None
    return ImageData(
        images=np.ascontiguousarray(targets),
        labels=None if labels is None else np.ascontiguousarray(labels, np.int32),
        num_classes=num_classes,
        description=f"{PREFIX}{where} ({', '.join(details)})",
        inputs=np.ascontiguousarray(inputs),
        input_classes=input_classes,
    )


def transform_of(source: str) -> str | None:
    """The layout transform (``"labelmap"`` or ``"edges"``) of a ``paired:`` source, if any."""
    if not (isinstance(source, str) and source.startswith(PREFIX)):
        return None
    kind = source[len(PREFIX) :].partition(":")[0]
    return kind if kind in transforms.TRANSFORMS else None


TRANSFORM_CHUNK = 2048  # images per call of a layout transform


def transform_input(kind: str, images: np.ndarray) -> tuple[np.ndarray, int | None]:
    """``(inputs uint8 [N, H, W, 1], input_classes)`` of the layout transform ``kind``: label
    ids with 4 classes for "labelmap", a 0/255 edge image (no classes) for "edges"."""
    fn, classes = transforms.TRANSFORMS[kind]
    # Each image is transformed on its own; chunks keep the float temporaries of the filters
    # (several [N, H, W] float32 and int32 arrays) small: one pass over 60k 28x28 images
    # peaked at about 2.2 GB of resident memory.
    chunk = TRANSFORM_CHUNK
    maps = np.concatenate(
        [fn(images[i : i + chunk]) for i in range(0, len(images), chunk)] or [fn(images)]
    )[..., None]
    if kind == "edges":
        return maps * np.uint8(255), None
    return maps, len(classes)


def _load_transform(kind, inner, split, image_size, max_examples) -> ImageData:
    base = sources.load(inner, split, image_size, max_examples=max_examples)
    inputs, input_classes = transform_input(kind, base.images)
    return ImageData(
        images=base.images,
        labels=base.labels,
        num_classes=base.num_classes,
        description=f"{PREFIX}{kind} of {base.description}",
        inputs=inputs,
        input_classes=input_classes,
    )


def resize_nearest(maps: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of [N, H, W, C] maps to [N, size, size, C] (pixel centres)."""
    h, w = maps.shape[1:3]
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return np.ascontiguousarray(maps[:, rows][:, :, cols])


# ---------------------------------------------------------------------------------------------
# Side-by-side A|B folders.


def _read_folder(directory: str, split: str, kind: str):
    base = pathlib.Path(directory)
    if not base.is_dir():
        raise DataError(f"paired:{kind}:{directory}: no such directory")
    root = sources._folder_root(base, split)
    files = sources._image_files(root)
    if not files:
        raise DataError(f"paired:{kind}:{root} has no PNG/JPEG images of side-by-side A|B pairs")
    gray = all(sources._image_mode(p) in sources._GRAY_MODES for p in files)
    pairs = []
    for path in files:
        image = sources._read_image(path, "L" if gray else "RGB")
        h, w = image.shape[:2]
        if w != 2 * h:
            raise DataError(
                f"paired:{kind}: {path} is {w}x{h} (width x height), not a side-by-side A|B "
                "pair; each file must hold input and target next to each other, width twice "
                "the height"
            )
        pairs.append(image)
    sizes = {p.shape for p in pairs}
    if len(sizes) > 1:
        raise DataError(
            f"paired:{kind}:{root}: the pairs have different sizes ({files[0].name} is "
            f"{pairs[0].shape[1]}x{pairs[0].shape[0]}); resize them to one size first"
        )
    stacked = np.stack(pairs)
    half = stacked.shape[2] // 2
    a, b = stacked[:, :, :half], stacked[:, :, half:]
    inputs, targets = (b, a) if kind == "folder_btoa" else (a, b)
    return (
        np.ascontiguousarray(inputs),
        np.ascontiguousarray(targets),
        f"{kind}:{root}",
    )


# ---------------------------------------------------------------------------------------------
# npz files.

_INPUT_KEYS = ("inputs", "label_maps")
_TARGET_KEYS = ("targets", "images")


def _read_npz(file: str, split: str):
    path = pathlib.Path(file)
    name = f"paired:npz:{file}"
    if not path.is_file():
        raise DataError(f"{name}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zlib.error) as e:
        raise DataError(f"{name}: cannot read it as .npz ({e})") from e

    def find(keys):
        for prefix in ("", f"{split}_"):
            for key in keys:
                if prefix + key in arrays:
                    return prefix + key
        return None

    input_key, target_key = find(_INPUT_KEYS), find(_TARGET_KEYS)
    if input_key is None or target_key is None:
        raise DataError(
            f"{name} has keys {sorted(arrays)}; expected 'inputs' and 'targets' (or "
            f"'{split}_inputs' and '{split}_targets'; 'label_maps' and 'images' also work)"
        )
    targets = sources._to_uint8_images(arrays[target_key], f"{path}[{target_key}]")
    raw = arrays[input_key]
    is_map = input_key.endswith("label_maps") or "input_classes" in arrays
    if is_map:
        input_classes = _input_classes(arrays, path)
        inputs = _label_maps(raw, input_classes, f"{path}[{input_key}]")
    else:
        input_classes = None
        inputs = sources._to_uint8_images(raw, f"{path}[{input_key}]")
    if inputs.shape[:3] != targets.shape[:3]:
        raise DataError(
            f"{name}: {input_key} are {'x'.join(map(str, inputs.shape[:3]))} but {target_key} "
            f"are {'x'.join(map(str, targets.shape[:3]))} (N x H x W); every input needs a "
            "target of its size"
        )
    label_key = f"{split}_labels" if target_key.startswith(f"{split}_") else "labels"
    labels = None
    if label_key in arrays:
        labels, _ = sources._labels_and_classes(
            arrays[label_key], len(targets), f"{path}[{label_key}]"
        )
    return inputs, targets, labels, input_classes, f"npz:{path}"


def _input_classes(arrays: dict, path: pathlib.Path) -> int:
    """K of a file's label maps: its ``input_classes``, else the largest id of any split + 1."""
    if "input_classes" in arrays:
        value = np.asarray(arrays["input_classes"])
        if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer) or not 1 <= value <= 256:
            raise DataError(f"{path}[input_classes] must be one integer in 1..256, got {value!r}")
        return int(value)
    maps = [v for k, v in arrays.items() if k.endswith(("inputs", "label_maps")) and v.size]
    top = max((int(np.max(m)) for m in maps), default=0)
    return top + 1


def _label_maps(raw: np.ndarray, input_classes: int, name: str) -> np.ndarray:
    """Integer maps [N, H, W] or [N, H, W, 1] -> uint8 ids [N, H, W, 1], checked."""
    if raw.ndim == 4 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3 or not np.issubdtype(raw.dtype, np.integer):
        raise DataError(
            f"{name}: label maps must be integer class ids [N, H, W], got {raw.dtype} {raw.shape}"
        )
    if raw.size and (raw.min() < 0 or raw.max() >= input_classes):
        raise DataError(
            f"{name}: class ids must lie in 0..{input_classes - 1}, found "
            f"{int(raw.min())}..{int(raw.max())}"
        )
    if input_classes > 256:
        raise DataError(f"{name}: at most 256 label classes are supported, got {input_classes}")
    return raw.astype(np.uint8)[..., None]
