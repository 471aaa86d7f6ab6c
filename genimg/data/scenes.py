"""Captioned scenes of Fashion-MNIST items: the ``scenes`` data source, its grammar and tokenizer.

A scene is a 56x56 grayscale canvas cut into a 2x2 grid of 28x28 cells; one to three
Fashion-MNIST items sit in cells, the other cells are black. Each scene has a caption from a
small grammar with six relation types:

    position    "a sandal at the top left"         one item, in the named cell
    horizontal  "a bag left of a sneaker"          two items side by side in one row
                "a bag right of a sneaker"         (the row is not named: either is right)
    vertical    "a shirt above a trouser"          two items in one column
                "a shirt below a trouser"
    size        "a small shirt at the top right"   one item in the named cell, drawn `SMALL`
                "a large shirt at the top right"   px wide (scaled down, centred) or full size
    count       "two sneakers", "three bags"       that many items of one class, any cells
    three       "a bag, a shirt and a boot"        three items of three classes in reading
                                                   order (top left, top right, bottom left,
                                                   bottom right), one cell (any) empty

Items of all but "small" captions are drawn at their full 28 px. Compositional generalisation
is measured on a **held-out combination split**: a caption is held out when it names one of
the combinations below (`combinations`); the train and test splits never caption them, the
``heldout`` split holds only captions that name at least one:

    (object, position)  `HELD_OUT_POSITIONS`: in "position" and "size" captions
    (object, object)    `HELD_OUT_PAIRS` (unordered): any two items of a two- or three-item
                        caption
    (size, object)      `HELD_OUT_SIZES`
    (count, object)     `HELD_OUT_COUNTS`

Training scenes take their items from Fashion-MNIST's train split, test and held-out scenes
from its test split. Everything is a pure function of ``(seed, split)``.

Source strings: ``scenes`` or ``scenes:n=20000,n_test=2000,seed=0`` (training scenes; test and
held-out scenes each; the generator seed). Splits: ``train``, ``test``, ``heldout``. Labels are
the captions as int32 token ids ``[N, MAX_LEN]`` (0 = padding) of `TOKENIZER`; the comma of a
"three" caption is a token of its own.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
from PIL import Image

from genimg.errors import UserError

CLASS_NAMES = (
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
)  # fmt: skip  -- Fashion-MNIST's classes 0..9, one word each
PLURALS = tuple(n + ("es" if n.endswith("ss") else "s") for n in CLASS_NAMES)
POSITIONS = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}
RELATION_TYPES = ("position", "horizontal", "vertical", "size", "count", "three")
SIZES = ("small", "large")
COUNTS = {"two": 2, "three": 3}
CELL = 28
GRID = 2
CANVAS = CELL * GRID
SMALL = 18  # px: a "small" item is the 28x28 item scaled to SMALL x SMALL, centred in its cell
MAX_LEN = 8
PAD = "<pad>"
VOCAB = (PAD, "a", "at", "the", "top", "bottom", "left", "right", "of", "above", "below")
VOCAB += CLASS_NAMES + ("small", "large", "two", "three", ",", "and") + PLURALS
SPLITS = ("train", "test", "heldout")
DEFAULTS = {"n": 20000, "n_test": 2000, "seed": 0}

# (class, position) pairs never captioned "a [size] <class> at the <position>" outside "heldout".
HELD_OUT_POSITIONS = ((5, "top left"), (8, "bottom right"), (1, "top right"), (4, "bottom left"))
# Unordered class pairs never in one two- or three-item caption outside "heldout".
HELD_OUT_PAIRS = (frozenset({7, 8}), frozenset({6, 1}), frozenset({3, 5}), frozenset({4, 9}))
# (size, class) pairs never captioned "a <size> <class> ..." outside "heldout".
HELD_OUT_SIZES = (("small", 8), ("large", 5), ("small", 0), ("large", 2))
# (count, class) pairs never captioned "<count> <classes>" outside "heldout".
HELD_OUT_COUNTS = ((2, 7), (3, 6), (3, 3), (2, 4))


class PromptError(UserError, ValueError):
    """A caption or prompt the tokenizer or the grammar cannot take; the message is one line."""


# --- tokenizer ------------------------------------------------------------------------------


class Tokenizer:
    """Word-level tokenizer over a fixed vocabulary; id 0 pads every caption to ``max_len``."""

    def __init__(self, vocab=VOCAB, max_len: int = MAX_LEN):
        self.vocab = tuple(vocab)
        self.max_len = max_len
        self.ids = {word: i for i, word in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> int32 [max_len]; unknown words and over-long texts are a `PromptError`."""
        words = words_of(text)
        if not words:
            raise PromptError("the prompt is empty; write a caption such as 'a bag left of a shoe'")
        unknown = list(dict.fromkeys(w for w in words if w not in self.ids or w == PAD))
        if unknown:
            raise PromptError(
                f"unknown word{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(w) for w in unknown)} in prompt {text!r}; the vocabulary is: "
                f"{' '.join(self.vocab[1:])}"
            )
        if len(words) > self.max_len:
            raise PromptError(
                f"prompt {text!r} has {len(words)} words; this model takes at most {self.max_len}"
            )
        ids = np.zeros(self.max_len, np.int32)
        ids[: len(words)] = [self.ids[w] for w in words]
        return ids

    def decode(self, ids) -> str:
        """int ids (padding anywhere is skipped) -> the caption text (commas attached)."""
        text = " ".join(self.vocab[int(i)] for i in np.asarray(ids).ravel() if int(i) != 0)
        return text.replace(" ,", ",")


