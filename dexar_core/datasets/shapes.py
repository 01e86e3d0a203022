"""Synthetic grounded benchmark: coloured shapes with masks, captions and questions.

Each item is a small image with one to three coloured shapes (circle, square, triangle)
in distinct cells of a 3x3 layout, on a plain or textured grey background, with an
optional grey card partly occluding one object. Every object knows its pixel mask (the
pixels it shows after occlusion) and its words: colour, shape and position. Each item
carries one question of one kind with its answer:

=========  ===========================================  =================================
kind       question                                     answer
=========  ===========================================  =================================
color      ``what color is the circle?``                ``red``
shape      ``what shape is at the top?``                ``square``
position   ``where is the red shape?``                  ``left``
caption    ``describe the image.``                      ``a red circle at the left and ...``
=========  ===========================================  =================================

Only unambiguous questions are asked (``what color is the circle?`` only when there is
one circle). Objects are drawn without anti-aliasing, so every pixel of an object's
mask has exactly the object's colour, and backgrounds are grey (R = G = B) so colour
names stay unambiguous.

Items are generated on demand from ``(seed, split, index)``: the same arguments give the
same bytes on every machine, and splits draw from separate random streams. The
``heldout`` split contains colour-shape-position combinations (:data:`HELDOUT_COMBOS`)
that never occur in ``train``, ``val`` or ``test``; its question targets such an object.
Only numpy and Pillow are used.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
from PIL import Image

from dexar_core.datasets.generated import GeneratedSplit
from dexar_core.errors import DatasetError

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "yellow": (240, 215, 25),
    "purple": (140, 45, 185),
    "orange": (245, 130, 20),
}
"""Object colour names and their RGB values (backgrounds are neutral greys)."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
"""Object shape names."""

POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
"""Position names of the 3x3 layout cells, row by row from the top left."""

PROMPT_WORDS: tuple[str, ...] = (
    "user assistant what which color colour shape where is are the a an at and",
    "describe image picture object of in this",
)
"""Words the prompts and questions use besides the answer words."""

VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys(
        word for entry in (*COLORS, *SHAPES, *POSITIONS, *PROMPT_WORDS) for word in entry.split()
    )
)
"""Every word of the benchmark's questions, answers and captions, each once."""

KINDS: tuple[str, ...] = ("color", "shape", "position", "caption")
"""Question kinds, in the order results are reported."""

SPLITS: dict[str, int] = {"train": 20_000, "val": 500, "test": 1_000, "heldout": 500}
"""Split names and their default sizes."""

HELDOUT_COMBOS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("red", "triangle", "bottom right"),
        ("red", "square", "top"),
        ("green", "circle", "center"),
        ("green", "triangle", "top left"),
        ("blue", "square", "bottom left"),
        ("blue", "circle", "right"),
        ("yellow", "triangle", "left"),
        ("yellow", "circle", "top right"),
        ("purple", "square", "center"),
        ("purple", "triangle", "bottom"),
        ("orange", "circle", "bottom left"),
        ("orange", "square", "top left"),
    }
)
"""(colour, shape, position) combinations shown only in the ``heldout`` split."""

CAPTION_QUESTION = "describe the image."
"""The instruction of ``caption`` items."""

_SPLIT_STREAMS = {name: code for code, name in enumerate(SPLITS)}
_MIN_CELL = 7  # pixels: below this a 3x3 layout cannot hold a recognisable shape


def _readonly_mask(value: Any) -> np.ndarray:
    array = np.array(value, dtype=bool)
    array.setflags(write=False)
    return array


def _readonly_pixels(value: Any) -> np.ndarray:
    array = np.array(value, dtype=np.uint8)
    array.setflags(write=False)
    return array


_array_eq = attrs.cmp_using(eq=np.array_equal)


