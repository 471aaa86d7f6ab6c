"""genimg.synthesis: interpolation, arithmetic, inpainting and compositing on real families
(untrained tiny networks: the tools only need their functions), checked against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import signal

from experiments import cgan, dcgan, vae
from genimg import synthesis
from genimg.data import load
from genimg.errors import UserError
from genimg.metrics.reconstruction import hole_scores
from genimg.train.family import build_family

DIGITS = load("digits", "test", max_examples=32)
X = DIGITS.images.astype(np.float32) / 255.0  # [32, 8, 8, 1]


def _built(experiment, preset="tiny"):
    config = experiment.get_config(preset)
    family = build_family(config, (8, 8, 1), 10)
    return family, family.init_state(jax.random.key(0))


@pytest.fixture(scope="module")
def gan():
    return _built(dcgan)


@pytest.fixture(scope="module")
def vae_family():
    return _built(vae)


# --- interpolation ---------------------------------------------------------------------------


def _slerp64(a, b, t):
    """Shoemake's formula in float64."""
    omega = np.arccos(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def test_slerp_endpoints_norms_and_angles():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 16)).astype(np.float32)
    t = np.linspace(0, 1, 7, dtype=np.float32)
    path = synthesis.interpolate_codes(a, b, 7, "slerp")  # [5, 7, 16]
    np.testing.assert_array_equal(path[:, 0], a)  # exactly the endpoints
    np.testing.assert_array_equal(path[:, -1], b)
    for p in range(5):
        want = np.stack([_slerp64(a[p].astype(float), b[p].astype(float), s) for s in t])
        np.testing.assert_allclose(path[p], want, rtol=1e-4, atol=1e-5)
    # Unit codes stay on the sphere, at angle t * omega from a (a geodesic at constant speed).
    ua, ub = (
        a / np.linalg.norm(a, axis=-1, keepdims=True),
        b / np.linalg.norm(b, axis=-1, keepdims=True),
    )
    path = synthesis.interpolate_codes(ua, ub, 7, "slerp")
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0, atol=1e-5)
    omega = np.arccos(np.sum(ua * ub, -1))
    angles = np.arccos(np.clip(np.einsum("pd,psd->ps", ua, path), -1, 1))
    np.testing.assert_allclose(angles, omega[:, None] * t[None], atol=2e-3)
    # lerp: a straight line; slerp of (anti)parallel codes falls back to it.
    np.testing.assert_allclose(
        synthesis.interpolate_codes(a, b, 7, "lerp")[:, 3], (a + b) / 2, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(synthesis.slerp(a, 2 * a, 0.5), 1.5 * a, rtol=1e-6)
    with pytest.raises(UserError, match="at least 2 steps"):
        synthesis.interpolate_codes(a, b, 1)


def test_interpolation_images_at_t0_and_t1_are_the_endpoints(gan, vae_family):
    for family, state, (a, b) in (
        (*gan, np.random.default_rng(1).normal(size=(2, 3, 100)).astype(np.float32)),
        (*vae_family, (None, None)),
    ):
        if a is None:  # the VAE: posterior means of two test images
            a = synthesis.encode_images(family, state, X[:3])
            b = synthesis.encode_images(family, state, X[3:6])
        path = synthesis.interpolate_codes(a, b, 5, "slerp")
        images = synthesis.decode_codes(family, state, path)  # [3, 5, 8, 8, 1]
        assert images.shape == (3, 5, 8, 8, 1)
        np.testing.assert_allclose(images[:, 0], family.decode(state, jnp.asarray(a)), atol=1e-5)
        np.testing.assert_allclose(images[:, -1], family.decode(state, jnp.asarray(b)), atol=1e-5)


# --- arithmetic ------------------------------------------------------------------------------


def test_class_means_and_vector_arithmetic(gan):
    family, state = gan
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(30, 100)).astype(np.float32)
    labels = rng.integers(0, 3, size=30)
    means, counts = synthesis.class_means(codes, labels, 4)
    for c in range(3):
        np.testing.assert_allclose(means[c], codes[labels == c].mean(0), rtol=1e-5, atol=1e-6)
    assert counts.tolist() == [int(np.sum(labels == c)) for c in range(4)]
    assert np.isnan(means[3]).all()  # no codes of class 3
    out = synthesis.vector_arithmetic(family, state, codes[:2], labels[:2], means, [0, 1, 2])
    assert out.shape == (2, 3, 8, 8, 1)
    own = np.asarray(family.decode(state, jnp.asarray(codes[:2])))
    for r in range(2):  # c - b + b = c: the column of the row's own class is the example
        np.testing.assert_allclose(out[r, labels[r]], own[r], atol=1e-5)
    moved = codes[0] - means[labels[0]] + means[(labels[0] + 1) % 3]
    np.testing.assert_allclose(
        out[0, (labels[0] + 1) % 3], family.decode(state, jnp.asarray(moved[None]))[0], atol=1e-5
    )
    with pytest.raises(UserError, match="class 3"):
        synthesis.vector_arithmetic(family, state, codes[:1], labels[:1], means, [3])


