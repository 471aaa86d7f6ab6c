"""Text to image: the captioned-scene generator and its held-out split, the tokenizer, the text
encoders' padding masks, caption fidelity, and a tiny run sampled from a prompt."""

import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import text2image
from genimg import sample
from genimg.data import load, scenes
from genimg.errors import UserError
from genimg.metrics import caption_fidelity as fidelity
from genimg.metrics.extractors import Extractor
from genimg.models import text2image as models
from genimg.train.loop import train_from_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _items(per_class=3):
    """Synthetic 28x28 items: class c is a block of grey level 70 + 18 c (so a stub
    classifier can read the class from the ink), 22-24 px tall: full size to the reader."""
    labels = np.repeat(np.arange(10), per_class).astype(np.int32)
    items = np.zeros((len(labels), 28, 28, 1), np.uint8)
    for i, c in enumerate(labels):
        items[i, 2 + i % 3 : 26, 3:25] = 70 + 18 * c
    return items, labels


def _stub_extractor():
    """Names a cell's class from its brightest grey level (see `_items`)."""

    def batch_fn(cells):
        level = cells.reshape(len(cells), -1).max(-1).astype(int)
        classes = np.clip((level - 70) // 18, 0, 9)
        return np.eye(10)[classes] + level[:, None] / 255.0, np.eye(10)[classes]

    return Extractor("stub", "0" * 16, "none", 10, 10, batch_fn)


def test_scenes_are_deterministic_and_captions_agree_with_the_layout():
    items, labels = _items()
    a = scenes.generate(items, labels, "train", 300, seed=3)
    b = scenes.generate(items, labels, "train", 300, seed=3)
    c = scenes.generate(items, labels, "train", 300, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert a.captions != c.captions
    assert a.images.shape == (300, 56, 56, 1) and a.tokens.shape == (300, scenes.MAX_LEN)
    cells = fidelity.cut_cells(a.images)
    for text, tokens, spec, layout, small, scene_cells in zip(
        a.captions, a.tokens, a.specs, a.cells, a.small, cells, strict=True
    ):
        assert scenes.TOKENIZER.decode(tokens) == text
        assert scenes.parse(text) == spec  # the caption, parsed back, is what was drawn
        assert scenes.satisfies(spec, layout, small=small)
        # the pixels agree: items exactly in the non-empty cells, of the named classes, the
        # named number of them, small exactly where the caption says "small"
        np.testing.assert_array_equal(fidelity.empty(scene_cells), layout.ravel() < 0)
        assert np.sum(layout >= 0) == len(spec.classes)
        np.testing.assert_array_equal(small, (layout >= 0) & (spec.size == "small"))
        for cell, cls, tiny in zip(scene_cells, layout.ravel(), small.ravel(), strict=True):
            if cls >= 0:
                assert cell.max() == 70 + 18 * cls
                assert (fidelity.ink_side(cell) <= fidelity.SMALL_SIDE) == tiny
        if spec.relation == "three":  # the items in reading order
            assert tuple(layout.ravel()[layout.ravel() >= 0]) == spec.classes
    kinds = {s.relation for s in a.specs}
    assert kinds == set(scenes.RELATION_TYPES)
    for word in (" right of ", " below ", "small ", "large ", "two ", "three ", ", a "):
        assert any(word in t for t in a.captions), word


def _named_combinations(text):
    """The combinations a caption names, read from its words (independently of `scenes`)."""
    names = {n: i for i, n in enumerate(scenes.CLASS_NAMES)}
    plural = {n: i for i, n in enumerate(scenes.PLURALS)}
    words = text.replace(",", " ,").split()
    if words[0] in ("two", "three"):
        return {({"two": 2, "three": 3}[words[0]], plural[words[1]])}
    if "," in words:
        items = [names[words[i]] for i in (1, 4, 7)]
        return {frozenset({a, b}) for a in items for b in items if a != b}
    if "at" in words:
        if len(words) == 7:  # "a <size> <item> at the <row> <column>"
            return {(words[1], names[words[2]]), (names[words[2]], " ".join(words[5:]))}
        return {(names[words[1]], " ".join(words[4:]))}
    return {frozenset({names[words[1]], names[words[-1]]})}


def test_the_held_out_split_has_no_training_combination():
    items, labels = _items()
    train = scenes.generate(items, labels, "train", 3000)
    test = scenes.generate(items, labels, "test", 500)
    held = scenes.generate(items, labels, "heldout", 500)
    wanted = set(scenes.HELD_OUT_POSITIONS) | set(scenes.HELD_OUT_PAIRS)
    wanted |= set(scenes.HELD_OUT_SIZES) | set(scenes.HELD_OUT_COUNTS)
    assert len(wanted) == 16
    seen = set().union(*map(_named_combinations, train.captions + test.captions))
    assert not seen & wanted
    # every other combination is trained on: 40 (item, position), 45 pairs, 20 (size,
    # item) and 20 (count, item) combinations, 4 of each held out
    assert len(seen) == 36 + 41 + 16 + 16
    for text in held.captions:  # every held-out caption names a held-out combination
        assert _named_combinations(text) & wanted, text
    assert set().union(*map(_named_combinations, held.captions)) & wanted == wanted
    assert {s.relation for s in held.specs} == set(scenes.RELATION_TYPES)
    # the held-out prompts of the README
    assert scenes.parse("a bag right of a sneaker").classes == (7, 8)
    for prompt in text2image.FIGURE_PROMPTS:
        held_out = bool(_named_combinations(prompt) & wanted)
        assert held_out == (prompt in text2image.FIGURE_PROMPTS[7:]), prompt


def test_scenes_source_splits_and_errors(fashion_dir):
    del fashion_dir
    data = load("scenes:n=16,n_test=4,seed=1", "train")
    held = load("scenes:n=16,n_test=4,seed=1", "heldout")
    assert data.images.shape == (16, 56, 56, 1) and data.labels.shape == (16, 8)
    assert data.num_classes is None and held.images.shape[0] == 4
    for source, split, message in [
        ("scenes:n=0", "train", "scenes option n=0 must be positive"),
        ("scenes:size=3", "train", "scenes option 'size=3' is not one of n=INT"),
        ("scenes:n=x", "train", "scenes option n=x: expected an integer"),
        ("scenes", "valid", "scenes have splits train, test, heldout"),
    ]:
        with pytest.raises(UserError, match=message) as err:
            load(source, split)
        assert "\n" not in str(err.value)


def test_tokenizer_round_trip_and_errors():
    tok = scenes.TOKENIZER
    longest = 0
    for spec in scenes.all_specs():
        for swap in (False, True):
            text = scenes.caption(spec, swap=swap and spec.relation in ("horizontal", "vertical"))
            ids = tok.encode(text)
            assert ids.shape == (tok.max_len,) and ids.dtype == np.int32
            assert tok.decode(ids) == text
            assert scenes.parse(text) == spec
            longest = max(longest, int(np.sum(ids > 0)))
    assert longest == tok.max_len == 8  # "a bag , a shirt and a boot"
    assert len(scenes.all_specs()) == 40 + 2 * 90 + 80 + 20 + 720
    three = scenes.parse("A bag , a shirt and a boot")  # case and comma spacing are free
    assert three == scenes.Spec("three", (8, 6, 9))
    assert scenes.parse("two sneakers") == scenes.Spec("count", (7, 7))
    assert scenes.parse("a small dress at the top right").size == "small"
    for bad in ("two sneaker", "a small bag left of a shirt", "a bag, a shirt, a boot"):
        with pytest.raises(UserError, match="is not a caption of the scene grammar") as err:
            scenes.parse(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"unknown words 'dog', 'cat' in prompt") as err:
        tok.encode("a dog, a cat and a bag")
    assert "\n" not in str(err.value) and "sneaker" in str(err.value)
    with pytest.raises(UserError, match="has 9 words; this model takes at most 8") as err:
        tok.encode("a bag left of a bag left of a")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["transformer", "bow"])
def test_text_encoders_ignore_padding(kind):
    enc = models.text_encoder(kind, len(scenes.TOKENIZER), 8, 16, 2, 4)
    captions = ["a bag left of a sneaker", "a sneaker left of a bag", "a shirt at the top left"]
    tokens = jnp.asarray(np.stack([scenes.TOKENIZER.encode(c) for c in captions]))
    params = enc.init(jax.random.key(0), tokens)
    e = enc.apply(params, tokens)
    assert e.shape == (3, 16)
    for i, text in enumerate(captions):  # unpadded: exactly the caption's own tokens
        n = len(text.split())
        alone = enc.apply(params, tokens[i : i + 1, :n])
        np.testing.assert_allclose(alone[0], e[i], rtol=1e-5, atol=1e-6)
    # other tokens under the padding mask, where only the padding is, change nothing
    noisy = tokens.at[2, 6:].set(0)
    np.testing.assert_allclose(enc.apply(params, noisy), e, rtol=1e-6)
    assert not np.allclose(e[0], e[2], atol=1e-3)
    # word order: the transformer tells the two orders apart, the bag of words cannot
    same = np.allclose(e[0], e[1], atol=1e-6)
    assert same == (kind == "bow")


def test_caption_fidelity_reads_real_scenes_and_catches_wrong_ones():
    items, labels = _items()
    made = scenes.generate(items, labels, "test", 120, seed=1)
    extractor = _stub_extractor()
    grids, small, features = fidelity.read_scenes(made.images, extractor, batch_size=64)
    np.testing.assert_array_equal(grids, made.cells)
    np.testing.assert_array_equal(small, made.small)
    assert made.small.any() and features.shape == (120, 40)
    ok, relations = fidelity.correct(grids, made.tokens, small)
    assert ok.all()
    relations = np.asarray(relations)
    assert set(relations) == set(scenes.RELATION_TYPES)
    with pytest.raises(ValueError, match="needs the items' sizes"):
        fidelity.correct(grids, made.tokens)  # a "size" caption cannot be checked without
    # the other size: only the "size" captions fail
    resized = fidelity.correct(grids, made.tokens, (grids >= 0) & ~small)[0]
    np.testing.assert_array_equal(resized, relations != "size")
    assert fidelity.size_accuracy(grids, small, made.tokens) == 1.0
    assert fidelity.size_accuracy(grids, (grids >= 0) & ~small, made.tokens) == 0.0
    assert fidelity.size_accuracy(grids[:0], small[:0], made.tokens[:0]) is None
    flipped, flipped_small, _ = fidelity.read_scenes(made.images[:, :, ::-1], extractor)
    ok_flipped, _ = fidelity.correct(flipped, made.tokens, flipped_small)  # left <-> right
    assert not ok_flipped[np.isin(relations, ["horizontal", "position", "size"])].any()
    assert ok_flipped[np.isin(relations, ["vertical", "count"])].all()
    placed, _ = fidelity.correct(flipped, made.tokens, classes=False)
    # mirrored, the items of a relation, a count or a list still fill cells the caption
    # allows; one named cell ("at the top left") is left empty
    np.testing.assert_array_equal(placed, ~np.isin(relations, ["position", "size"]))
    swapped = np.where(grids >= 0, (grids + 1) % 10, -1)  # right cells, wrong classes
    assert not fidelity.correct(swapped, made.tokens, small)[0].any()
    assert fidelity.correct(swapped, made.tokens, classes=False)[0].all()
    acc = fidelity.accuracy_by_relation(ok_flipped, list(relations), "x")
    assert acc["x/horizontal"] == 0.0 and acc["x/vertical"] == 1.0 and acc["x/count"] == 1.0
    assert acc["x/all"] == pytest.approx(np.mean(ok_flipped))
    nearest = fidelity.nearest_captions(made.tokens[:5], made.tokens)
    np.testing.assert_array_equal(made.tokens[nearest], made.tokens[:5])
    assert fidelity.scene_fid(features, features) == pytest.approx(0.0, abs=1e-6)


def test_ink_side_and_grow_against_a_loop():
    rng = np.random.default_rng(0)
    cells = np.zeros((6, 28, 28, 1), np.uint8)
    boxes = [(0, 28, 0, 28), (3, 10, 5, 25), (9, 10, 9, 10), (5, 23, 5, 23), (2, 4, 20, 27)]
    for cell, (r0, r1, c0, c1) in zip(cells, boxes, strict=False):
        cell[r0:r1, c0:c1] = rng.integers(65, 256, (r1 - r0, c1 - c0, 1))
    want = [max(r1 - r0, c1 - c0) for r0, r1, c0, c1 in boxes] + [0]
    np.testing.assert_array_equal(fidelity.ink_side(cells), want)
    item = np.zeros((28, 28, 1), np.uint8)
    item[4:24, 6:22] = 200
    back = fidelity.grow(scenes.shrink(item)).astype(int)
    assert fidelity.ink_side(scenes.shrink(item)) <= 14
    # the inverse up to the blur of two resamplings: the block's inside is kept exactly, its
    # edges move by at most a pixel
    np.testing.assert_array_equal(back[7:21, 9:19], 200)
    assert abs(int(fidelity.ink_side(back)) - 20) <= 1 and np.all(back[:2] == 0)


@pytest.fixture(scope="module")
def t2i_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("t2i_run")
    train_from_config(text2image.get_config("tiny"), workdir)
    return workdir


def _sample_args(workdir, **overrides):
    values = dict(
        workdir=str(workdir), num_samples=5, out=None, png=None, seed=0, batch_size=4,
        labels=None, with_test_split=None, prompt="a bag right of a sneaker",
    )  # fmt: skip
    values.update(overrides)
    return types.SimpleNamespace(**values)


def test_tiny_run_samples_a_prompt(t2i_run, fashion_dir):
    del fashion_dir
    lines = (t2i_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and (t2i_run / "samples" / "step_0000004.png").is_file()
    sample.main(_sample_args(t2i_run))
    folder = t2i_run / "prompts" / "a_bag_right_of_a_sneaker"
    assert sample.prompt_folder("a bag, a shirt and a boot") == "a_bag_a_shirt_and_a_boot"
    with np.load(folder / "samples.npz") as npz:
        assert npz["images"].shape == (5, 56, 56, 1)
        want = scenes.TOKENIZER.encode("a bag right of a sneaker")
        np.testing.assert_array_equal(npz["labels"], np.tile(want, (5, 1)))
    assert (folder / "grid.png").is_file() and (folder / "000004.png").is_file()
    with pytest.raises(UserError, match="has 10 words; this model takes at most 8"):
        sample.main(_sample_args(t2i_run, prompt="a bag right of a sneaker right of a bag"))


def test_unknown_prompt_word_is_a_one_line_error(t2i_run, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "genimg.sample", f"--workdir={t2i_run}",
         "--prompt=a dog right of a sneaker", f"--out={tmp_path / 's.npz'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown word 'dog' in prompt"), last
    assert not (tmp_path / "s.npz").exists()