@attrs.frozen(kw_only=True)
class ShapeObject:
    """One drawn object.

    Attributes:
        shape: ``circle``, ``square`` or ``triangle``.
        color: colour name, a key of :data:`COLORS`.
        position: position name of its layout cell, e.g. ``"top left"``.
        mask: ``(height, width)`` read-only boolean array of the pixels it shows.
        center: ``(x, y)`` of its centre in pixels.
        size: half the side of its bounding box in pixels (a circle's radius).
        occluded: whether a card hides part of it.
    """

    shape: str
    color: str
    position: str
    mask: np.ndarray = attrs.field(converter=_readonly_mask, eq=_array_eq)
    center: tuple[float, float]
    size: float
    occluded: bool = False

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The object's exact RGB colour."""
        return COLORS[self.color]

    @property
    def words(self) -> tuple[str, ...]:
        """Its describing words: colour, shape, then the position's words."""
        return (self.color, self.shape, *self.position.split())

    @property
    def phrase(self) -> str:
        """Its caption phrase, e.g. ``"a red circle at the top left"`` (``"an orange ..."``)."""
        article = "an" if self.color[0] in "aeiou" else "a"
        return f"{article} {self.color} {self.shape} at the {self.position}"


@attrs.frozen(kw_only=True)
class ShapesItem:
    """One benchmark item: an image, its objects, and one question with its answer.

    Attributes:
        pixels: ``(height, width, 3)`` read-only uint8 RGB array of the image.
        objects: the drawn objects, in layout order (top left to bottom right).
        question: the question or instruction (lowercase, ends with ``?`` or ``.``).
        answer: the exact expected answer.
        kind: ``color``, ``shape``, ``position`` or ``caption``.
        targets: indices into ``objects`` of the objects the answer is about.
        split: the split it comes from.
        index: its index in that split.
    """

    pixels: np.ndarray = attrs.field(converter=_readonly_pixels, eq=_array_eq)
    objects: tuple[ShapeObject, ...]
    question: str
    answer: str
    kind: str
    targets: tuple[int, ...]
    split: str
    index: int

    @property
    def image(self) -> Image.Image:
        """The image as a new RGB PIL image."""
        return Image.fromarray(np.array(self.pixels), mode="RGB")

    @property
    def caption(self) -> str:
        """The item's caption, whatever its question kind."""
        return _caption(self.objects)

    @property
    def union_mask(self) -> np.ndarray:
        """Pixels of all objects together, ``(height, width)`` boolean."""
        return _readonly_mask(np.any([obj.mask for obj in self.objects], axis=0))

    @property
    def target_mask(self) -> np.ndarray:
        """Pixels of the objects the answer is about, ``(height, width)`` boolean."""
        return _readonly_mask(np.any([self.objects[i].mask for i in self.targets], axis=0))


