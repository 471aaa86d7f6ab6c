"""Tests for FeatureStats, frechet_distance and the reference-statistics cache."""

import logging
import os

import numpy as np
import pytest
import scipy.linalg

from genimg.metrics import fid as fid_lib
from genimg.metrics.feature_stats import FeatureStats
from genimg.metrics.fid import fid_from_features, frechet_distance
from genimg.metrics.refstats import (
    array_tree_checksum,
    cached_reference_stats,
    reference_key,
)


def _random_gaussian(rng, d):
    w = rng.normal(size=(d, d))
    return rng.normal(size=d), w @ w.T / d + 0.1 * np.eye(d)


def _psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _frechet_eig_reference(mu1, s1, mu2, s2):
    """Tr (s1 s2)^{1/2} = sum sqrt(eig(s1^{1/2} s2 s1^{1/2})), a symmetric PSD matrix: no sqrtm."""
    r = _psd_sqrt(s1)
    eig = np.linalg.eigvalsh(r @ s2 @ r)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean


# ---------------------------------------------------------------------------- FeatureStats


def test_feature_stats_matches_np_cov_for_uneven_batches():
    rng = np.random.default_rng(0)
    # A large common offset would ruin naive sum / sum-of-squares accumulation in float32.
    x = rng.normal(size=(61, 5)) * [1.0, 2.0, 0.5, 3.0, 1.0] + 1e3
    stats = FeatureStats()
    for lo, hi in [(0, 7), (7, 8), (8, 8), (8, 40), (40, 61)]:  # includes a 1-row, 0-row batch
        stats.update(x[lo:hi].astype(np.float32) if lo == 8 else x[lo:hi])
    x[8:40] = x[8:40].astype(np.float32)  # the float32 batch is what the reference sees
    assert stats.n == 61 and stats.dim == 5
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    assert stats.mean.dtype == np.float64 and stats.cov.dtype == np.float64


def test_feature_stats_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4))
    a = FeatureStats(keep_features=True).update(x[:11])
    b = FeatureStats(keep_features=True).update(x[11:20]).update(x[20:])
    a.merge(b)
    assert a.n == 30
    np.testing.assert_allclose(a.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.cov, np.cov(x, rowvar=False), rtol=1e-12)
    np.testing.assert_array_equal(a.features, x.astype(np.float32))
    assert a.merge(FeatureStats(keep_features=True)).n == 30  # merging an empty one is a no-op


def test_feature_stats_errors():
    stats = FeatureStats().update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dimension 5 does not match"):
        stats.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"2-D \[N, D\]"):
        stats.update(np.zeros(4))
    with pytest.raises(ValueError, match="NaN or Inf"):
        stats.update(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="at least 2"):
        _ = FeatureStats().update(np.zeros((1, 4))).cov
    with pytest.raises(ValueError, match="empty"):
        _ = FeatureStats().mean
    with pytest.raises(ValueError, match="keep_features"):
        _ = stats.features


# ---------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_matches_eigendecomposition_reference():
    rng = np.random.default_rng(2)
    for d in (1, 3, 16):
        mu1, s1 = _random_gaussian(rng, d)
        mu2, s2 = _random_gaussian(rng, d)
        got = frechet_distance(mu1, s1, mu2, s2)
        assert isinstance(got, float)
        np.testing.assert_allclose(got, _frechet_eig_reference(mu1, s1, mu2, s2), rtol=1e-10)


