"""Hostile data, property-based: whatever bytes a data source finds -- random bytes, truncated
and zero-length files, wrong IDX magic and dimensions, mixed grayscale/RGB/alpha/16-bit
folders, huge declared images, symlink loops, out-of-range labels, NaN/Inf and wrong dtypes in
``.npz`` files, bad CIFAR pickles, odd source strings and splits -- ``genimg.data.load`` either
returns a well-formed `ImageData` or raises one `DataError` with a one-line message; the same
holds for ``genimg.evaluate --fake``. Never another exception, never a hang.

The examples are derandomized (CI sees the same ones every run);
``GENIMG_HYPOTHESIS_EXAMPLES=N`` runs N per test instead of the default, with fresh random
examples each time (``GENIMG_HYPOTHESIS_EXAMPLES=500`` for a thorough local pass).
"""

import contextlib
import gzip
import io
import os
import pathlib
import pickle
import signal
import struct
import tempfile
import zipfile
import zlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from genimg import evaluate
from genimg.data import DataError, ImageData, load
from genimg.errors import UserError

_EXAMPLES = os.environ.get("GENIMG_HYPOTHESIS_EXAMPLES")


def examples(default: int):
    """Hypothesis settings: ``default`` derandomized examples, or the environment's number."""
    return settings(
        max_examples=int(_EXAMPLES) if _EXAMPLES else default,
        derandomize=not _EXAMPLES,
        database=None,
        deadline=None,  # a hang is caught by `_no_hang`, slowness is not the property
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@contextlib.contextmanager
def _no_hang(seconds: int = 60):
    """Fail (instead of blocking CI) if one example takes longer than ``seconds``."""

    def fire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_loads_or_data_error(source: str, split: str = "train", **kwargs) -> ImageData | None:
    """The property: a well-formed ImageData, or one DataError in one line."""
    try:
        with _no_hang():
            data = load(source, split, **kwargs)
    except DataError as err:
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message, message
        event("DataError")
        return None
    event("loaded")
    images, labels = data.images, data.labels
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] in (1, 3)
    assert images.shape[0] >= 1 and images.shape[1] >= 1 and images.shape[2] >= 1
    if labels is not None:
        assert labels.dtype == np.int32 and labels.shape == images.shape[:1]
        assert labels.min() >= 0 and data.num_classes is not None
        assert labels.max() < data.num_classes <= 2**16
    return data


# --- IDX ---------------------------------------------------------------------------------------


def _idx(array: np.ndarray, magic: bytes | None = None, dims=None) -> bytes:
    magic = magic if magic is not None else bytes([0, 0, 8, array.ndim])
    dims = array.shape if dims is None else dims
    header = magic + b"".join(struct.pack(">I", d) for d in dims)
    return header + array.astype(np.uint8).tobytes()


_IDX_DAMAGE = ["none", "none", "truncated", "magic", "dims", "random", "empty"]


@st.composite
def idx_file(draw, array: np.ndarray, hostile: bool):
    """The IDX bytes of ``array`` (and the file's suffix), raw or gzipped; if ``hostile``,
    maybe damaged -- truncated, with a wrong magic or wrong dimensions, random or empty -- or
    a broken gzip."""
    kind = draw(st.sampled_from(_IDX_DAMAGE)) if hostile else "none"
    data = _idx(array)
    if kind == "truncated":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif kind == "magic":
        data = draw(st.binary(min_size=4, max_size=4)) + data[4:]
    elif kind == "dims":
        dims = draw(st.lists(st.integers(0, 2**32 - 1), min_size=array.ndim, max_size=array.ndim))
        data = _idx(array, dims=dims)
    elif kind == "random":
        data = draw(st.binary(max_size=300))
    elif kind == "empty":
        data = b""
    packing = draw(st.sampled_from(["raw", "gzip"] + (["broken_gzip"] if hostile else [])))
    if packing == "gzip":
        return gzip.compress(data), ".gz"
    if packing == "broken_gzip":
        packed = gzip.compress(data)
        return packed[: draw(st.integers(0, len(packed) - 1))], ".gz"
    return data, ""


