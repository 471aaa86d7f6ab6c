"""The linear probe and 1-NN (against scikit-learn), and the layout IoU (against a hand count)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from genimg.metrics import layout, probe


def test_logistic_regression_matches_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = np.argmax(x @ rng.normal(size=(5, 3)) + rng.normal(size=(300, 3)), axis=1)
    for c in (0.05, 1.0):
        params, iterations = probe.logistic_regression(x, y, 3, 1.0 / (c * len(x)), tol=1e-7)
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x, y)
        assert 0 < iterations < 500
        np.testing.assert_allclose(params["w"], ref.coef_.T, atol=2e-4)
        # sklearn's multinomial intercepts are defined up to a shared constant.
        np.testing.assert_allclose(
            params["b"] - params["b"].mean(), ref.intercept_ - ref.intercept_.mean(), atol=2e-4
        )
        probs = np.exp(x @ params["w"] + params["b"])
        probs /= probs.sum(1, keepdims=True)
        np.testing.assert_allclose(probs, ref.predict_proba(x), atol=2e-4)


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 8)) * 5
    y_train, y_test = rng.integers(0, 4, 400), rng.integers(0, 4, 100)
    x_train = centres[y_train] + rng.normal(size=(400, 8)) * 0.3
    x_test = centres[y_test] + rng.normal(size=(100, 8)) * 0.3
    scores = probe.probe_scores(x_train, y_train, x_test, y_test)
    assert scores["probe_linear_acc"] == 1.0 and scores["probe_1nn_acc"] == 1.0
    assert scores["probe_dim"] == 8 and scores["probe_linear_l2"] in probe.L2_GRID
    # Features that carry no class: chance level.
    noise = probe.probe_scores(
        rng.normal(size=(400, 8)), y_train, rng.normal(size=(100, 8)), y_test
    )
    assert noise["probe_linear_acc"] < 0.45


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_neighbour_matches_sklearn(metric):
    rng = np.random.default_rng(2)
    x_train, y_train = rng.normal(size=(200, 6)), rng.integers(0, 5, 200)
    x_test, y_test = rng.normal(size=(70, 6)), rng.integers(0, 5, 70)
    ref = KNeighborsClassifier(1, metric=metric, algorithm="brute").fit(x_train, y_train)
    want = float(np.mean(ref.predict(x_test) == y_test))
    got = probe.nearest_neighbour_accuracy(x_train, y_train, x_test, y_test, metric, chunk=32)
    assert got == pytest.approx(want)


def test_encode_images_pads_the_last_batch():
    images = np.arange(5 * 2 * 2, dtype=np.uint8).reshape(5, 2, 2, 1)
    feats = probe.encode_images(lambda x: x.reshape(len(x), -1) * 2.0, images, batch_size=2)
    np.testing.assert_allclose(feats, images.reshape(5, -1) / 255.0 * 2.0, rtol=1e-6)


def test_layout_iou_by_hand():
    target = np.array([[0, 0, 1], [1, 2, 2]])
    predicted = np.array([[0, 1, 1], [1, 2, 0]])
    conf = layout.confusion_matrix(target, predicted, 4)
    assert conf.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    scores = layout.iou_scores(conf, ["a", "b", "c", "d"])
    # IoU: a 1/3, b 2/3, c 1/2; d absent from both maps and left out of the mean.
    assert scores["iou/a"] == pytest.approx(1 / 3) and scores["iou/b"] == pytest.approx(2 / 3)
    assert scores["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert np.isnan(scores["iou/d"]) and scores["pixel_acc"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="ids must lie in 0..3"):
        layout.confusion_matrix(target, predicted + 3, 4)
