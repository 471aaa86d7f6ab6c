"""Paired data: the layout transforms, the paired: sources, their errors and TrainData inputs."""

import numpy as np
import pytest
from PIL import Image

from genimg.data import DataError, TrainData, decode_inputs, load, paired, transforms


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train")


# ---------------------------------------------------------------------------------------------
# The transforms.


def test_label_map_partitions_every_pixel_deterministically(digits):
    images = digits.images[:64]
    maps = transforms.semantic_label_map(images)
    assert maps.shape == images.shape[:3] and maps.dtype == np.uint8
    assert set(np.unique(maps)) <= set(range(len(transforms.LABEL_CLASSES)))
    # Every class occurs, and the same images give the same maps, alone or in a batch.
    assert set(np.unique(maps)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(maps, transforms.semantic_label_map(images.copy()))
    np.testing.assert_array_equal(maps[5:6], transforms.semantic_label_map(images[5:6]))
    # The outline is exactly the object pixels that touch the background (4-neighbours).
    obj = maps > 0
    padded = np.pad(~obj, ((0, 0), (1, 1), (1, 1)), constant_values=True)
    touches = (
        padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
    )
    np.testing.assert_array_equal(maps == 2, obj & touches)


def test_label_map_of_a_drawn_square():
    # A bright square with a dark stripe on black: background, outline, body, interior.
    image = np.zeros((1, 16, 16, 1), np.uint8)
    image[0, 3:13, 3:13] = 200
    image[0, 7:9, 4:12] = 60
    maps = transforms.semantic_label_map(image)[0]
    assert (maps[:3] == 0).all() and (maps[13:] == 0).all()  # background
    assert maps[3, 3] == 2 and maps[12, 8] == 2  # the silhouette
    assert maps[7, 7] == 3  # the stripe is interior structure
    assert maps[4, 8] == 1  # plain body, away from the stripe and the edge
    rgb = np.repeat(image, 3, axis=-1)  # RGB goes through luma: the same map
    np.testing.assert_array_equal(transforms.semantic_label_map(rgb)[0], maps)


def test_edge_map_is_binary_thin_and_deterministic(digits):
    image = np.zeros((1, 16, 16, 1), np.uint8)
    image[0, :, 8:] = 255  # one vertical step
    edges = transforms.edge_map(image)[0]
    assert edges.dtype == np.uint8 and set(np.unique(edges)) == {0, 1}
    cols = np.nonzero(edges.any(axis=0))[0]
    assert set(cols) <= {7, 8} and edges[:, 7:9].sum(axis=1).max() == 1  # one pixel wide
    maps = transforms.edge_map(digits.images[:32])
    np.testing.assert_array_equal(maps, transforms.edge_map(digits.images[:32].copy()))
    np.testing.assert_array_equal(maps[3:4], transforms.edge_map(digits.images[3:4]))
    assert 0.05 < maps.mean() < 0.6


# ---------------------------------------------------------------------------------------------
# Sources.


def test_labelmap_and_edges_sources(digits):
    data = load("paired:labelmap:digits", "train", max_examples=20)
    np.testing.assert_array_equal(data.images, digits.images[:20])
    np.testing.assert_array_equal(data.labels, digits.labels[:20])
    assert data.input_classes == 4 and data.input_shape == (8, 8, 4)
    np.testing.assert_array_equal(data.inputs[..., 0], transforms.semantic_label_map(data.images))
    edges = load("paired:edges:digits", "test", max_examples=5)
    assert edges.input_classes is None and edges.input_shape == (8, 8, 1)
    assert set(np.unique(edges.inputs)) <= {0, 255}
    resized = load("paired:labelmap:digits", "train", 16, max_examples=3)
    assert resized.images.shape == (3, 16, 16, 1) and resized.inputs.shape == (3, 16, 16, 1)
    # The transform runs on the resized images.
    np.testing.assert_array_equal(
        resized.inputs[..., 0], transforms.semantic_label_map(resized.images)
    )


def test_folder_of_side_by_side_pairs(tmp_path):
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 256, (3, 6, 12, 3), dtype=np.uint8)
    for i, pair in enumerate(pairs):
        Image.fromarray(pair).save(tmp_path / f"{i}.png")
    data = load(f"paired:folder:{tmp_path}")
    np.testing.assert_array_equal(data.inputs, pairs[:, :, :6])
    np.testing.assert_array_equal(data.images, pairs[:, :, 6:])
    assert data.input_classes is None and data.labels is None
    back = load(f"paired:folder_btoa:{tmp_path}", image_size=4)
    assert back.images.shape == (3, 4, 4, 3) and back.inputs.shape == (3, 4, 4, 3)


