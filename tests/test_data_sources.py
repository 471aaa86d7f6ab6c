"""Tests for genimg.data.sources: every source, its errors, and the real Fashion-MNIST copy."""

import gzip
import pathlib
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from genimg.data import sources
from genimg.data.sources import DataError, ImageData, load

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
ALTERNATIVES = ("idx:DIR", "folder:DIR", "npz:FILE", "digits", "$GENIMG_DATA_DIR")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No test sees the caller's data settings; TFDS looks in an empty directory."""
    for name in ("GENIMG_DATA_DIR", "GENIMG_TFDS_DOWNLOAD", "TFDS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENIMG_TFDS_DIR", str(tmp_path / "tfds"))


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------------------------
# IDX


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_idx(path: pathlib.Path, array: np.ndarray, compress: bool) -> pathlib.Path:
    data = _idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _random_mnist(rng, n=5, h=4, w=3):
    return rng.integers(0, 256, (n, h, w), np.uint8), rng.integers(0, 10, n).astype(np.uint8)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(("split", "prefix"), [("train", "train"), ("test", "t10k")])
def test_idx_round_trip(tmp_path, compress, split, prefix):
    images, labels = _random_mnist(np.random.default_rng(0))
    _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels, compress)
    data = load(f"idx:{tmp_path}", split)
    assert data.images.dtype == np.uint8 and data.images.shape == (5, 4, 3, 1)
    np.testing.assert_array_equal(data.images[..., 0], images)
    assert data.labels.dtype == np.int32
    np.testing.assert_array_equal(data.labels, labels)
    assert data.num_classes == int(labels.max()) + 1
    assert data.description == f"idx:{tmp_path} ({split}, 5 images)"


def test_idx_dot_spelling_and_max_examples(tmp_path):
    images, labels = _random_mnist(np.random.default_rng(1))
    _write_idx(tmp_path / "train-images.idx3-ubyte", images, compress=False)
    _write_idx(tmp_path / "train-labels.idx1-ubyte", labels, compress=True)
    data = load(f"idx:{tmp_path}", max_examples=2)
    np.testing.assert_array_equal(data.images[..., 0], images[:2])
    np.testing.assert_array_equal(data.labels, labels[:2])
    assert "first 2 of 5 images" in data.description


def _write_pair(directory, images=None, labels=None):
    rng = np.random.default_rng(2)
    default_images, default_labels = _random_mnist(rng)
    images_path = directory / "train-images-idx3-ubyte"
    labels_path = directory / "train-labels-idx1-ubyte"
    images_path.write_bytes(_idx_bytes(default_images) if images is None else images)
    labels_path.write_bytes(_idx_bytes(default_labels) if labels is None else labels)
    return images_path, labels_path


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load(f"idx:{tmp_path}")
    message = _one_line_error(excinfo)
    assert "train-images-idx3-ubyte" in message and str(tmp_path) in message


def test_idx_missing_labels(tmp_path):
    images, _ = _random_mnist(np.random.default_rng(0))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress=True)
    with pytest.raises(DataError) as excinfo:
        load(f"idx:{tmp_path}", "test")
    assert "t10k-labels-idx1-ubyte" in _one_line_error(excinfo)


def test_idx_bad_magic(tmp_path):
    images_path, _ = _write_pair(tmp_path, images=b"\x50\x4b\x03\x04" + bytes(100))
    with pytest.raises(DataError) as excinfo:
        load(f"idx:{tmp_path}")
    message = _one_line_error(excinfo)
    assert images_path.name in message and "magic" in message


def test_idx_gzip_without_suffix(tmp_path):
    images, _ = _random_mnist(np.random.default_rng(0))
    images_path, _ = _write_pair(tmp_path, images=gzip.compress(_idx_bytes(images)))
    with pytest.raises(DataError) as excinfo:
        load(f"idx:{tmp_path}")
    message = _one_line_error(excinfo)
    assert images_path.name in message and ".gz" in message