@st.composite
def idx_sets(draw):
    """The (images, labels) files of one IDX split, each ``(bytes, suffix)``: intact, or
    (half the time) hostile: empty or damaged files, labels of another split."""
    hostile = draw(st.booleans())
    low = 0 if hostile else 1
    n, h, w = (draw(st.integers(low, 6)) for _ in range(3))
    images = draw(hnp.arrays(np.uint8, (n, h, w)))
    labels = draw(hnp.arrays(np.uint8, (n,)))
    if hostile and draw(st.booleans()):  # labels of another split
        labels = draw(hnp.arrays(np.uint8, (draw(st.integers(0, 6)),)))
    return draw(idx_file(images, hostile)), draw(idx_file(labels, hostile))


@examples(60)
@given(files=idx_sets())
def test_idx_files(files):
    with tempfile.TemporaryDirectory() as tmp:
        (images, images_ext), (labels, labels_ext) = files
        pathlib.Path(tmp, "train-images-idx3-ubyte" + images_ext).write_bytes(images)
        pathlib.Path(tmp, "train-labels-idx1-ubyte" + labels_ext).write_bytes(labels)
        assert_loads_or_data_error(f"idx:{tmp}")


# --- image folders -----------------------------------------------------------------------------

_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK"]  # what PNG / JPEG can hold


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and that has no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@st.composite
def image_files(draw, size, hostile: bool):
    """One file of an image folder: a ``size`` image in an 8-bit mode or, if ``hostile``,
    also of another size, 16-bit, truncated, empty, random bytes, or a PNG that declares a
    huge size."""
    kinds = ["image"] * 3 + (["truncated", "random", "empty", "huge"] if hostile else [])
    kind = draw(st.sampled_from(kinds))
    suffix = draw(st.sampled_from([".png", ".png", ".jpg", ".PNG"]))
    if kind in ("image", "truncated"):
        mode = draw(st.sampled_from(_MODES if hostile else [m for m in _MODES if m != "I;16"]))
        if hostile and draw(st.booleans()):
            size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
        seed = draw(st.integers(0, 2**16))
        pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 4), np.uint8)
        image = Image.fromarray(pixels, "RGBA").convert(mode if mode != "I;16" else "I")
        if mode == "I;16":
            image = image.convert("I;16")
        if mode == "CMYK":
            suffix = ".jpg"
        elif suffix == ".jpg" and mode not in ("L", "RGB"):
            suffix = ".png"
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if suffix == ".jpg" else "PNG")
        data = buffer.getvalue()
        if kind == "truncated":
            data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "random":
        data = draw(st.binary(max_size=200))
    elif kind == "empty":
        data = b""
    else:
        side = draw(st.sampled_from([20_000, 70_000, 2**31 - 1]))
        data, suffix = _png_header_only(side, side), ".png"
    return data, suffix


@st.composite
def folders(draw):
    """A folder: loose files or class sub-folders of same-size 8-bit images, or (half the
    time) hostile files and extras: symlink loops, hidden files, a folder named like a PNG."""
    hostile = draw(st.booleans())
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    classes = draw(st.integers(0, 3))
    files = image_files(size, hostile)
    low = 0 if hostile else 1
    groups = [draw(st.lists(files, min_size=low, max_size=4)) for _ in range(max(1, classes))]
    names = ["loop_to_parent", "loop_to_self", "hidden", "dir_named_png"]
    extras = draw(st.sets(st.sampled_from(names))) if hostile else set()
    return classes, groups, extras


def _write_folder(root: pathlib.Path, spec) -> None:
    classes, groups, extras = spec
    for c, files in enumerate(groups):
        folder = root / f"class{c}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        for i, (data, suffix) in enumerate(files):
            (folder / f"{i:03d}{suffix}").write_bytes(data)
    if "loop_to_parent" in extras:
        os.symlink(root, root / "loop")
    if "loop_to_self" in extras:
        os.symlink(root / "self.png", root / "self.png")
    if "hidden" in extras:
        (root / ".hidden.png").write_bytes(b"not an image")
    if "dir_named_png" in extras:
        (root / "folder.png").mkdir()