def test_npz_pairs_with_images_or_label_maps(tmp_path):
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "img.npz"
    np.savez(path, inputs=rng.random((5, 8, 8)), targets=targets, labels=np.arange(5))
    data = load(f"paired:npz:{path}")
    assert data.inputs.shape == (5, 8, 8, 1) and data.input_classes is None
    np.testing.assert_array_equal(data.labels, np.arange(5))
    # Label maps: ids with an explicit class count, or under the name "label_maps".
    maps = rng.integers(0, 3, (5, 8, 8))
    np.savez(path, inputs=maps, targets=targets, input_classes=11)
    data = load(f"paired:npz:{path}", image_size=16)
    assert data.input_classes == 11 and data.input_shape == (16, 16, 11)
    np.testing.assert_array_equal(data.inputs[:, ::2, ::2, 0], maps)  # nearest neighbours
    np.savez(path, label_maps=maps.astype(np.int32), images=targets)
    assert load(f"paired:npz:{path}").input_classes == int(maps.max()) + 1
    # Per-split keys.
    np.savez(path, train_inputs=targets[:3], train_targets=targets[:3], test_inputs=targets[3:],
             test_targets=targets[3:])  # fmt: skip
    assert len(load(f"paired:npz:{path}", "test")) == 2


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            dict(inputs=np.zeros((4, 8, 8), np.uint8), targets=np.zeros((4, 6, 6), np.uint8)),
            "inputs are 4x8x8 but targets are 4x6x6 (N x H x W); every input needs a target",
        ),
        (
            dict(inputs=np.zeros((3, 8, 8), np.uint8), targets=np.zeros((4, 8, 8), np.uint8)),
            "inputs are 3x8x8 but targets are 4x8x8",
        ),
        (dict(images=np.zeros((2, 8, 8), np.uint8)), "expected 'inputs' and 'targets'"),
        (
            dict(label_maps=np.full((2, 4, 4), 5), images=np.zeros((2, 4, 4)), input_classes=3),
            "class ids must lie in 0..2, found 5..5",
        ),
    ],
)
def test_npz_errors_are_one_line(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        load(f"paired:npz:{path}")
    assert message in _one_line(err)


def test_folder_that_is_not_pairs_is_a_one_line_error(tmp_path):
    Image.fromarray(np.zeros((6, 12), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError) as err:
        load(f"paired:folder:{tmp_path}")
    assert "b.png is 10x6 (width x height), not a side-by-side A|B pair" in _one_line(err)
    for bad in ("paired:nope:x", "paired:labelmap:", "paired:folder"):
        with pytest.raises(DataError) as err:
            load(bad)
        assert "must be paired:KIND:ARG" in _one_line(err)
    assert paired.transform_of("paired:edges:npz:a.npz") == "edges"
    assert paired.transform_of("paired:npz:a.npz") is None


# ---------------------------------------------------------------------------------------------
# Batches.


def test_train_data_batches_inputs_with_their_images(digits):
    data = load("paired:labelmap:digits", "train", max_examples=64)
    plain = TrainData(data.images, data.labels, global_batch=16, seed=3)
    with_inputs = TrainData(
        data.images,
        data.labels,
        global_batch=16,
        seed=3,
        inputs=data.inputs,
        input_classes=data.input_classes,
    )
    for step in (0, 5):
        a, b = plain.batch(step), with_inputs.batch(step)
        np.testing.assert_array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
        np.testing.assert_array_equal(np.asarray(a["label"]), np.asarray(b["label"]))
        assert set(a) == {"image", "label"} and b["input"].shape == (16, 8, 8, 4)
        onehot = np.asarray(b["input"])
        np.testing.assert_array_equal(onehot.sum(-1), 1.0)
        # Each input is the label map of the image it came with.
        images = np.round((np.asarray(b["image"]) + 1) * 127.5).astype(np.uint8)
        np.testing.assert_array_equal(onehot.argmax(-1), transforms.semantic_label_map(images))
    assert with_inputs.input_shape == (8, 8, 4)
    edges = decode_inputs(np.array([[[[0], [255]]]], np.uint8))
    np.testing.assert_array_equal(np.asarray(edges), [[[[0.0], [1.0]]]])


@pytest.mark.parametrize("kind", ["labelmap", "edges"])
def test_transform_input_in_chunks_equals_one_pass(kind, monkeypatch):
    images = load("digits", "train", 28).images[:10]
    fn, _ = transforms.TRANSFORMS[kind]
    whole = fn(images)[..., None]
    monkeypatch.setattr(paired, "TRANSFORM_CHUNK", 3)  # chunks of 3, 3, 3 and 1 images
    chunked, _ = paired.transform_input(kind, images)
    np.testing.assert_array_equal(chunked, whole * np.uint8(255) if kind == "edges" else whole)