def test_frechet_distance_closed_forms():
    # 1-d: N(0, 1) vs N(1, 4) -> 1 + 1 + 4 - 2 * 2 = 2.
    assert frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(2.0, abs=1e-12)
    # Diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt(v1) - sqrt(v2))^2.
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.1, 3, size=8), rng.uniform(0.1, 3, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_fid_of_a_set_with_itself_is_zero_and_shift_adds_squared_norm():
    x = np.random.default_rng(4).normal(size=(300, 16))
    assert abs(fid_from_features(x, x)) < 1e-9
    # Translating one set by t changes only the mean term: FID = ||t||^2.
    t = np.full(16, 0.5)
    assert fid_from_features(x, x + t) == pytest.approx(16 * 0.25, rel=1e-9)


def test_frechet_distance_bad_input():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="equal shapes"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"covariances must be \[3, 3\]"):
        frechet_distance(mu, s, mu, np.eye(4))
    with pytest.raises(ValueError, match="sigma2 contains NaN"):
        frechet_distance(mu, s, mu, np.full((3, 3), np.nan))
    # Not PSD: sqrtm(diag(1, -1)) has imaginary part 1 on the diagonal.
    with pytest.raises(ValueError, match="imaginary component"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_frechet_distance_adds_eps_offset_when_sqrtm_fails(monkeypatch, caplog):
    rng = np.random.default_rng(5)
    mu1, s1 = _random_gaussian(rng, 4)
    mu2, s2 = _random_gaussian(rng, 4)
    real_sqrtm, calls = scipy.linalg.sqrtm, []

    def flaky_sqrtm(a):  # the first attempt "fails" like a singular product does
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(fid_lib.scipy.linalg, "sqrtm", flaky_sqrtm)
    eps = 1e-2
    with caplog.at_level(logging.WARNING):
        got = frechet_distance(mu1, s1, mu2, s2, eps=eps)
    assert len(calls) == 2 and "singular" in caplog.text
    off = eps * np.eye(4)
    np.testing.assert_allclose(calls[1], (s1 + off) @ (s2 + off), rtol=1e-14)
    # Traces use the original covariances; only the cross term uses the offset ones.
    tr_covmean = np.sqrt(np.linalg.eigvalsh(_psd_sqrt(s1 + off) @ (s2 + off) @ _psd_sqrt(s1 + off)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean.sum()
    assert got == pytest.approx(expected, rel=1e-10)


def test_fid_on_rank_deficient_covariances_is_finite():
    # Fewer samples than dimensions: both covariances are singular.
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 1.0
    got = fid_from_features(a, b)
    assert np.isfinite(got) and got > 32 * 0.5  # the mean shift alone contributes 32


# ---------------------------------------------------------------------------- refstats


def _key(**overrides):
    key = dict(
        dataset="tfds:cifar10",
        split="train",
        num_images=40,
        extractor="inception_v3_fid/pool3",
        weights_hash="abc123",
        preprocessing="clean_bicubic_299",
        code_version="1",
    )
    key.update(overrides)
    return key


class _Counter:
    def __init__(self, feats):
        self.feats, self.calls = feats, 0

    def __call__(self):
        self.calls += 1
        return self.feats


def test_refstats_caches_and_reuses(tmp_path):
    feats = np.random.default_rng(7).normal(size=(40, 6)).astype(np.float32)
    compute = _Counter(feats)
    mu, sigma, extra = cached_reference_stats(_key(), compute, tmp_path)
    assert compute.calls == 1 and not extra["from_cache"] and extra["n"] == 40
    np.testing.assert_allclose(mu, feats.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-12)
    assert extra["path"] == os.path.join(tmp_path, f"refstats_{reference_key(_key())}.npz")

    mu2, sigma2, extra2 = cached_reference_stats(_key(), compute, tmp_path)
    assert compute.calls == 1 and extra2["from_cache"]
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    assert os.listdir(tmp_path) == [os.path.basename(extra["path"])]  # no temporary files left


def test_refstats_key_changes_recompute(tmp_path):
    feats = np.random.default_rng(8).normal(size=(40, 3))
    compute = _Counter(feats)
    cached_reference_stats(_key(), compute, tmp_path)
    # Key order does not matter; any changed value does.
    cached_reference_stats(dict(reversed(list(_key().items()))), compute, tmp_path)
    assert compute.calls == 1
    cached_reference_stats(_key(weights_hash="def456"), compute, tmp_path)
    cached_reference_stats(_key(preprocessing="tf_bilinear"), compute, tmp_path)
    assert compute.calls == 3 and len(os.listdir(tmp_path)) == 3
    assert reference_key(_key()) != reference_key(_key(code_version="2"))


@pytest.mark.parametrize("garbage", [b"", b"not a zip file", b"PK\x03\x04truncated"])
def test_refstats_corrupt_file_is_recomputed_and_replaced(tmp_path, caplog, garbage):
    feats = np.random.default_rng(9).normal(size=(40, 3))
    compute = _Counter(feats)
    _, _, extra = cached_reference_stats(_key(), compute, tmp_path)
    with open(extra["path"], "wb") as f:
        f.write(garbage)
    with caplog.at_level(logging.WARNING):
        mu, _, extra = cached_reference_stats(_key(), compute, tmp_path)
    assert compute.calls == 2 and not extra["from_cache"] and "corrupt" in caplog.text
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-12)
    cached_reference_stats(_key(), compute, tmp_path)  # the replacement is a valid cache
    assert compute.calls == 2


def test_refstats_rejects_wrong_stored_key_and_nonfinite(tmp_path):
    feats = np.random.default_rng(10).normal(size=(40, 3))
    compute = _Counter(feats)
    _, _, extra = cached_reference_stats(_key(), compute, tmp_path)
    good = dict(np.load(extra["path"]))
    np.savez(extra["path"], **{**good, "sigma": np.full((3, 3), np.nan)})
    cached_reference_stats(_key(), compute, tmp_path)
    np.savez(extra["path"], **{**good, "key_json": np.array("{}")})
    cached_reference_stats(_key(), compute, tmp_path)
    assert compute.calls == 3


def test_refstats_store_features(tmp_path):
    feats = np.random.default_rng(11).normal(size=(40, 5))
    compute = _Counter(feats)
    cached_reference_stats(_key(), compute, tmp_path)  # moments only
    # Asking for features when the cache has none recomputes and rewrites with them.
    _, _, extra = cached_reference_stats(_key(), compute, tmp_path, store_features=True)
    assert compute.calls == 2
    assert extra["features"].dtype == np.float32
    np.testing.assert_array_equal(extra["features"], feats.astype(np.float32))
    _, _, extra = cached_reference_stats(_key(), compute, tmp_path, store_features=True)
    assert compute.calls == 2 and extra["from_cache"]
    np.testing.assert_array_equal(extra["features"], feats.astype(np.float32))
    _, _, extra = cached_reference_stats(_key(), compute, tmp_path)
    assert compute.calls == 2 and "features" not in extra


def test_refstats_accepts_streaming_feature_stats(tmp_path):
    feats = np.random.default_rng(12).normal(size=(40, 3))

    def compute():
        stats = FeatureStats(keep_features=True)
        for i in range(0, 40, 16):
            stats.update(feats[i : i + 16])
        return stats

    mu, sigma, extra = cached_reference_stats(_key(), compute, tmp_path, store_features=True)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-12)
    assert extra["features"].shape == (40, 3)


def test_refstats_bad_keys_and_counts(tmp_path):
    compute = _Counter(np.zeros((40, 2)))
    bad = _key()
    del bad["weights_hash"]
    with pytest.raises(ValueError, match=r"missing \['weights_hash'\]"):
        cached_reference_stats(bad, compute, tmp_path)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        cached_reference_stats(_key(split=object()), compute, tmp_path)
    with pytest.raises(ValueError, match="num_images=50"):
        cached_reference_stats(_key(num_images=50), compute, tmp_path)
    assert compute.calls == 1 and os.listdir(tmp_path) == []


def test_refstats_unwritable_cache_still_returns_stats(tmp_path, caplog):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    feats = np.random.default_rng(13).normal(size=(40, 3))
    with caplog.at_level(logging.WARNING):
        mu, _, extra = cached_reference_stats(_key(), _Counter(feats), not_a_dir)
    assert "could not write" in caplog.text and not extra["from_cache"]
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-12)


def test_array_tree_checksum_sees_every_weight():
    params = {"conv": {"kernel": np.ones((3, 3)), "bias": np.zeros(3)}, "dense": [np.ones(2)]}
    base = array_tree_checksum(params)
    assert base == array_tree_checksum({"dense": [np.ones(2)], "conv": dict(params["conv"])})
    changed = {**params, "dense": [np.array([1.0, 1.0 + 1e-12])]}
    assert array_tree_checksum(changed) != base
    assert array_tree_checksum({**params, "dense": [np.ones(2, np.float32)]}) != base