def words_of(text: str) -> list[str]:
    """The tokens of ``text``: lower-cased words split at white space, a comma its own token."""
    return re.findall(r"[^\s,]+|,", text.lower())


TOKENIZER = Tokenizer()


# --- grammar --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a caption asks for. ``classes``: the one item ("position", "size"); (left, right)
    for "horizontal"; (top, bottom) for "vertical"; the class repeated ``count`` times for
    "count"; the three items in reading order for "three". ``cell`` (row, col) for "position"
    and "size", ``size`` ("small" | "large") for "size" only."""

    relation: str  # one of RELATION_TYPES
    classes: tuple[int, ...]
    cell: tuple[int, int] | None = None
    size: str | None = None


def _where(cell) -> str:
    return next(k for k, v in POSITIONS.items() if v == tuple(cell))


def caption(spec: Spec, swap: bool = False) -> str:
    """The caption of ``spec``; ``swap`` names the second item first ("right of", "below")."""
    name = [CLASS_NAMES[c] for c in spec.classes]
    if spec.relation == "position":
        return f"a {name[0]} at the {_where(spec.cell)}"
    if spec.relation == "size":
        return f"a {spec.size} {name[0]} at the {_where(spec.cell)}"
    if spec.relation == "count":
        word = next(k for k, v in COUNTS.items() if v == len(spec.classes))
        return f"{word} {PLURALS[spec.classes[0]]}"
    if spec.relation == "three":
        return f"a {name[0]}, a {name[1]} and a {name[2]}"
    word = {"horizontal": ("left of", "right of"), "vertical": ("above", "below")}[spec.relation]
    if swap:
        return f"a {name[1]} {word[1]} a {name[0]}"
    return f"a {name[0]} {word[0]} a {name[1]}"


def parse(text: str) -> Spec:
    """The `Spec` of a caption of the grammar; anything else is a one-line `PromptError`."""
    words = words_of(text)
    classes = {n: i for i, n in enumerate(CLASS_NAMES)}
    plurals = {n: i for i, n in enumerate(PLURALS)}
    bad = PromptError(
        f"{text!r} is not a caption of the scene grammar ('a [small|large] <item> at the "
        f"<top|bottom> <left|right>', 'a <item> <left of|right of|above|below> a <item>', "
        f"'<two|three> <items>', 'a <item>, a <item> and a <item>'; items: "
        f"{', '.join(CLASS_NAMES)})"
    )
    if len(words) == 2 and words[0] in COUNTS and words[1] in plurals:
        return Spec("count", (plurals[words[1]],) * COUNTS[words[0]])
    if (
        len(words) == 8
        and [words[i] for i in (0, 2, 3, 5, 6)] == ["a", ",", "a", "and", "a"]
        and all(words[i] in classes for i in (1, 4, 7))
    ):
        return Spec("three", tuple(classes[words[i]] for i in (1, 4, 7)))
    sized = len(words) == 7 and words[1] in SIZES
    if sized:
        size, words = words[1], words[:1] + words[2:]
    if len(words) == 6 and words[0] == "a" and words[2:4] == ["at", "the"]:
        where = " ".join(words[4:])
        if words[1] in classes and where in POSITIONS:
            cls = (classes[words[1]],)
            if sized:
                return Spec("size", cls, POSITIONS[where], size)
            return Spec("position", cls, POSITIONS[where])
        raise bad
    relations = {
        ("left", "of"): ("horizontal", False),
        ("right", "of"): ("horizontal", True),
        ("above",): ("vertical", False),
        ("below",): ("vertical", True),
    }
    for rel, (kind, swapped) in relations.items():
        n = len(rel)
        if (
            not sized
            and len(words) == 4 + n
            and words[0] == "a"
            and tuple(words[2 : 2 + n]) == rel
            and words[2 + n] == "a"
            and words[1] in classes
            and words[-1] in classes
        ):
            first, second = classes[words[1]], classes[words[-1]]
            return Spec(kind, (second, first) if swapped else (first, second))
    raise bad


def layouts(spec: Spec) -> list[np.ndarray]:
    """Every [GRID, GRID] grid of class ids (-1 empty) that shows ``spec``: one for "position"
    and "size", a row (column) each for "horizontal" ("vertical"), any cells for "count",
    any empty cell for "three"."""
    cells = [(r, c) for r in range(GRID) for c in range(GRID)]  # reading order
    if spec.relation in ("position", "size"):
        chosen = [[spec.cell]]
    elif spec.relation == "horizontal":
        chosen = [[(k, c) for c in range(GRID)] for k in range(GRID)]
    elif spec.relation == "vertical":
        chosen = [[(r, k) for r in range(GRID)] for k in range(GRID)]
    else:  # "count" (all one class) and "three": items in reading order
        chosen = [list(x) for x in itertools.combinations(cells, len(spec.classes))]
    out = []
    for where in chosen:
        want = np.full((GRID, GRID), -1)
        for cell, cls in zip(where, spec.classes, strict=True):
            want[cell] = cls
        out.append(want)
    return out


def satisfies(spec: Spec, cells: np.ndarray, classes: bool = True, small=None) -> bool:
    """Does a scene whose cells hold ``cells`` ([GRID, GRID] class ids, -1 = empty) show
    ``spec``: every named item of the right class at the right place, every other cell
    empty, and for a "size" caption the item of the right size (``small``: bool
    [GRID, GRID], True where an item is small; required then)? A relation holds in either
    row (column), a count in any cells. ``classes=False`` checks the layout only: items in
    cells the caption allows, whatever their classes and sizes."""
    cells = np.asarray(cells)
    wanted = layouts(spec)
    if not classes:
        return any(np.array_equal(cells >= 0, want >= 0) for want in wanted)
    if not any(np.array_equal(cells, want) for want in wanted):
        return False
    if spec.relation == "size":
        if small is None:
            raise ValueError("a 'size' caption needs the items' sizes (small=)")
        return bool(np.asarray(small)[spec.cell]) == (spec.size == "small")
    return True


def combinations(spec: Spec) -> set:
    """The combinations a caption names: ``(class, position)`` for "position" and "size",
    unordered class pairs (frozensets) of two- and three-item captions, ``(size, class)``,
    ``(count, class)``."""
    if spec.relation in ("position", "size"):
        found = {(spec.classes[0], _where(spec.cell))}
        if spec.relation == "size":
            found.add((spec.size, spec.classes[0]))
        return found
    if spec.relation == "count":
        return {(len(spec.classes), spec.classes[0])}
    return {frozenset(p) for p in itertools.combinations(spec.classes, 2)}


HELD_OUT = frozenset(HELD_OUT_POSITIONS + HELD_OUT_PAIRS + HELD_OUT_SIZES + HELD_OUT_COUNTS)


def _is_held_out(spec: Spec) -> bool:
    return bool(combinations(spec) & HELD_OUT)


def all_specs() -> list[Spec]:
    """Every caption meaning of the grammar (the items of two- and three-item captions of
    different classes)."""
    cells = list(POSITIONS.values())
    specs = [Spec("position", (c,), cell) for c in range(10) for cell in cells]
    for kind in ("horizontal", "vertical"):
        specs += [Spec(kind, (a, b)) for a in range(10) for b in range(10) if a != b]
    specs += [Spec("size", (c,), cell, size) for size in SIZES for c in range(10) for cell in cells]
    specs += [Spec("count", (c,) * n) for n in COUNTS.values() for c in range(10)]
    specs += [Spec("three", p) for p in itertools.permutations(range(10), 3)]
    return specs


def split_specs(split: str) -> list[Spec]:
    """The caption meanings a split draws from: the held-out ones for "heldout", the rest
    for "train" and "test"."""
    held = split == "heldout"
    return [s for s in all_specs() if _is_held_out(s) == held]


# --- the generator --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenes:
    images: np.ndarray  # uint8 [N, CANVAS, CANVAS, 1]
    tokens: np.ndarray  # int32 [N, MAX_LEN]
    captions: list[str]
    specs: list[Spec]
    cells: np.ndarray  # int [N, GRID, GRID]: the class in each cell, -1 = empty
    small: np.ndarray  # bool [N, GRID, GRID]: True where the item is drawn small


def layout(spec: Spec, rng: np.random.Generator) -> np.ndarray:
    """[GRID, GRID] class ids (-1 empty) of a scene for ``spec``: one of `layouts`, uniform."""
    options = layouts(spec)
    return options[rng.integers(len(options))] if len(options) > 1 else options[0]


def shrink(item: np.ndarray) -> np.ndarray:
    """A uint8 [28, 28, C] item scaled to `SMALL` px (PIL's bilinear filter), centred on
    black."""
    out = np.zeros_like(item)
    lo = (CELL - SMALL) // 2
    for ch in range(item.shape[-1]):
        img = Image.fromarray(item[..., ch]).resize((SMALL, SMALL), Image.BILINEAR)
        out[lo : lo + SMALL, lo : lo + SMALL, ch] = np.asarray(img)
    return out


def generate(
    items: np.ndarray, item_labels: np.ndarray, split: str, num: int, seed: int = 0
) -> Scenes:
    """``num`` scenes of ``split`` from ``items`` (uint8 [M, 28, 28, 1] with class ids
    ``item_labels``). The relation type is uniform over `RELATION_TYPES`, then the meaning is
    uniform over the split's meanings of that type, the swapped wording ("right of", "below")
    half of the time, the layout uniform over the caption's `layouts`."""
    if split not in SPLITS:
        raise PromptError(f"scenes have splits {', '.join(SPLITS)}, got split '{split}'")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    by_type = {r: [s for s in split_specs(split) if s.relation == r] for r in RELATION_TYPES}
    by_class = [np.flatnonzero(item_labels == c) for c in range(len(CLASS_NAMES))]
    images = np.zeros((num, CANVAS, CANVAS, 1), np.uint8)
    tokens = np.zeros((num, MAX_LEN), np.int32)
    cells_all = np.full((num, GRID, GRID), -1)
    small_all = np.zeros((num, GRID, GRID), bool)
    captions, specs = [], []
    for i in range(num):
        pool = by_type[RELATION_TYPES[rng.integers(len(RELATION_TYPES))]]
        spec = pool[rng.integers(len(pool))]
        swappable = spec.relation in ("horizontal", "vertical")
        text = caption(spec, swap=bool(rng.integers(2)) and swappable)
        cells = layout(spec, rng)
        for r, c in zip(*np.nonzero(cells >= 0), strict=True):
            item = items[by_class[cells[r, c]][rng.integers(len(by_class[cells[r, c]]))]]
            if spec.size == "small":
                item = shrink(item)
                small_all[i, r, c] = True
            images[i, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = item
        tokens[i] = TOKENIZER.encode(text)
        cells_all[i] = cells
        captions.append(text)
        specs.append(spec)
    return Scenes(images, tokens, captions, specs, cells_all, small_all)


def parse_options(arg: str) -> dict:
    """``"n=20000,seed=1"`` -> ``{"n": 20000, "n_test": 2000, "seed": 1}``; a one-line
    `PromptError` for anything else."""
    options = dict(DEFAULTS)
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in DEFAULTS:
            raise PromptError(
                f"scenes option '{part}' is not one of {', '.join(f'{k}=INT' for k in DEFAULTS)}"
                " (e.g. scenes:n=20000,n_test=2000,seed=0)"
            )
        try:
            options[key] = int(value)
        except ValueError:
            raise PromptError(f"scenes option {key}={value}: expected an integer") from None
        if options[key] < (0 if key == "seed" else 1):
            raise PromptError(f"scenes option {key}={value} must be positive")
    return options
