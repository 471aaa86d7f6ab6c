"""Captioned scenes of Fashion-MNIST items: the ``scenes`` data source, its grammar and tokenizer.

A scene is a 56x56 grayscale canvas cut into a 2x2 grid of 28x28 cells; one or two
Fashion-MNIST items sit in cells, the other cells are black. Each scene has a caption from a
small grammar with three relation types:

    position    "a sandal at the top left"       one item, in the named cell
    horizontal  "a bag left of a sneaker"        two items side by side in one row
                "a bag right of a sneaker"       (the row is not named: either is right)
    vertical    "a shirt above a trouser"        two items in one column
                "a shirt below a trouser"

Compositional generalisation is measured on a **held-out combination split**: the
(object, position) pairs of `HELD_OUT_POSITIONS` never occur in a "position" caption of the
train or test split, and the unordered object pairs of `HELD_OUT_PAIRS` never occur together
in a two-item caption there; the ``heldout`` split holds only captions made of them. Training
scenes take their items from Fashion-MNIST's train split, test and held-out scenes from its
test split. Everything is a pure function of ``(seed, split)``.

Source strings: ``scenes`` or ``scenes:n=20000,n_test=2000,seed=0`` (training scenes; test and
held-out scenes each; the generator seed). Splits: ``train``, ``test``, ``heldout``. Labels are
the captions as int32 token ids ``[N, MAX_LEN]`` (0 = padding) of `TOKENIZER`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
POSITIONS = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}
RELATION_TYPES = ("position", "horizontal", "vertical")
CELL = 28
GRID = 2
CANVAS = CELL * GRID
MAX_LEN = 8
PAD = "<pad>"
VOCAB = (PAD, "a", "at", "the", "top", "bottom", "left", "right", "of", "above", "below")
VOCAB += CLASS_NAMES
SPLITS = ("train", "test", "heldout")
DEFAULTS = {"n": 20000, "n_test": 2000, "seed": 0}

# (class, position) pairs never captioned "a <class> at the <position>" outside "heldout".
HELD_OUT_POSITIONS = ((5, "top left"), (8, "bottom right"), (1, "top right"), (4, "bottom left"))
# Unordered class pairs never in one two-item caption outside "heldout".
HELD_OUT_PAIRS = (frozenset({7, 8}), frozenset({6, 1}), frozenset({3, 5}), frozenset({4, 9}))


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
        words = text.lower().split()
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
        """int ids (padding anywhere is skipped) -> the caption text."""
        return " ".join(self.vocab[int(i)] for i in np.asarray(ids).ravel() if int(i) != 0)


TOKENIZER = Tokenizer()


# --- grammar --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a caption asks for. ``classes`` in canvas order: the one item; (left, right) for
    "horizontal"; (top, bottom) for "vertical". ``cell`` (row, col) for "position" only."""

    relation: str  # one of RELATION_TYPES
    classes: tuple[int, ...]
    cell: tuple[int, int] | None = None


def caption(spec: Spec, swap: bool = False) -> str:
    """The caption of ``spec``; ``swap`` names the second item first ("right of", "below")."""
    name = [CLASS_NAMES[c] for c in spec.classes]
    if spec.relation == "position":
        where = next(k for k, v in POSITIONS.items() if v == spec.cell)
        return f"a {name[0]} at the {where}"
    word = {"horizontal": ("left of", "right of"), "vertical": ("above", "below")}[spec.relation]
    if swap:
        return f"a {name[1]} {word[1]} a {name[0]}"
    return f"a {name[0]} {word[0]} a {name[1]}"


def parse(text: str) -> Spec:
    """The `Spec` of a caption of the grammar; anything else is a one-line `PromptError`."""
    words = text.lower().split()
    classes = {n: i for i, n in enumerate(CLASS_NAMES)}
    bad = PromptError(
        f"{text!r} is not a caption of the scene grammar ('a <item> at the <top|bottom> "
        f"<left|right>', 'a <item> <left of|right of|above|below> a <item>'; items: "
        f"{', '.join(CLASS_NAMES)})"
    )
    if len(words) == 6 and words[0] == "a" and words[2:4] == ["at", "the"]:
        where = " ".join(words[4:])
        if words[1] in classes and where in POSITIONS:
            return Spec("position", (classes[words[1]],), POSITIONS[where])
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
            len(words) == 4 + n
            and words[0] == "a"
            and tuple(words[2 : 2 + n]) == rel
            and words[2 + n] == "a"
            and words[1] in classes
            and words[-1] in classes
        ):
            first, second = classes[words[1]], classes[words[-1]]
            return Spec(kind, (second, first) if swapped else (first, second))
    raise bad