def test_relabel_keeps_z_and_changes_the_class(gan):
    family, state = _built(cgan)
    codes = np.random.default_rng(3).normal(size=(2, 100)).astype(np.float32)
    out = synthesis.relabel(family, state, codes, [1, 5, 9])
    assert out.shape == (2, 3, 8, 8, 1)
    want = family.decode(state, jnp.asarray(codes[1:2]), jnp.array([5]))
    np.testing.assert_allclose(out[1, 1], want[0], atol=1e-5)
    with pytest.raises(UserError, match="unconditional"):
        synthesis.relabel(*gan, codes, [1])


# --- inpainting ------------------------------------------------------------------------------


def test_masks():
    center = synthesis.make_mask("center", 2, 8, 8)
    assert center.shape == (2, 8, 8, 1) and center.dtype == bool
    assert center[0, 2:6, 2:6].all() and center.sum() == 2 * 16
    assert synthesis.make_mask("left", 1, 8, 8)[0, :, :4].all()
    assert synthesis.make_mask("left", 1, 8, 8).sum() == 32
    assert synthesis.make_mask("bottom", 1, 8, 8)[0, 4:].all()
    random = synthesis.make_mask("random:0.3", 200, 8, 8, seed=1)
    assert abs(random.mean() - 0.3) < 0.02
    assert not np.array_equal(random[0], random[1])  # a fresh draw per image
    np.testing.assert_array_equal(random, synthesis.make_mask("random:0.3", 200, 8, 8, seed=1))
    for bad, message in (("random:1.5", "probability"), ("middle", "unknown mask")):
        with pytest.raises(UserError, match=message):
            synthesis.make_mask(bad, 1, 8, 8)


def test_mask_files(tmp_path):
    picture = np.zeros((8, 8), np.uint8)
    picture[1:3, 5:] = 255
    Image.fromarray(picture).save(tmp_path / "m.png")
    mask = synthesis.make_mask(str(tmp_path / "m.png"), 3, 8, 8)
    assert mask.sum() == 3 * 6 and mask[:, 1:3, 5:].all()
    Image.fromarray(np.zeros((10, 8), np.uint8)).save(tmp_path / "wrong.png")
    with pytest.raises(UserError, match="is 8x10 .* the images are 8x8"):
        synthesis.make_mask(str(tmp_path / "wrong.png"), 1, 8, 8)
    with pytest.raises(FileNotFoundError):
        synthesis.make_mask(str(tmp_path / "none.png"), 1, 8, 8)


def _methods(gan, vae_family):
    """name -> fill(images, mask), for every way of inpainting."""
    return {
        "invert": lambda x, m: synthesis.inpaint_invert(*gan, x, m, steps=3, restarts=2)[0],
        "encode_decode": lambda x, m: synthesis.inpaint_encode_decode(
            *vae_family, x, m, iterations=3
        ),
        "mean": lambda x, m: synthesis.inpaint_mean(x, m, X.mean(0)),
        "nearest": lambda x, m: synthesis.inpaint_nearest(x, m, X[16:])[0],
    }


def test_inpainting_keeps_visible_pixels_bit_for_bit(gan, vae_family):
    x = X[:6]
    mask = synthesis.make_mask("random:0.5", 6, 8, 8, seed=3)
    nothing = np.zeros_like(mask)
    for name, fill in _methods(gan, vae_family).items():
        filled = fill(x, mask)
        assert filled.shape == x.shape and filled.dtype == np.float32, name
        np.testing.assert_array_equal(np.where(mask, 0, filled), np.where(mask, 0, x), name)
        hidden = np.broadcast_to(mask, x.shape)
        assert not np.array_equal(filled[hidden], x[hidden]), name  # the holes did change
        np.testing.assert_array_equal(fill(x, nothing), x, err_msg=name)  # nothing hidden


def test_nearest_neighbour_on_visible_pixels_by_brute_force():
    x, reference = X[:4], X[8:]
    mask = synthesis.make_mask("right", 4, 8, 8)
    filled, index = synthesis.inpaint_nearest(x, mask, reference)
    visible = ~mask
    dist = ((x[:, None] - reference[None]) ** 2 * visible[:, None]).sum(axis=(2, 3, 4))
    np.testing.assert_array_equal(index, dist.argmin(1))
    np.testing.assert_array_equal(filled[:, :, 4:], reference[index][:, :, 4:])


def test_gan_inversion_lowers_the_visible_loss_on_a_fixed_target(gan):
    family, state = gan
    z_true = jax.random.normal(jax.random.key(5), (4, 100))
    target = np.asarray(family.decode(state, z_true))  # an image the generator can make
    mask = synthesis.make_mask("center", 4, 8, 8)
    filled, info = synthesis.inpaint_invert(
        family, state, target, mask, steps=60, restarts=3, lr=0.1, prior_weight=1e-3
    )
    assert info["codes"].shape == (4, 100)
    assert np.all(info["after"] < 0.5 * info["before"]), (info["before"], info["after"])
    # The reported error is the visible-pixel error of the returned code.
    again = np.asarray(family.decode(state, jnp.asarray(info["codes"])))
    visible = ~mask
    mse = ((again - target) ** 2 * visible).sum(axis=(1, 2, 3)) / visible.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(mse, info["after"], rtol=1e-3, atol=1e-7)
    np.testing.assert_array_equal(filled[mask], again[mask])


