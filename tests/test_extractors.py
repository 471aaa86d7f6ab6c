"""Feature extractors: batching and padding, image conforming, the domain classifier end to end,
and the Inception extractor's shapes with random in-process weights (no weights file)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genimg.data import load
from genimg.families import classifier as cls
from genimg.metrics import extractors as ex
from genimg.models.inception import FIDInceptionV3
from genimg.train.checkpoint import restore_run


@pytest.fixture(scope="module")
def domain(classifier_run):
    return ex.domain_extractor(classifier_run)


def _pixels_extractor(calls=None):
    """Features = flattened pixels / 255; logits = the first 3 features (a cheap fake net)."""

    def batch_fn(images):
        if calls is not None:
            calls.append(images.shape)
        feats = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return feats, feats[:, :3]

    return ex.Extractor("pixels", "0" * 64, "identity", 12, 3, batch_fn)


def test_extract_pads_to_one_shape_and_keeps_order():
    calls = []
    images = np.random.default_rng(0).integers(0, 256, (7, 2, 2, 3), dtype=np.uint8)
    out = ex.extract(_pixels_extractor(calls), images, batch_size=3, progress=False)
    assert calls == [(3, 2, 2, 3)] * 3  # 3 + 3 + (1 + 2 padding)
    want = images.reshape(7, -1) / 255.0
    np.testing.assert_allclose(out.features, want, rtol=1e-6)
    np.testing.assert_allclose(out.logits, want[:, :3], rtol=1e-6)
    np.testing.assert_allclose(out.stats.mean, want.mean(0), rtol=1e-6)
    np.testing.assert_allclose(out.stats.cov, np.cov(want, rowvar=False), rtol=1e-5, atol=1e-9)
    small = ex.extract(_pixels_extractor(calls), images[:2], batch_size=250, progress=False)
    assert calls[-1] == (2, 2, 2, 3) and small.features.shape == (2, 12)
    none = ex.extract(_pixels_extractor(), images, keep_features=False, keep_logits=False)
    assert none.features is None and none.logits is None and none.stats.n == 7


def test_bad_images_are_rejected_in_one_line():
    with pytest.raises(ValueError, match="must be uint8") as e:
        ex.extract(_pixels_extractor(), np.zeros((2, 2, 2, 3), np.float32))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        ex.extract(_pixels_extractor(), np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        ex.extract(_pixels_extractor(), np.zeros((0, 2, 2, 3), np.uint8))


def test_conform_images_matches_pil():
    rgb = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    gray = ex.conform_images(rgb, (8, 8, 1))
    for i in range(2):
        pil = Image.fromarray(rgb[i]).resize((8, 8), Image.Resampling.BILINEAR).convert("L")
        # PIL's "L" conversion rounds with fixed-point weights: at most 1 level apart.
        assert np.max(np.abs(gray[i, :, :, 0].astype(int) - np.asarray(pil, int))) <= 1
    assert ex.conform_images(gray, (8, 8, 3)).shape == (2, 8, 8, 3)
    assert ex.conform_images(gray, (8, 8, 1)) is gray
    with pytest.raises(ValueError, match="square"):
        ex.conform_images(gray, (8, 4, 1))


def test_domain_extractor_matches_the_classifier(classifier_run, domain):
    test = load("digits", "test")
    out = domain(test.images[:5])
    assert out["features"].shape == (5, 16) and out["logits"].shape == (5, 10)
    assert out["features"].dtype == np.float32
    _, family, state, _ = restore_run(classifier_run)
    feats, logits = cls.predict(family, state, test.images[:5])
    np.testing.assert_allclose(out["features"], feats, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-6)
    assert domain.id.startswith("domain_classifier/penultimate16@")
    assert domain.preprocessing == "domain_pil_bilinear_8x8x1_unit"
    assert domain.feature_dim == 16 and domain.num_logits == 10
    rgb_big = np.repeat(ex.conform_images(test.images[:3], (16, 16, 1)), 3, axis=-1)
    assert domain(rgb_big)["features"].shape == (3, 16)  # resized and converted to gray


def test_make_extractor_specs(classifier_run, domain):
    assert ex.make_extractor(domain) is domain
    again = ex.make_extractor(f"domain:{classifier_run}")
    assert again.id == domain.id  # same weights, same id
    for bad in ("resnet", "domain:", "inception:bicubic", 3):
        with pytest.raises(ValueError, match="extractor|resize mode"):
            ex.make_extractor(bad)
    with pytest.raises(FileNotFoundError, match="not a classifier run; train one"):
        ex.make_extractor(f"domain:{classifier_run / 'missing'}")


def _random_inception_variables():
    """Seeded He-scaled random weights for the FID Inception, without running its init."""
    shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    values = []
    for (path, leaf), key in zip(leaves, keys, strict=True):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            fan_in = np.prod(leaf.shape[:-1])
            values.append(jax.random.normal(key, leaf.shape) * np.sqrt(2.0 / fan_in))
        elif "var" in name or "scale" in name:
            values.append(jnp.ones(leaf.shape))
        else:
            values.append(jnp.zeros(leaf.shape))
    return jax.tree_util.tree_unflatten(treedef, values)


def test_inception_extractor_shapes_with_random_weights():
    """One Inception compile on 2 images (the slowest test here: tens of seconds on a CPU)."""
    variables = _random_inception_variables()
    inception = ex.inception_extractor(variables=variables, mode="clean")
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    out = inception(images)  # 8x8 gray -> 299x299 RGB
    assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert np.isfinite(out["features"]).all() and np.isfinite(out["logits"]).all()
    assert not np.allclose(out["features"][0], out["features"][1])
    assert inception.preprocessing == "clean_pil_bicubic_299_gray_to_rgb"
    legacy = ex.inception_extractor(variables=variables, mode="legacy")  # not run: one compile
    assert legacy.preprocessing == "legacy_bilinear_299_gray_to_rgb"
    assert legacy.weights_hash == inception.weights_hash
    assert inception.id.startswith("inception_v3_fid/pool3@")


def test_inception_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    from genimg.metrics import inception_weights as iw

    monkeypatch.delenv(iw.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv(iw.ENV_CACHE_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=iw.ENV_WEIGHTS):
        ex.make_extractor("inception")


def test_extractor_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _pixels_extractor().name = "other"
