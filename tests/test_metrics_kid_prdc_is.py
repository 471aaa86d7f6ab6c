"""Tests for KID, precision/recall/density/coverage and the Inception Score."""

import numpy as np
import pytest

from genimg.metrics.inception_score import inception_score
from genimg.metrics.kid import kernel_inception_distance, kid_subset_indices, mmd2_unbiased
from genimg.metrics.prdc import knn_sq_radii, precision_recall_density_coverage

# ---------------------------------------------------------------------------- KID


def _mmd2_unbiased_loops(x, y):
    """Brute-force unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, one pair at a time."""
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def test_mmd2_unbiased_matches_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-12)


def test_kid_matches_brute_force_on_the_same_subsets():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(9, 4)).astype(np.float32)
    fake = (rng.normal(size=(7, 4)) + 0.5).astype(np.float32)
    mean, std = kernel_inception_distance(real, fake, num_subsets=5, subset_size=10, seed=3)
    subsets = kid_subset_indices(9, 7, num_subsets=5, subset_size=10, seed=3)
    assert all(len(ir) == len(jf) == 7 for ir, jf in subsets)  # clipped to min(n_real, n_fake)
    assert all(len(set(ir)) == 7 for ir, _ in subsets)  # without replacement
    real64, fake64 = real.astype(np.float64), fake.astype(np.float64)
    ref = [_mmd2_unbiased_loops(real64[ir], fake64[jf]) for ir, jf in subsets]
    assert mean == pytest.approx(np.mean(ref), rel=1e-12)
    assert std == pytest.approx(np.std(ref), rel=1e-9)
    # Deterministic given the seed; a different seed draws different subsets.
    assert kernel_inception_distance(real, fake, 5, 10, seed=3) == (mean, std)
    assert kernel_inception_distance(real, fake, 5, 10, seed=4)[0] != mean


def test_kid_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 8))
    same = rng.normal(size=(400, 8))
    shifted = rng.normal(size=(400, 8)) + 1.0
    kid_same, std_same = kernel_inception_distance(real, same, num_subsets=20, subset_size=100)
    kid_shift, _ = kernel_inception_distance(real, shifted, num_subsets=20, subset_size=100)
    assert abs(kid_same) < 3 * std_same + 1e-3
    assert kid_shift > 0.5 and kid_shift > 50 * abs(kid_same)
    # A set against itself (independent subsets, so overlapping rows): close to zero.
    assert abs(kernel_inception_distance(real, real, 10, 100)[0]) < 0.05


def test_kid_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="equal D"):
        kernel_inception_distance(x, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        kernel_inception_distance(x, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="num_subsets"):
        kernel_inception_distance(x, x, num_subsets=0)


# ---------------------------------------------------------------------------- PRDC


def _prdc_brute_force(real, fake, k):
    """Direct float64 transcription of the `prdc` package's definitions."""
    dist = lambda a, b: np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    r_real = np.sort(dist(real, real), axis=1)[:, k]  # index 0 is the point itself
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    d_rf = dist(real, fake)  # [N, M]
    inside_real = d_rf < r_real[:, None]
    return {
        "precision": inside_real.any(axis=0).mean(),
        "recall": (d_rf < r_fake[None, :]).any(axis=1).mean(),
        "density": inside_real.sum() / (k * len(fake)),  # same rounding as the library
        "coverage": (d_rf.min(axis=1) < r_real).mean(),
    }


@pytest.mark.parametrize("block_size", [1, 7, 1024])
def test_prdc_matches_brute_force(block_size):
    rng = np.random.default_rng(3)
    real = rng.normal(size=(40, 5))
    fake = rng.normal(size=(33, 5)) * 1.3 + 0.4
    for k in (1, 3, 5):
        got = precision_recall_density_coverage(real, fake, k=k, block_size=block_size)
        ref = _prdc_brute_force(real, fake, k)
        assert got == {name: float(v) for name, v in ref.items()}  # exact: same counts


def test_knn_radii_excludes_self():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(np.sqrt(knn_sq_radii(x, 1, block_size=3)), [1, 1, 2, 4])
    np.testing.assert_allclose(np.sqrt(knn_sq_radii(x, 2, block_size=3)), [3, 2, 3, 6])


def test_prdc_identical_sets():
    x = np.random.default_rng(4).normal(size=(50, 6))
    got = precision_recall_density_coverage(x, x, k=3)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    assert got["density"] >= 1.0  # each point lies in its own ball plus those of neighbours


def test_prdc_disjoint_clouds():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(50, 4))
    fake = rng.normal(size=(50, 4)) + 100.0
    got = precision_recall_density_coverage(real, fake, k=3)
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_mode_collapse_onto_one_of_two_clusters():
    rng = np.random.default_rng(6)
    centres = np.array([[-20.0, 0, 0], [20.0, 0, 0]])
    real = np.concatenate([rng.normal(size=(60, 3)) + c for c in centres])
    fake = rng.normal(size=(60, 3)) + centres[0]  # fresh samples of the first cluster only
    got = precision_recall_density_coverage(real, fake, k=3)
    assert got["precision"] > 0.85  # (nearly) every fake sample is realistic
    assert 0.35 < got["recall"] <= 0.5  # at most the first cluster is recalled
    assert 0.35 < got["coverage"] <= 0.5
    # An exact copy of one cluster: recall and coverage are exactly one half.
    got = precision_recall_density_coverage(real, real[:60], k=3)
    assert got["precision"] == 1.0 and got["recall"] == 0.5 and got["coverage"] == 0.5