def test_encode_decode_needs_an_encoder(gan):
    with pytest.raises(UserError, match="cannot inpaint by encode-decode: it has no encoder-de"):
        synthesis.inpaint_encode_decode(*gan, X[:2], synthesis.make_mask("center", 2, 8, 8))


def _ssim_map64(a, b):
    """SSIM map (Wang et al. 2004) in float64: 11x11 Gaussian window, sigma 1.5, valid."""
    g = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
    window = np.outer(g, g) / np.outer(g, g).sum()
    f = lambda v: signal.correlate2d(v, window, mode="valid")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    s_aa, s_bb, s_ab = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2)
    )


def test_hole_scores_against_numpy():
    rng = np.random.default_rng(4)
    target = rng.random((3, 16, 16, 1))
    filled = np.clip(target + 0.1 * rng.normal(size=target.shape), 0, 1)
    mask = synthesis.make_mask("random:0.4", 3, 16, 16, seed=2)
    mask[2] = False
    mask[2, 0, 0] = True  # a hole with no SSIM window centre
    filled = np.where(mask, filled, target)
    got = hole_scores(target, filled, mask)
    for i in range(3):
        m = mask[i, ..., 0]
        mse = np.mean((target[i][m] - filled[i][m]) ** 2)
        np.testing.assert_allclose(got["mse"][i], mse, rtol=1e-5)
        np.testing.assert_allclose(got["psnr"][i], -10 * np.log10(mse), rtol=1e-5)
        smap = _ssim_map64(target[i, ..., 0], filled[i, ..., 0])
        centres = m[5:-5, 5:-5]
        want = smap[centres].mean() if centres.any() else np.nan
        np.testing.assert_allclose(got["ssim"][i], want, rtol=1e-4, atol=1e-5)
    assert np.isnan(got["ssim"][2])


# --- compositing -----------------------------------------------------------------------------


def test_matte_and_compose_by_hand():
    obj = np.zeros((2, 3, 3, 1), np.float32)
    obj[0, 1, 1] = 1.0
    obj[1] = 0.5
    alpha = synthesis.matte(obj, "hard", 0.1)
    np.testing.assert_array_equal(alpha[0, ..., 0], obj[0, ..., 0] > 0)
    assert alpha[1].min() == 1.0
    ring = np.ones((1, 5, 5, 1), np.float32)
    ring[0, 2, 2] = 0.0  # a dark pixel inside the silhouette
    assert synthesis.matte(ring, "hard", 0.1)[0, 2, 2, 0] == 1.0
    assert synthesis.matte(ring, "hard", 0.1, fill_holes=False)[0, 2, 2, 0] == 0.0
    soft = synthesis.matte(np.array([0.02, 0.05, 0.1, 0.15, 0.9]).reshape(1, 1, 5, 1), "soft", 0.1)
    np.testing.assert_allclose(soft.ravel(), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    image, labels, instances = synthesis.compose(
        obj, alpha, [4, 7], [(0, 0), (1, 1)], (5, 5), background=10
    )
    assert labels[1, 1] == 7 and instances[1, 1] == 1  # the second object is on top
    assert labels[0, 0] == 10 and instances[0, 0] == -1  # nothing there
    np.testing.assert_allclose(image[1:4, 1:4, 0], 0.5)
    assert labels[4, 4] == 10 and image[4, 4, 0] == 0.0


def test_composite_scenes_agree_with_their_label_maps_and_are_deterministic():
    family, state = _built(cgan)
    kwargs = dict(canvas=20, items=(2, 3), classes=[2, 5], threshold=0.2, seed=7)
    scenes = synthesis.composite_scenes(family, state, 5, **kwargs)
    assert scenes["images"].shape == (5, 20, 20, 1) and scenes["background"] == 10
    labels, alphas = scenes["label_maps"], scenes["alphas"]
    assert set(np.unique(labels)) <= {2, 5, 10}
    assert np.all(alphas[labels != 10] > 0)  # every labelled pixel is covered
    assert np.all(alphas[labels == 10] == 0)
    assert np.all((labels == 10) == (scenes["instance_maps"] == -1))
    for i in range(5):  # the table lists the classes placed, in layer order
        rows = scenes["items"][i][scenes["items"][i, :, 0] >= 0]
        assert 2 <= len(rows) <= 3 and set(rows[:, 0]) <= {2, 5}
        assert set(np.unique(scenes["instance_maps"][i])) <= set(range(-1, len(rows)))
    again = synthesis.composite_scenes(family, state, 5, **kwargs)
    for key in ("images", "label_maps", "instance_maps", "items"):
        np.testing.assert_array_equal(scenes[key], again[key])
    other = synthesis.composite_scenes(family, state, 5, **dict(kwargs, seed=8))
    assert not np.array_equal(scenes["items"], other["items"])