def test_idx_truncated(tmp_path):
    images, _ = _random_mnist(np.random.default_rng(0))
    images_path, _ = _write_pair(tmp_path, images=_idx_bytes(images)[:-7])
    with pytest.raises(DataError) as excinfo:
        load(f"idx:{tmp_path}")
    message = _one_line_error(excinfo)
    assert images_path.name in message and "truncated" in message


def test_idx_corrupt_gzip(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError) as excinfo:
        load(f"idx:{tmp_path}")
    assert "train-images-idx3-ubyte.gz" in _one_line_error(excinfo)


def test_idx_label_count_mismatch(tmp_path):
    _, labels_path = _write_pair(tmp_path, labels=_idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError) as excinfo:
        load(f"idx:{tmp_path}")
    message = _one_line_error(excinfo)
    assert labels_path.name in message and "4 labels" in message and "5 images" in message


def test_parse_idx_rejects_other_dtypes():
    data = bytes([0, 0, 0x0D, 1]) + np.asarray([2], ">u4").tobytes() + bytes(8)
    with pytest.raises(DataError, match="0x0d"):
        sources.parse_idx(data, "floats.idx", 1)


def test_idx_unknown_split(tmp_path):
    with pytest.raises(DataError, match="'validation'"):
        load(f"idx:{tmp_path}", "validation")


# ---------------------------------------------------------------------------------------------
# Real data: Debian's fashion-mnist package.


def _reference(path: pathlib.Path, header: int) -> np.ndarray:
    """Reads an IDX file independently of the code under test."""
    return np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8, offset=header)