class ShapesDataset(GeneratedSplit[ShapesItem]):
    """An indexable, iterable split of the synthetic shapes benchmark.

    Args:
        split: ``train``, ``val``, ``test`` or ``heldout``.
        size: number of items; defaults to the split's size in :data:`SPLITS`.
        occlusion: probability that a card partly hides one object of an item.
        textured: probability of a textured (noise, stripes, checker) background.
        **options: ``image_size`` (side of square images, or ``(height, width)``;
            64), ``seed`` (of the whole benchmark; each split has its own stream under
            it; 0) and ``kinds`` (question kinds to draw from, uniformly; all of
            :data:`KINDS`), as :class:`~dexar_core.datasets.generated.GeneratedSplit`
            takes them.

    Raises:
        DatasetError: if the split, size, image size, kinds or probabilities are invalid.
    """

    splits = SPLITS
    min_side = 3 * _MIN_CELL
    known_kinds = KINDS

    def __init__(
        self,
        split: str = "test",
        size: int | None = None,
        *,
        occlusion: float = 0.0,
        textured: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(split, size, **options)
        for name, value in (("occlusion", occlusion), ("textured", textured)):
            if not 0.0 <= value <= 1.0:
                raise DatasetError(
                    f"ShapesDataset: expected {name} to be a probability in [0, 1], "
                    f"found {value!r}."
                )
        self.occlusion = float(occlusion)
        self.textured = float(textured)

    def _item(self, index: int) -> ShapesItem:
        rng = np.random.default_rng([self.seed, _SPLIT_STREAMS[self.split], index])
        while True:
            item = self._draw(rng, index)
            if item is not None:
                return item

    def _draw(self, rng: np.random.Generator, index: int) -> ShapesItem | None:
        """Draw one scene and question; ``None`` when the scene allows no question."""
        height, width = self.image_size
        heldout = self.split == "heldout"
        combos = _draw_combos(rng, heldout)
        pixels = _background(rng, height, width, textured=rng.random() < self.textured)
        occluded_slot = int(rng.integers(len(combos))) if rng.random() < self.occlusion else -1
        objects = []
        for slot, (color, shape, position) in enumerate(combos):
            objects.append(
                _draw_object(rng, pixels, color, shape, position, occlude=slot == occluded_slot)
            )
        # The held-out object is always the first drawn; sorting keeps track of it.
        order = sorted(range(len(objects)), key=lambda i: POSITIONS.index(objects[i].position))
        objects_sorted = tuple(objects[i] for i in order)
        focus = order.index(0) if heldout else None
        return ask(
            rng,
            objects_sorted,
            self.kinds,
            focus,
            pixels=pixels,
            split=self.split,
            index=index,
        )


def ask(
    rng: np.random.Generator,
    objects: tuple[Any, ...],
    kinds: tuple[str, ...],
    focus: int | None = None,
    record: type[ShapesItem] = ShapesItem,
    **fields: Any,
) -> Any:
    """The item asking one question about ``objects``, or None when its kind allows none.

    Draws the kind (uniformly from ``kinds``), then one of the kind's unambiguous
    questions (:func:`_questions`); every generated set asks in these words.

    Args:
        rng: the item's random stream.
        objects: the drawn objects in layout order; each has ``shape``, ``color``,
            ``position`` and ``phrase``.
        kinds: the question kinds to draw from.
        focus: ask only about this object (the held-out split); any when None.
        record: the item class (ShapesItem or a subclass).
        **fields: the record's other fields (``pixels``, ``split``, ``index``, ...).
    """
    kind = kinds[int(rng.integers(len(kinds)))]
    candidates = _questions(objects, kind, focus)
    if not candidates:
        return None
    question, answer, targets = candidates[int(rng.integers(len(candidates)))]
    return record(
        objects=objects, question=question, answer=answer, kind=kind, targets=targets, **fields
    )


def _draw_combos(rng: np.random.Generator, heldout: bool) -> list[tuple[str, str, str]]:
    """Choose 1-3 (colour, shape, position) triples in distinct cells.

    In the held-out split the first triple is a held-out combination; every other
    triple, in every split, is not.
    """
    count = int(rng.integers(1, 4))
    combos: list[tuple[str, str, str]] = []
    if heldout:
        pool = sorted(HELDOUT_COMBOS)
        combos.append(pool[int(rng.integers(len(pool)))])
    cells = [p for p in rng.permutation(POSITIONS).tolist() if p not in {c[2] for c in combos}]
    colors = list(COLORS)
    while len(combos) < count:
        combo = (
            colors[int(rng.integers(len(colors)))],
            SHAPES[int(rng.integers(len(SHAPES)))],
            cells[0],
        )
        if combo not in HELDOUT_COMBOS:
            combos.append(combo)
            cells.pop(0)
    return combos


def _background(rng: np.random.Generator, height: int, width: int, *, textured: bool) -> np.ndarray:
    """A grey (R = G = B) background, plain or with noise, stripes or a checker."""
    base = int(rng.integers(60, 200))
    if not textured:
        grey = np.full((height, width), base, dtype=np.int64)
    else:
        rows, cols = np.mgrid[0:height, 0:width]
        texture = int(rng.integers(3))
        if texture == 0:
            grey = base + rng.integers(-25, 26, size=(height, width))
        else:
            period = int(rng.integers(3, 9))
            contrast = int(rng.integers(15, 40))
            if texture == 1:
                phase = [rows, cols, rows + cols][int(rng.integers(3))] // period
            else:
                phase = rows // period + cols // period
            grey = base + np.where(phase % 2 == 0, contrast, -contrast)
    grey = np.clip(grey, 20, 235).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _draw_object(
    rng: np.random.Generator,
    pixels: np.ndarray,
    color: str,
    shape: str,
    position: str,
    *,
    occlude: bool,
) -> ShapeObject:
    """Paint one object (and, if asked, an occluding card) into ``pixels`` in place."""
    height, width = pixels.shape[:2]
    row, col = divmod(POSITIONS.index(position), 3)
    cell_h, cell_w = height / 3, width / 3
    radius = float(rng.uniform(0.34, 0.46)) * min(cell_h, cell_w)
    # Keep the whole object inside its cell, so the position word is never ambiguous.
    slack_x = max(cell_w / 2 - radius - 1, 0.0)
    slack_y = max(cell_h / 2 - radius - 1, 0.0)
    cx = (col + 0.5) * cell_w + float(rng.uniform(-slack_x, slack_x))
    cy = (row + 0.5) * cell_h + float(rng.uniform(-slack_y, slack_y))
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    mask = _shape_mask(shape, xs - cx, ys - cy, radius)
    pixels[mask] = COLORS[color]
    if occlude:
        mask = _occlude(rng, pixels, mask)
    return ShapeObject(
        shape=shape,
        color=color,
        position=position,
        mask=mask,
        center=(cx, cy),
        size=radius,
        occluded=occlude,
    )


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Pixels whose centres lie inside the shape, from offsets to the shape's centre.

    All three shapes fill the same ``2 * radius`` bounding box, so they differ where a
    small vision model can see it: the square's corners, the circle's round edge, the
    triangle's apex and slanted sides.
    """
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    inside_box = (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape == "square":
        return inside_box
    # An upright isosceles triangle: apex at the top middle, base along the bottom.
    return inside_box & (np.abs(dx) <= (dy + radius) / 2)


def _occlude(rng: np.random.Generator, pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cover one side of the object with a grey card, leaving 55-80 % of it visible."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(rng.integers(4))
    fraction = float(rng.uniform(0.2, 0.45))
    card = np.zeros_like(mask)
    if side == 0:
        card[top : top + max(1, round((bottom - top) * fraction)), left:right] = True
    elif side == 1:
        card[bottom - max(1, round((bottom - top) * fraction)) : bottom, left:right] = True
    elif side == 2:
        card[top:bottom, left : left + max(1, round((right - left) * fraction))] = True
    else:
        card[top:bottom, right - max(1, round((right - left) * fraction)) : right] = True
    pixels[card] = int(rng.integers(90, 170))
    return mask & ~card


def _caption(objects: tuple[ShapeObject, ...]) -> str:
    """``"a red circle at the left and a blue square at the top"`` in layout order."""
    return " and ".join(obj.phrase for obj in objects)


def _questions(
    objects: tuple[ShapeObject, ...], kind: str, focus: int | None
) -> list[tuple[str, str, tuple[int, ...]]]:
    """Every unambiguous ``(question, answer, targets)`` of ``kind`` for the scene.

    With ``focus`` set (held-out split), only questions about that object are kept.
    """
    if kind == "caption":
        return [(CAPTION_QUESTION, _caption(objects), tuple(range(len(objects))))]

    def unique(attribute: str, value: str) -> bool:
        return sum(getattr(obj, attribute) == value for obj in objects) == 1

    candidates: list[tuple[str, str, tuple[int, ...]]] = []
    for i, obj in enumerate(objects):
        if focus is not None and i != focus:
            continue
        one_shape = unique("shape", obj.shape)
        one_color = unique("color", obj.color)
        one_pair = sum((o.color, o.shape) == (obj.color, obj.shape) for o in objects) == 1
        asked: list[tuple[str, str]] = []
        if kind == "color":
            asked.append((f"what color is the shape at the {obj.position}?", obj.color))
            if one_shape:
                asked.append((f"what color is the {obj.shape}?", obj.color))
        elif kind == "shape":
            asked.append((f"what shape is at the {obj.position}?", obj.shape))
            if one_color:
                asked.append((f"what shape is the {obj.color} object?", obj.shape))
        else:
            if one_color:
                asked.append((f"where is the {obj.color} shape?", obj.position))
            if one_shape:
                asked.append((f"where is the {obj.shape}?", obj.position))
            if one_pair:
                asked.append((f"where is the {obj.color} {obj.shape}?", obj.position))
        candidates.extend((question, answer, (i,)) for question, answer in asked)
    return candidates