@examples(60)
@given(spec=folders(), image_size=st.sampled_from([None, None, 8]))
def test_image_folders(spec, image_size):
    with tempfile.TemporaryDirectory() as tmp:
        _write_folder(pathlib.Path(tmp), spec)
        assert_loads_or_data_error(f"folder:{tmp}", image_size=image_size)


# --- npz files ---------------------------------------------------------------------------------

_DTYPES = [
    np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.uint64,
    np.float16, np.float32, np.float64, np.bool_, np.complex64,
]  # fmt: skip


@st.composite
def arrays(draw, max_dims: int = 5):
    dtype = draw(st.sampled_from(_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    if np.issubdtype(dtype, np.floating):
        special = st.sampled_from([np.nan, np.inf, -np.inf])
        elements = st.one_of(st.floats(-2, 300, width=16), special)
        if draw(st.booleans()):  # mostly in [0, 1], as float images should be
            elements = st.one_of(st.floats(0, 1, width=16), special)
        return draw(hnp.arrays(dtype, shape, elements=elements))
    if dtype is np.uint64:
        return draw(hnp.arrays(dtype, shape, elements=st.integers(0, 2**64 - 1)))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def clean_npz(draw) -> dict:
    """Arrays a user would store: uint8 (or float in [0, 1]) NHW / NHWC images and, maybe,
    integer labels 0..9 -- under ``images`` or ``train_images``."""
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    shape += draw(st.sampled_from([(), (1,), (3,)]))
    if draw(st.booleans()):
        images = draw(hnp.arrays(np.uint8, shape))
    else:
        images = draw(hnp.arrays(np.float32, shape, elements=st.floats(0, 1, width=32)))
    prefix = draw(st.sampled_from(["", "train_"]))
    arrays = {f"{prefix}images": images}
    if draw(st.booleans()):
        arrays[f"{prefix}labels"] = draw(
            hnp.arrays(np.int64, shape[:1], elements=st.integers(0, 9))
        )
    return arrays


@st.composite
def hostile_npz(draw) -> dict:
    """Arrays of any dtype and shape (NaN/Inf, negative, complex, bool, 0-d, empty, huge
    labels, strings) under the expected keys, or others."""
    names = draw(
        st.lists(
            st.sampled_from(["images", "labels", "train_images", "train_labels", "other"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    contents = {}
    for name in names:
        if name.endswith("images") and draw(st.integers(0, 5)) == 0:
            contents[name] = np.array(["a", "bc"])
        elif name.endswith("labels") and draw(st.booleans()):
            size = draw(st.integers(0, 6))
            values = st.integers(-(2**40), 2**40) if draw(st.booleans()) else st.integers(0, 9)
            contents[name] = np.array(draw(st.lists(values, min_size=size, max_size=size)))
        else:
            contents[name] = draw(arrays())
    return contents


def _npz_declaring(shape) -> bytes:
    """An ``.npz`` whose ``images`` header declares ``shape`` (uint8) over 10 bytes of data."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    member.write(b"\0" * 10)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as npz:
        npz.writestr("images.npy", member.getvalue())
    return out.getvalue()


@st.composite
def npz_files(draw):
    """The bytes of an ``.npz`` file: clean or hostile arrays, saved compressed or not, maybe
    truncated; a header that declares a huge array; or random bytes."""
    kind = draw(st.sampled_from(["clean"] * 5 + ["hostile"] * 4 + ["random", "huge"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "huge":
        sides = st.sampled_from([10**4, 2**20, 2**40])
        return _npz_declaring(tuple(draw(st.lists(sides, min_size=2, max_size=4))))
    contents = draw(clean_npz() if kind == "clean" else hostile_npz())
    buffer = io.BytesIO()
    save = np.savez_compressed if draw(st.booleans()) else np.savez
    save(buffer, **contents)
    data = buffer.getvalue()
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


@examples(100)
@given(data=npz_files(), split=st.sampled_from(["train", "train", "train", "test"]))
def test_npz_files(data, split):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp, "data.npz")
        path.write_bytes(data)
        assert_loads_or_data_error(f"npz:{path}", split)


# --- local copies of the named data sets ------------------------------------------------------


@st.composite
def cifar_batches(draw):
    """The bytes of a CIFAR-10 python batch: random, truncated, or a pickle of a dict whose
    arrays have the wrong size, type or labels."""
    kind = draw(st.sampled_from(["valid"] * 4 + ["random", "dict", "truncated", "not_a_dict"]))
    if kind == "valid":
        n = draw(st.integers(1, 3))
        labels = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
        return pickle.dumps({b"data": np.zeros((n, 3072), np.uint8), b"labels": labels})
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "not_a_dict":
        return pickle.dumps([1, 2, 3])
    n = draw(st.integers(0, 3))
    batch = {}
    if draw(st.booleans()):
        size = n * 3072 + draw(st.sampled_from([0, 0, 1, -1]))
        batch[b"data"] = np.zeros(max(size, 0), np.uint8)
    if draw(st.booleans()):
        batch[b"labels"] = draw(st.lists(st.integers(-3, 12), min_size=n, max_size=n))
    data = pickle.dumps(batch)
    if kind == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


@examples(30)
@given(test_batch=cifar_batches(), idx=idx_sets())
def test_local_copies_of_named_sets(test_batch, idx):
    images, labels = idx
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, GENIMG_DATA_DIR=tmp):
        batches = pathlib.Path(tmp, "cifar10", "cifar-10-batches-py")
        batches.mkdir(parents=True)
        (batches / "test_batch").write_bytes(test_batch)
        assert_loads_or_data_error("cifar10", "test")
        idx = pathlib.Path(tmp, "kmnist")
        idx.mkdir()
        (idx / ("t10k-images-idx3-ubyte" + images[1])).write_bytes(images[0])
        (idx / ("t10k-labels-idx1-ubyte" + labels[1])).write_bytes(labels[0])
        assert_loads_or_data_error("kmnist", "test")


@examples(30)
@given(
    source=st.one_of(
        st.text(max_size=12),
        st.sampled_from(["digits", "idx:/nonexistent", "tfds:", "npz:", "mnist"]),
        st.sampled_from(["idx:", "npz:", "folder:", "tfds:", "digits", "mnist:"]).flatmap(
            lambda prefix: st.text(max_size=10).map(lambda rest: prefix + rest)
        ),
    ),
    split=st.one_of(st.sampled_from(["train", "test"]), st.text(max_size=6)),
)
def test_source_strings_and_splits(source, split):
    assert_loads_or_data_error(source, split)


# --- genimg.evaluate --fake --------------------------------------------------------------------


@pytest.fixture(scope="module")
def domain(classifier_run):
    return f"domain:{classifier_run}"


@examples(10)
@given(
    fake=st.one_of(npz_files().map(lambda d: ("npz", d)), folders().map(lambda f: ("folder", f)))
)
def test_evaluate_fake(domain, fake):
    kind, content = fake
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "npz":
            spec = pathlib.Path(tmp, "fake.npz")
            spec.write_bytes(content)
        else:
            spec = pathlib.Path(tmp, "fake")
            spec.mkdir()
            _write_folder(spec, content)
        try:
            with _no_hang(120):
                results = evaluate.run(
                    None, ["fid", "kid", "pr"], fake=f"{kind}:{spec}", real="digits",
                    extractor=domain, num_samples=64, num_images=50,
                )  # fmt: skip
        except UserError as err:
            assert str(err) and "\n" not in str(err), str(err)
            event(type(err).__name__)
            return
        event("evaluated")
        assert np.isfinite(results["fid"]) and results["n_fake"] >= 2
