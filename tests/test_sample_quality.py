"""sample_quality: real-vs-real and real-vs-noise with the domain extractor, the reference cache,
metric selection and naming, and load_fake."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from experiments import classifier as experiment
from genimg.data import load
from genimg.metrics import extractors as ex
from genimg.metrics.sample_quality import load_fake, sample_quality
from genimg.train.loop import train_from_config

TEST = load("digits", "test")  # 359 images, 8x8x1
# The 4-step classifier has dead ReLU units, so its feature covariances are singular; FID then
# adds eps to the diagonal, as pytorch-fid does, after scipy's warning.
pytestmark = pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    """Domain extractor of a 4-step tiny classifier run on the 8x8 digits."""
    workdir = tmp_path_factory.mktemp("cls")
    train_from_config(experiment.get_config("tiny"), str(workdir))
    return ex.domain_extractor(workdir)


def _counting(extractor):
    """The extractor with a list that records the batch size of every network call."""
    calls = []

    def batch_fn(images):
        calls.append(len(images))
        return extractor.batch_fn(images)

    return dataclasses.replace(extractor, batch_fn=batch_fn), calls


def _pixels(name="pixels"):
    def batch_fn(images):
        feats = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return feats, feats[:, :10] * 20.0

    return ex.Extractor(name, "1" * 64, "identity", 64, 10, batch_fn)


def test_real_vs_itself_and_vs_noise(domain, tmp_path):
    kw = dict(cache_dir=tmp_path, progress=False, kid_subsets=10)
    same = sample_quality(TEST.images, "digits", "test", domain, **kw)
    assert abs(same["fid"]) < 1e-3
    assert abs(same["kid"]) < 1e-3
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] > 0.9
    assert "is" not in same and 1.0 <= same["is_domain"] <= 10.0  # domain logits: is_domain
    assert same["n_real"] == same["n_fake"] == 359 and same["split"] == "test"
    assert same["extractor"] == domain.id and same["preprocessing"] == domain.preprocessing
    noise = np.random.default_rng(0).integers(0, 256, TEST.images.shape, dtype=np.uint8)
    far = sample_quality(noise, "digits", "test", domain, **kw)
    # The scale of a tiny classifier's features is arbitrary: compare with another real split.
    train = load("digits", "train", max_examples=359).images
    floor = sample_quality(train, "digits", "test", domain, **kw)
    assert far["fid"] > 5 * floor["fid"] > 0
    assert far["kid"] > 5 * floor["kid"] > 0
    assert far["recall"] < 0.6 * floor["recall"] and far["coverage"] < 0.6 * floor["coverage"]


def test_second_evaluation_skips_the_real_pass(domain, tmp_path):
    counted, calls = _counting(domain)
    fake = TEST.images[:100]
    first = sample_quality(fake, "digits", "test", counted, cache_dir=tmp_path, batch_size=64)
    assert calls == [64] * 6 + [64] * 2  # 359 real images, then 100 fake, in padded batches
    assert not first["real_from_cache"]
    del calls[:]
    second = sample_quality(fake, "digits", "test", counted, cache_dir=tmp_path, batch_size=64)
    assert calls == [64] * 2 and second["real_from_cache"]  # only the fakes
    assert second["fid"] == first["fid"] and second["precision"] == first["precision"]
    del calls[:]
    sample_quality(fake, "digits", "test", counted, num_real=200, cache_dir=tmp_path, batch_size=64)
    assert len(calls) == 4 + 2  # another num_real is another key: the real pass runs again


def test_metric_selection_and_inception_naming(tmp_path):
    fid_only = sample_quality(
        TEST.images[:50], "digits", "test", _pixels(), ["fid"], cache_dir=tmp_path
    )
    assert "fid" in fid_only and not {"kid", "precision", "is_domain", "is"} & set(fid_only)
    named = ex.Extractor("inception_v3_fid/pool3", "2" * 64, "identity", 64, 10, _pixels().batch_fn)
    is_only = sample_quality(TEST.images[:50], "digits", "test", named, "is", cache_dir=tmp_path)
    assert set(is_only) & {"is", "is_std", "is_domain"} == {"is", "is_std"}
    assert 1.0 <= is_only["is"] <= 10.0
    with pytest.raises(ValueError, match="unknown metrics"):
        sample_quality(
            TEST.images, "digits", "test", _pixels(), ("fid", "lpips"), cache_dir=tmp_path
        )
    with pytest.raises(ValueError, match="uint8"):
        sample_quality(TEST.images / 255.0, "digits", "test", _pixels(), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="at least 2 fake"):
        sample_quality(TEST.images[:1], "digits", "test", _pixels(), cache_dir=tmp_path)


def test_load_fake_npz_and_folder(tmp_path):
    images = TEST.images[:5]
    np.savez(tmp_path / "samples.npz", images=images)
    np.testing.assert_array_equal(load_fake(f"npz:{tmp_path / 'samples.npz'}"), images)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
    np.testing.assert_array_equal(load_fake(f"folder:{folder}"), images)
    assert load_fake("digits", num=3).shape == (3, 8, 8, 1)