def test_prdc_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        precision_recall_density_coverage(x, np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        precision_recall_density_coverage(x, x, k=5)
    with pytest.raises(ValueError, match="real contains NaN"):
        precision_recall_density_coverage(np.full((5, 3), np.inf), x)


# ---------------------------------------------------------------------------- Inception Score


def _inception_score_reference(logits, splits):
    """float64 numpy transcription of Salimans et al.'s formula (log-softmax, no scipy)."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    scores = []
    for chunk in np.array_split(log_p, splits):  # equal chunks when splits divides N
        log_q = np.log(np.exp(chunk).mean(axis=0))
        scores.append(np.exp(np.mean(np.sum(np.exp(chunk) * (chunk - log_q), axis=1))))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_numpy_reference():
    logits = np.random.default_rng(7).normal(size=(60, 1008)).astype(np.float32) * 4
    mean, std = inception_score(logits, splits=6)
    ref_mean, ref_std = _inception_score_reference(logits.astype(np.float64), 6)
    assert mean == pytest.approx(ref_mean, rel=1e-12)
    assert std == pytest.approx(ref_std, rel=1e-9)
    assert 1.0 < mean < 60.0


def test_inception_score_uniform_is_one_and_even_one_hot_is_num_classes():
    assert inception_score(np.zeros((20, 7)), splits=2) == pytest.approx((1.0, 0.0), abs=1e-12)
    c = 5
    probs = np.eye(c)[np.arange(40) % c]  # each split of 10 sees every class twice
    mean, std = inception_score(probs, splits=4, from_logits=False)
    assert mean == pytest.approx(c, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    # Very peaked logits approach the same bound.
    mean, _ = inception_score(100.0 * probs, splits=4)
    assert mean == pytest.approx(c, rel=1e-9)


def test_inception_score_shuffle_and_errors():
    logits = np.random.default_rng(8).normal(size=(30, 10)) * 3
    sorted_logits = logits[np.argsort(logits.argmax(1))]  # class-sorted rows skew the chunks
    shuffled = inception_score(sorted_logits, splits=3, shuffle_seed=0)
    assert shuffled != inception_score(sorted_logits, splits=3)
    assert shuffled == inception_score(sorted_logits[np.random.default_rng(0).permutation(30)], 3)
    # With one split the order of the rows does not matter.
    one = inception_score(sorted_logits, splits=1)
    assert one == pytest.approx(inception_score(logits, splits=1), rel=1e-13)
    with pytest.raises(ValueError, match="splits must be in"):
        inception_score(logits, splits=31)
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.ones((4, 3)), splits=1, from_logits=False)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        inception_score(np.zeros(10))