@pytest.mark.parametrize(
    ("split", "prefix", "count"), [("train", "train", 60000), ("test", "t10k", 10000)]
)
def test_fashion_mnist_real(fashion_dir, split, prefix, count):
    data = load(f"idx:{fashion_dir}", split)
    assert data.images.shape == (count, 28, 28, 1) and data.images.dtype == np.uint8
    assert data.labels.shape == (count,) and data.num_classes == 10
    np.testing.assert_array_equal(np.bincount(data.labels, minlength=10), [count // 10] * 10)
    assert data.labels[0] == 9  # both splits start with an ankle boot
    labels = _reference(fashion_dir / f"{prefix}-labels-idx1-ubyte.gz", 8)
    images = _reference(fashion_dir / f"{prefix}-images-idx3-ubyte.gz", 16)
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.images.reshape(-1), images)


def test_fashion_mnist_short_name_uses_local_copy(fashion_dir):
    data = load("fashion_mnist", "test", max_examples=10)
    assert (
        data.description == f"fashion_mnist -> idx:{fashion_dir} (test, first 10 of 10000 images)"
    )
    assert data.images.shape == (10, 28, 28, 1)
    assert data.labels.tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


def test_short_name_prefers_genimg_data_dir(tmp_path, monkeypatch):
    images, labels = _random_mnist(np.random.default_rng(3))
    (tmp_path / "mine" / "fashion_mnist").mkdir(parents=True)
    _write_idx(tmp_path / "mine" / "fashion_mnist" / "t10k-images-idx3-ubyte", images, True)
    _write_idx(tmp_path / "mine" / "fashion_mnist" / "t10k-labels-idx1-ubyte", labels, True)
    monkeypatch.setenv("GENIMG_DATA_DIR", str(tmp_path / "mine"))
    data = load("fashion_mnist", "test")
    np.testing.assert_array_equal(data.images[..., 0], images)
    assert data.description.startswith(f"fashion_mnist -> idx:{tmp_path / 'mine'}")


def test_cifar10_python_batches(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        chw = rng.integers(0, 256, (2, 3, 32, 32), np.uint8)
        labels = rng.integers(0, 10, 2).tolist()
        batch = {b"data": chw.reshape(2, -1), b"labels": labels}
        (batches / name).write_bytes(pickle.dumps(batch))
        expected[name] = (chw.transpose(0, 2, 3, 1), labels)
    monkeypatch.setenv("GENIMG_DATA_DIR", str(tmp_path))
    test = load("cifar10", "test")
    np.testing.assert_array_equal(test.images, expected["test_batch"][0])
    assert test.labels.tolist() == expected["test_batch"][1] and test.num_classes == 10
    train = load("cifar10", "train")
    assert train.images.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(train.images[8:], expected["data_batch_5"][0])
    assert "cifar10 -> cifar10-batches:" in train.description


# ---------------------------------------------------------------------------------------------
# Folders of images


def _save(path: pathlib.Path, array: np.ndarray, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def test_folder_classes_exact_pixels(tmp_path):
    rng = np.random.default_rng(5)
    cat = [rng.integers(0, 256, (6, 5, 3), np.uint8) for _ in range(2)]
    dog = [rng.integers(0, 256, (6, 5, 3), np.uint8)]
    _save(tmp_path / "cat" / "b.png", cat[1])
    _save(tmp_path / "cat" / "a.png", cat[0])
    _save(tmp_path / "dog" / "a.PNG", dog[0])
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = load(f"folder:{tmp_path}")
    assert data.images.shape == (3, 6, 5, 3)
    np.testing.assert_array_equal(data.images, np.stack(cat + dog))  # sorted file names
    assert data.labels.tolist() == [0, 0, 1] and data.num_classes == 2
    assert data.description == f"folder:{tmp_path} (train, 3 images)"


def test_folder_mixed_sizes_png_and_jpeg(tmp_path):
    _save(tmp_path / "a_red" / "0.png", np.full((10, 7, 3), (255, 0, 0), np.uint8))
    _save(tmp_path / "b_blue" / "0.jpg", np.full((16, 16, 3), (0, 0, 255), np.uint8), quality=95)
    data = load(f"folder:{tmp_path}", image_size=8)
    assert data.images.shape == (2, 8, 8, 3) and data.labels.tolist() == [0, 1]
    assert data.description.endswith("(train, 2 images, resized 2 mixed-size images to 8x8)")
    np.testing.assert_array_equal(data.images[0], np.full((8, 8, 3), (255, 0, 0)))
    assert np.abs(data.images[1].astype(int) - np.array([0, 0, 255])).max() <= 3  # JPEG loss


def test_folder_mixed_sizes_need_image_size(tmp_path):
    _save(tmp_path / "0.png", np.zeros((4, 4), np.uint8))
    _save(tmp_path / "1.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError) as excinfo:
        load(f"folder:{tmp_path}")
    message = _one_line_error(excinfo)
    assert "1.png" in message and "image_size" in message


def test_folder_grayscale_and_unlabeled(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    _save(tmp_path / "0.png", gray)
    _save(tmp_path / "1.png", gray[::-1])
    data = load(f"folder:{tmp_path}")
    assert data.images.shape == (2, 3, 4, 1) and data.labels is None and data.num_classes is None
    np.testing.assert_array_equal(data.images[0, ..., 0], gray)


def test_folder_gray_and_rgb_mix_gives_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    _save(tmp_path / "0.png", gray)
    _save(tmp_path / "1.png", np.zeros((3, 4, 3), np.uint8))
    data = load(f"folder:{tmp_path}")
    assert data.images.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(data.images[0], np.repeat(gray[..., None], 3, axis=-1))


def test_folder_train_test_layout(tmp_path):
    _save(tmp_path / "train" / "x" / "0.png", np.zeros((2, 2), np.uint8))
    _save(tmp_path / "train" / "y" / "0.png", np.zeros((2, 2), np.uint8))
    _save(tmp_path / "test" / "x" / "0.png", np.full((2, 2), 7, np.uint8))
    assert len(load(f"folder:{tmp_path}", "train")) == 2
    test = load(f"folder:{tmp_path}", "test")
    assert len(test) == 1 and test.images[0, 0, 0, 0] == 7
    assert test.description.startswith(f"folder:{tmp_path / 'test'} ")


def test_folder_empty(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load(f"folder:{tmp_path}")
    assert str(tmp_path) in _one_line_error(excinfo)


def test_folder_corrupt_file(tmp_path):
    _save(tmp_path / "cls" / "good.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "cls" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError) as excinfo:
        load(f"folder:{tmp_path}")
    assert "bad.png" in _one_line_error(excinfo)


def test_folder_truncated_png(tmp_path):
    _save(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 256, (32, 32), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as excinfo:
        load(f"folder:{tmp_path}")
    assert "cut.png" in _one_line_error(excinfo)


def test_folder_rejects_16_bit_images(tmp_path):
    Image.fromarray(np.full((2, 2), 1000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DataError) as excinfo:
        load(f"folder:{tmp_path}")
    assert "deep.png" in _one_line_error(excinfo)


def test_folder_rgba_and_palette_become_rgb(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (10, 20, 30), 0
    _save(tmp_path / "a.png", rgba)
    Image.fromarray(np.full((2, 2, 3), (40, 50, 60), np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE
    ).save(tmp_path / "b.png")
    data = load(f"folder:{tmp_path}")
    assert data.images.shape == (2, 2, 2, 3)
    assert data.images[0, 0, 0].tolist() == [10, 20, 30]  # alpha dropped, colour kept
    assert data.images[1, 0, 0].tolist() == [40, 50, 60]


# ---------------------------------------------------------------------------------------------
# npz and digits


def test_npz_uint8_nhw_with_labels(tmp_path):
    images = np.random.default_rng(6).integers(0, 256, (4, 3, 3), np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([0, 2, 1, 2], np.int64))
    data = load(f"npz:{tmp_path / 'd.npz'}")
    np.testing.assert_array_equal(data.images[..., 0], images)
    assert data.labels.tolist() == [0, 2, 1, 2] and data.num_classes == 3


def test_npz_float_images_and_split_keys(tmp_path):
    floats = np.array([0.0, 0.5, 1.0, 0.25], np.float32).reshape(1, 2, 2, 1)
    np.savez(tmp_path / "d.npz", train_images=floats, test_images=floats[:, ::-1])
    data = load(f"npz:{tmp_path / 'd.npz'}", "train")
    assert data.images.reshape(-1).tolist() == [0, 128, 255, 64] and data.labels is None
    assert load(f"npz:{tmp_path / 'd.npz'}", "test").images.reshape(-1).tolist() == [
        255,
        64,
        0,
        128,
    ]


def test_npz_missing_key(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((1, 2, 2), np.uint8), y=np.zeros(1))
    with pytest.raises(DataError) as excinfo:
        load(f"npz:{tmp_path / 'd.npz'}")
    message = _one_line_error(excinfo)
    assert "['x', 'y']" in message and "'images'" in message


def test_npz_float_out_of_range(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.full((1, 2, 2), 3.0))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        load(f"npz:{tmp_path / 'd.npz'}")


def test_digits():
    from sklearn.datasets import load_digits

    train, test = load("digits", "train"), load("digits", "test")
    assert train.images.shape == (1438, 8, 8, 1) and test.images.shape == (359, 8, 8, 1)
    assert len(train) + len(test) == 1797 and train.num_classes == 10
    assert set(train.labels.tolist()) == set(range(10)) == set(test.labels.tolist())
    reference = load_digits()
    expected = np.round(reference.images * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(np.concatenate([train.images, test.images])[..., 0], expected)
    np.testing.assert_array_equal(np.concatenate([train.labels, test.labels]), reference.target)
    resized = load("digits", "test", image_size=16)
    assert resized.images.shape == (359, 16, 16, 1)
    assert resized.description == "digits:sklearn (test, 359 images, resized 8x8 -> 16x16)"


# ---------------------------------------------------------------------------------------------
# Resizing


def test_resize_matches_antialiased_bilinear_reference():
    images = np.random.default_rng(7).integers(0, 256, (3, 20, 20, 3), np.uint8)
    for size in (7, 32):  # down (antialiased) and up
        ours = sources.resize_images(images, size)
        reference = jax.image.resize(
            jnp.asarray(images, jnp.float32), (3, size, size, 3), "linear", antialias=True
        )
        reference = np.clip(np.round(np.asarray(reference)), 0, 255)
        assert ours.shape == (3, size, size, 3) and ours.dtype == np.uint8
        assert np.abs(ours.astype(int) - reference).max() <= 1  # Pillow rounds between passes


def _pil_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    return np.asarray(pil.resize((size, size), Image.BILINEAR)).reshape(size, size, -1)


@pytest.mark.parametrize(("shape", "size"), [((3, 28, 28, 1), 32), ((2, 40, 40, 3), 17)])
def test_resize_is_pillow_image_by_image(shape, size):
    images = np.random.default_rng(8).integers(0, 256, shape, np.uint8)
    expected = np.stack([_pil_bilinear(image, size) for image in images])
    np.testing.assert_array_equal(sources.resize_images(images, size), expected)


def test_resize_keeps_constant_images():
    images = np.full((2, 9, 9, 1), 77, np.uint8)
    assert (sources.resize_images(images, 4) == 77).all()


# ---------------------------------------------------------------------------------------------
# TFDS


def test_tfds_mock_data_matches_tfds():
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        reference = tfds.data_source("mnist", split="test")
        expected_images = np.stack([reference[i]["image"] for i in range(6)])
        expected_labels = [int(reference[i]["label"]) for i in range(6)]
        data = load("tfds:mnist:test", "train")  # the split in the string wins
        small = load("tfds:mnist", "test", image_size=14, max_examples=2)
    assert data.images.shape == (6, 28, 28, 1) and data.num_classes == 10
    np.testing.assert_array_equal(data.images, expected_images)
    assert data.labels.tolist() == expected_labels
    assert data.description == "tfds:mnist (test, 6 images)"
    assert small.images.shape == (2, 14, 14, 1)
    assert small.description == "tfds:mnist (test, first 2 of 6 images, resized 28x28 -> 14x14)"


class GenimgTinyImages(tfds.core.GeneratorBasedBuilder):
    """A 5-image dataset TFDS can prepare as ArrayRecord without TensorFlow or internet."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Tensor(shape=(6, 6, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=3),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(5), "test": self._generate_examples(2)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"image": np.full((6, 6, 1), 10 * i, np.uint8), "label": i % 3}


# TFDS 4.9.10 looks up resources of builders defined in packages with `importlib_resources`,
# which it only requires on Python < 3.9; a one-part module name skips that lookup.
GenimgTinyImages.__module__ = "genimg_tiny_images"


def test_tfds_not_prepared_names_alternatives():
    with pytest.raises(DataError) as excinfo:
        load("tfds:genimg_tiny_images")
    message = _one_line_error(excinfo)
    assert "not prepared" in message and "GENIMG_TFDS_DOWNLOAD=1" in message
    assert all(alternative in message for alternative in ALTERNATIVES)


def test_tfds_prepare_on_request_then_read_array_record(monkeypatch):
    monkeypatch.setenv("GENIMG_TFDS_DOWNLOAD", "1")
    data = load("tfds:genimg_tiny_images", "train")
    assert data.images.shape == (5, 6, 6, 1) and data.num_classes == 3
    values = data.images[:, 0, 0, 0].astype(int)  # TFDS shuffles records when it writes them
    assert sorted(values.tolist()) == [0, 10, 20, 30, 40]
    assert (data.images == values[:, None, None, None]).all()
    np.testing.assert_array_equal(data.labels, values // 10 % 3)
    assert data.description == "tfds:genimg_tiny_images (train, 5 images)"
    sliced = load("tfds:genimg_tiny_images:test[1:]")
    assert sliced.description == "tfds:genimg_tiny_images (test[1:], 1 image)"
    assert sliced.images[0, 0, 0, 0] in (0, 10)


class _ListSource:
    """A data source that records how it was read."""

    def __init__(self, n, batched=True):
        self.n, self.batched, self.calls = n, batched, []

    def __getitems__(self, keys):
        if not self.batched:
            raise TypeError("no batched reads")
        self.calls.append(list(keys))
        return [10 * k for k in keys]

    def __getitem__(self, key):
        self.calls.append(key)
        return 10 * key


def test_read_records_in_chunks_and_one_by_one():
    source = _ListSource(5)
    assert sources._read_records(source, 5, chunk=2) == [0, 10, 20, 30, 40]
    assert source.calls == [[0, 1], [2, 3], [4]]
    source = _ListSource(5, batched=False)
    assert sources._read_records(source, 3, chunk=2) == [0, 10, 20]
    assert source.calls == [0, 1, 2]


def test_tfds_unknown_split(monkeypatch):
    monkeypatch.setenv("GENIMG_TFDS_DOWNLOAD", "1")
    with pytest.raises(DataError) as excinfo:
        load("tfds:genimg_tiny_images:validation")
    message = _one_line_error(excinfo)
    assert "'validation'" in message and "splits: train, test" in message


def test_tfds_prepare_without_tensorflow(monkeypatch):
    def prepare_needing_tensorflow(self, **kwargs):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    monkeypatch.setenv("GENIMG_TFDS_DOWNLOAD", "1")
    monkeypatch.setattr(GenimgTinyImages, "download_and_prepare", prepare_needing_tensorflow)
    with pytest.raises(DataError) as excinfo:
        load("tfds:genimg_tiny_images")
    message = _one_line_error(excinfo)
    assert "pip install 'genimg[tfds-prepare]'" in message and "idx:DIR" in message


def test_short_name_falls_back_to_tfds_with_one_line_error():
    with pytest.raises(DataError) as excinfo:
        load("kmnist")
    message = _one_line_error(excinfo)
    assert "'kmnist' is not prepared" in message
    assert all(alternative in message for alternative in ALTERNATIVES)


def test_tfds_unknown_dataset():
    with pytest.raises(DataError) as excinfo:
        load("tfds:no_such_dataset_xyz")
    assert "no_such_dataset_xyz" in _one_line_error(excinfo)


# ---------------------------------------------------------------------------------------------
# Arguments and the dataclass


def test_unknown_source():
    with pytest.raises(DataError) as excinfo:
        load("xyz")
    assert _one_line_error(excinfo) == (
        "unknown data source 'xyz'; expected one of tfds:NAME[:SPLIT], idx:DIR, folder:DIR, "
        "npz:FILE, scenes[:OPTIONS], digits, mnist, fashion_mnist, cifar10, kmnist, "
        "paired:(folder|folder_btoa|npz|labelmap|edges):..., real_vs_fake:REAL,FAKE[,FAKE...]"
    )


@pytest.mark.parametrize(
    "kwargs", [{"image_size": 0}, {"max_examples": -1}, {"image_size": 2.5}, {"image_size": True}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(DataError, match=next(iter(kwargs))):
        load("digits", **kwargs)


def test_numpy_int_arguments():
    data = load("digits", "test", np.int64(4), max_examples=np.int32(3))
    assert data.images.shape == (3, 4, 4, 1)


def test_image_data_validates():
    with pytest.raises(DataError, match="uint8"):
        ImageData(np.zeros((1, 2, 2, 1), np.float32), None, None, "x")
    with pytest.raises(DataError, match="int32"):
        ImageData(np.zeros((2, 2, 2, 1), np.uint8), np.zeros(2, np.int64), 2, "x")