def satisfies(spec: Spec, cells: np.ndarray, classes: bool = True) -> bool:
    """Does a scene whose cells hold ``cells`` ([GRID, GRID] class ids, -1 = empty) show
    ``spec``: every named item of the right class at the right place, every other cell
    empty? A relation holds in either row (column). ``classes=False`` checks the layout
    only: items in the right cells, whatever their classes."""
    cells = np.asarray(cells)
    wanted = []
    if spec.relation == "position":
        want = np.full((GRID, GRID), -1)
        want[spec.cell] = spec.classes[0]
        wanted.append(want)
    for k in range(GRID if spec.relation != "position" else 0):
        want = np.full((GRID, GRID), -1)
        if spec.relation == "horizontal":
            want[k] = spec.classes
        else:
            want[:, k] = spec.classes
        wanted.append(want)
    if not classes:
        return any(np.array_equal(cells >= 0, want >= 0) for want in wanted)
    return any(np.array_equal(cells, want) for want in wanted)


def _is_held_out(spec: Spec) -> bool:
    if spec.relation == "position":
        where = next(k for k, v in POSITIONS.items() if v == spec.cell)
        return (spec.classes[0], where) in HELD_OUT_POSITIONS
    return frozenset(spec.classes) in HELD_OUT_PAIRS


def all_specs() -> list[Spec]:
    """Every caption meaning of the grammar (two-item captions of two different classes)."""
    specs = [Spec("position", (c,), cell) for c in range(10) for cell in POSITIONS.values()]
    for kind in ("horizontal", "vertical"):
        specs += [Spec(kind, (a, b)) for a in range(10) for b in range(10) if a != b]
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


def layout(spec: Spec, rng: np.random.Generator) -> np.ndarray:
    """[GRID, GRID] class ids (-1 empty) of a scene for ``spec``; a relation's row (column)
    is drawn from ``rng``."""
    cells = np.full((GRID, GRID), -1)
    if spec.relation == "position":
        cells[spec.cell] = spec.classes[0]
    elif spec.relation == "horizontal":
        cells[rng.integers(GRID)] = spec.classes
    else:
        cells[:, rng.integers(GRID)] = spec.classes
    return cells


def generate(
    items: np.ndarray, item_labels: np.ndarray, split: str, num: int, seed: int = 0
) -> Scenes:
    """``num`` scenes of ``split`` from ``items`` (uint8 [M, 28, 28, 1] with class ids
    ``item_labels``). The relation type is uniform over `RELATION_TYPES`, then the meaning is
    uniform over the split's meanings of that type, the swapped wording ("right of", "below")
    half of the time, the row (column) of a relation uniform."""
    if split not in SPLITS:
        raise PromptError(f"scenes have splits {', '.join(SPLITS)}, got split '{split}'")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    by_type = {r: [s for s in split_specs(split) if s.relation == r] for r in RELATION_TYPES}
    by_class = [np.flatnonzero(item_labels == c) for c in range(len(CLASS_NAMES))]
    images = np.zeros((num, CANVAS, CANVAS, 1), np.uint8)
    tokens = np.zeros((num, MAX_LEN), np.int32)
    cells_all = np.full((num, GRID, GRID), -1)
    captions, specs = [], []
    for i in range(num):
        pool = by_type[RELATION_TYPES[rng.integers(len(RELATION_TYPES))]]
        spec = pool[rng.integers(len(pool))]
        text = caption(spec, swap=bool(rng.integers(2)) and spec.relation != "position")
        cells = layout(spec, rng)
        for r, c in zip(*np.nonzero(cells >= 0), strict=True):
            item = by_class[cells[r, c]][rng.integers(len(by_class[cells[r, c]]))]
            images[i, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = items[item]
        tokens[i] = TOKENIZER.encode(text)
        cells_all[i] = cells
        captions.append(text)
        specs.append(spec)
    return Scenes(images, tokens, captions, specs, cells_all)


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
