"""A second grounded image set, drawn by code of its own: ``scenes`` (docs/evaluation.md).

The shapes benchmark (:mod:`dexar_core.datasets.shapes`) is what the embedded models
were trained on; a score measured only there may reflect its drawing conventions (grey
backgrounds, aliased edges, one size band, objects centred in their cells). ``scenes``
asks the same questions in the same words, so the embedded models can answer it, about
images made differently:

- **backgrounds**: tinted, never grey: a linear or radial gradient between two tints,
  smooth coloured noise, or a flat tint with per-channel grain;
- **sizes**: object radii from 0.24 to 0.48 of a layout cell (shapes: 0.34 to 0.46);
- **placements**: the centre anywhere in the middle 64% of its cell, half of the
  time pushed towards a cell border, so objects come close to the image's edges and to
  each other (at least one clear pixel between any two objects; none overlap);
- **jitter**: every shape is rotated (squares up to 25 degrees, triangles 12, circles
  become rotated ellipses), stretched by an aspect factor in [0.85, 1.18] at constant
  area, painted in its colour name's hue jittered per channel, and anti-aliased (4x4
  supersampling: an edge pixel blends the object's colour with the background).

An object's mask is the pixels it covers at least half of (its coverage >= 0.5), so
the mask's pixel count equals the drawn area up to the anti-aliased rim. The position
word is that of the 3x3 cell holding the object's centre; one to three objects, in
distinct cells, two or three in 80% of the items (most object words then have other
objects to be confused with).

The splits are ``val`` (to choose a method's options) and ``test`` (to report); items
are generated from ``(seed, split, index)`` on a random stream of their own (the
shapes benchmark's streams are never drawn), so the same arguments give the same bytes
everywhere. Only the words are shared with shapes: the colour, shape and position names
and the question and caption templates (:func:`dexar_core.datasets.shapes._questions`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
from PIL import Image

from dexar_core.datasets.shapes import KINDS, POSITIONS, SHAPES, _caption, _questions
from dexar_core.errors import DatasetError

__all__ = ["HUES", "SPLITS", "SceneItem", "SceneObject", "ScenesDataset"]

HUES: dict[str, tuple[int, int, int]] = {
    "red": (205, 40, 40),
    "green": (45, 150, 65),
    "blue": (45, 85, 215),
    "yellow": (232, 205, 45),
    "purple": (135, 60, 175),
    "orange": (236, 125, 35),
}
"""The centre of each colour name's hue; each object's colour is jittered around it."""

SPLITS: dict[str, int] = {"val": 500, "test": 1000}
"""Split names and their default sizes."""


_STREAM = 0x5CE7E5  # the first entry of every scenes seed sequence after the user's seed
_SPLIT_CODES = {"val": 1, "test": 2}
_SUPERSAMPLE = 4  # sub-pixels per side: edge pixels get coverage in steps of 1/16
_COLOR_JITTER = 14  # per channel, around the hue's centre
_MIN_SIDE = 30  # pixels: below this a 3x3 layout cannot hold the smallest objects
_ROTATION = {"circle": 90.0, "square": 25.0, "triangle": 12.0}  # degrees, either way
_OBJECT_COUNTS = (0.2, 0.4, 0.4)  # probabilities of one, two and three objects
_PLACEMENT_TRIES = 40


def _readonly(value: Any, dtype: Any) -> np.ndarray:
    array = np.array(value, dtype=dtype)
    array.setflags(write=False)
    return array


def _readonly_mask(value: Any) -> np.ndarray:
    return _readonly(value, bool)


def _readonly_pixels(value: Any) -> np.ndarray:
    return _readonly(value, np.uint8)


def _readonly_coverage(value: Any) -> np.ndarray:
    return _readonly(value, np.float32)


_same_array = attrs.cmp_using(eq=np.array_equal)


@attrs.frozen(kw_only=True)
class SceneObject:
    """One drawn object of a scene.

    Attributes:
        shape: ``circle``, ``square`` or ``triangle``.
        color: its colour name (a key of :data:`HUES`).
        position: the name of the layout cell holding its centre, e.g. ``"top left"``.
        rgb: the colour it was painted in (its hue, jittered).
        mask: ``(height, width)`` read-only boolean array: the pixels it covers at
            least half of.
        coverage: ``(height, width)`` read-only float32 array: the share of each pixel
            it covers (0 outside, 1 inside, in between on its rim).
        center: ``(x, y)`` of its centre in pixels.
        size: its radius in pixels (half the side of its unrotated, unstretched box).
        rotation: its rotation in degrees (counter-clockwise on screen).
        aspect: its stretch: widths times ``aspect``, heights divided by it.
        area: its exact drawn area in pixels.
    """

    shape: str
    color: str
    position: str
    rgb: tuple[int, int, int]
    mask: np.ndarray = attrs.field(converter=_readonly_mask, eq=_same_array)
    coverage: np.ndarray = attrs.field(converter=_readonly_coverage, eq=_same_array, repr=False)
    center: tuple[float, float]
    size: float
    rotation: float
    aspect: float
    area: float

    @property
    def phrase(self) -> str:
        """Its caption phrase, worded as in the shapes benchmark ("an orange ...")."""
        article = "an" if self.color.startswith(("a", "e", "i", "o", "u")) else "a"
        return f"{article} {self.color} {self.shape} at the {self.position}"


@attrs.frozen(kw_only=True)
class SceneItem:
    """One scene with one question, in the record shape the benchmark reads.

    Attributes:
        pixels: ``(height, width, 3)`` read-only uint8 RGB image.
        background: the same image before any object was painted.
        objects: the objects in layout order (top left to bottom right).
        question: the question or instruction.
        answer: the exact expected answer.
        kind: ``color``, ``shape``, ``position`` or ``caption``.
        targets: indices into ``objects`` of the objects the answer is about.
        split: its split.
        index: its index in that split.
    """

    pixels: np.ndarray = attrs.field(converter=_readonly_pixels, eq=_same_array)
    background: np.ndarray = attrs.field(converter=_readonly_pixels, eq=_same_array, repr=False)
    objects: tuple[SceneObject, ...]
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
        """The caption naming every object, whatever the question kind."""
        return _caption(self.objects)  # type: ignore[arg-type]  # same words as ShapeObject

    @property
    def union_mask(self) -> np.ndarray:
        """The pixels of all objects together."""
        return _readonly_mask(np.logical_or.reduce([obj.mask for obj in self.objects]))

    @property
    def target_mask(self) -> np.ndarray:
        """The pixels of the objects the answer is about."""
        return _readonly_mask(np.logical_or.reduce([self.objects[i].mask for i in self.targets]))


class ScenesDataset(Sequence[SceneItem]):
    """A split of the ``scenes`` image set: indexable, iterable, generated on demand.

    Args:
        split: ``val`` or ``test``.
        size: number of items; the split's size in :data:`SPLITS` by default.
        image_size: side of square images, or ``(height, width)``.
        seed: seed of the whole set; each split has its own stream under it.
        kinds: question kinds to draw from (uniformly); all of shapes' kinds by default.

    Raises:
        DatasetError: for an unknown split or kind, a bad size or a too small image.
    """

    def __init__(
        self,
        split: str = "test",
        size: int | None = None,
        *,
        image_size: int | tuple[int, int] = 64,
        seed: int = 0,
        kinds: Sequence[str] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(
                f"ScenesDataset: expected split to be one of {list(SPLITS)}, found {split!r}; "
                "choose options on 'val' and report on 'test'."
            )
        count = SPLITS[split] if size is None else size
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DatasetError(
                f"ScenesDataset: expected size to be a positive integer, found {size!r}."
            )
        sides = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(sides) != 2 or not all(isinstance(s, int) and s >= _MIN_SIDE for s in sides):
            raise DatasetError(
                f"ScenesDataset: expected image_size to be an integer or (height, width) of "
                f"integers >= {_MIN_SIDE}, found {image_size!r}."
            )
        self.kinds = tuple(KINDS if kinds is None else kinds)
        if not self.kinds or any(kind not in KINDS for kind in self.kinds):
            raise DatasetError(
                f"ScenesDataset: expected kinds from {list(KINDS)}, found {list(self.kinds)}."
            )
        self.split = split
        self.size = count
        self.image_size = (int(sides[0]), int(sides[1]))
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[SceneItem]:
        return map(self.__getitem__, range(self.size))

    def __getitem__(self, index: int) -> SceneItem:  # type: ignore[override]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"ScenesDataset: an item index is an integer, got {index!r}.")
        position = int(index) + self.size if index < 0 else int(index)
        if not 0 <= position < self.size:
            raise IndexError(
                f"ScenesDataset({self.split!r}): index {index} out of range for size {self.size}."
            )
        rng = np.random.default_rng([self.seed, _STREAM, _SPLIT_CODES[self.split], position])
        item = None
        while item is None:  # a draw that allows no question of its kind is drawn again
            item = self._scene(rng, position)
        return item

    def __repr__(self) -> str:
        return (
            f"ScenesDataset(split={self.split!r}, size={self.size}, "
            f"image_size={self.image_size}, seed={self.seed})"
        )

    def _scene(self, rng: np.random.Generator, position: int) -> SceneItem | None:
        height, width = self.image_size
        background = _background(rng, height, width)
        count = 1 + int(rng.choice(len(_OBJECT_COUNTS), p=_OBJECT_COUNTS))
        cells = rng.permutation(len(POSITIONS))[:count]
        colors = list(HUES)
        objects: list[SceneObject] = []
        taken = np.zeros((height, width), dtype=bool)  # every object's support, grown by 1
        for cell in sorted(int(c) for c in cells):
            placed = _place(
                rng,
                POSITIONS[cell],
                colors[int(rng.integers(len(colors)))],
                SHAPES[int(rng.integers(len(SHAPES)))],
                taken,
            )
            if placed is None:
                return None
            objects.append(placed)
            taken |= _grown(placed.coverage > 0)
        pixels = background.astype(np.float64)
        for obj in objects:
            alpha = obj.coverage[:, :, None].astype(np.float64)
            pixels = pixels * (1 - alpha) + np.array(obj.rgb, dtype=np.float64) * alpha
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        candidates = _questions(tuple(objects), kind, None)  # type: ignore[arg-type]
        if not candidates:
            return None
        question, answer, targets = candidates[int(rng.integers(len(candidates)))]
        return SceneItem(
            pixels=np.clip(np.rint(pixels), 0, 255),
            background=background,
            objects=tuple(objects),
            question=question,
            answer=answer,
            kind=kind,
            targets=targets,
            split=self.split,
            index=position,
        )


def _tint(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A low-saturation colour: a grey level plus a chroma of 10-28 along a random hue."""
    level = rng.uniform(75, 185)
    chroma = rng.uniform(10, 28)
    hue = rng.uniform(0, 2 * math.pi)
    offsets = np.cos(hue - np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]))
    return np.asarray(level + chroma * offsets, dtype=np.float64)


def _background(rng: np.random.Generator, height: int, width: int) -> npt.NDArray[np.uint8]:
    """A tinted background: a linear or radial gradient, smooth noise, or grain."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    ys, xs = (ys + 0.5) / height, (xs + 0.5) / width
    style = int(rng.integers(4))
    if style in (0, 1):
        if style == 0:
            angle = rng.uniform(0, 2 * math.pi)
            ramp = xs * math.cos(angle) + ys * math.sin(angle)
        else:
            ramp = np.hypot(xs - rng.uniform(0.2, 0.8), ys - rng.uniform(0.2, 0.8))
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
        first, second = _tint(rng), _tint(rng)
        colour = first + ramp[:, :, None] * (second - first)
    elif style == 2:
        cells = int(rng.integers(3, 7))
        coarse = np.stack([_tint(rng) for _ in range(cells * cells)]).reshape(cells, cells, 3)
        colour = np.stack(
            [
                np.asarray(
                    Image.fromarray(coarse[:, :, channel].astype(np.float32), mode="F").resize(
                        (width, height), Image.Resampling.BICUBIC
                    )
                )
                for channel in range(3)
            ],
            axis=2,
        ).astype(np.float64)
    else:
        colour = _tint(rng) + rng.normal(0, 9, size=(height, width, 3))
    return np.clip(np.rint(colour), 15, 240).astype(np.uint8)


def _place(
    rng: np.random.Generator,
    position: str,
    color: str,
    shape: str,
    taken: npt.NDArray[np.bool_],
) -> SceneObject | None:
    """Draw one object in its cell, clear of ``taken`` and of the image border.

    Returns None when no try fits (the whole scene is then drawn again).
    """
    height, width = taken.shape
    row, col = divmod(POSITIONS.index(position), 3)
    cell_h, cell_w = height / 3, width / 3
    rgb = tuple(
        int(np.clip(value + rng.integers(-_COLOR_JITTER, _COLOR_JITTER + 1), 0, 255))
        for value in HUES[color]
    )
    rotation = float(rng.uniform(-_ROTATION[shape], _ROTATION[shape]))
    aspect = float(math.exp(rng.uniform(math.log(0.85), math.log(1.18))))
    radius = float(rng.uniform(0.24, 0.48)) * min(cell_h, cell_w)
    for attempt in range(_PLACEMENT_TRIES):
        if attempt and attempt % 10 == 0:
            radius *= 0.85  # crowded cell: try a smaller object
        cx = (col + _cell_fraction(rng)) * cell_w
        cy = (row + _cell_fraction(rng)) * cell_h
        coverage = _coverage(shape, (cx, cy), radius, rotation, aspect, (height, width))
        support = coverage > 0
        border = support[0].any() or support[-1].any() or support[:, 0].any()
        if border or support[:, -1].any() or (support & taken).any() or not (coverage >= 0.5).any():
            continue
        return SceneObject(
            shape=shape,
            color=color,
            position=position,
            rgb=(rgb[0], rgb[1], rgb[2]),
            mask=coverage >= 0.5,
            coverage=coverage,
            center=(cx, cy),
            size=radius,
            rotation=rotation,
            aspect=aspect,
            area=_area(shape, radius),
        )
    return None


def _cell_fraction(rng: np.random.Generator) -> float:
    """Where in its cell (0-1) a centre goes: half the time near a border, else central."""
    if rng.random() < 0.5:
        return 0.5 + float(rng.choice((-1.0, 1.0))) * float(rng.uniform(0.2, 0.32))
    return float(rng.uniform(0.35, 0.65))


def _area(shape: str, radius: float) -> float:
    """The exact area: stretching by ``aspect`` one way and ``1/aspect`` the other keeps it."""
    if shape == "circle":
        return math.pi * radius**2
    if shape == "square":
        return 4 * radius**2
    return 2 * radius**2  # base 2r, height 2r


def _coverage(
    shape: str,
    center: tuple[float, float],
    radius: float,
    rotation: float,
    aspect: float,
    size: tuple[int, int],
) -> npt.NDArray[np.float32]:
    """The share of every pixel the shape covers, from a 4x4 grid of sub-pixel samples.

    Only the window of pixels the shape can reach is sampled (every corner of a stretched,
    rotated square lies within ``sqrt(2) * radius * max(aspect, 1 / aspect)`` of the centre).
    """
    height, width = size
    reach = math.sqrt(2) * radius * max(aspect, 1 / aspect) + 1
    top, bottom = max(int(center[1] - reach), 0), min(int(center[1] + reach) + 1, height)
    left, right = max(int(center[0] - reach), 0), min(int(center[0] + reach) + 1, width)
    coverage = np.zeros(size, dtype=np.float32)
    if top >= bottom or left >= right:
        return coverage
    steps = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    ys = (np.arange(top, bottom)[:, None] + steps[None, :]).reshape(-1)
    xs = (np.arange(left, right)[:, None] + steps[None, :]).reshape(-1)
    dx = xs[None, :] - center[0]
    dy = ys[:, None] - center[1]
    # Into the shape's own frame: undo the rotation (screen y points down), then the stretch.
    turn = math.radians(rotation)
    along = (dx * math.cos(turn) - dy * math.sin(turn)) / aspect
    across = (dx * math.sin(turn) + dy * math.cos(turn)) * aspect
    inside = _inside(shape, along, across, radius)
    blocks = inside.reshape(bottom - top, _SUPERSAMPLE, right - left, _SUPERSAMPLE)
    coverage[top:bottom, left:right] = blocks.mean(axis=(1, 3))
    return coverage


def _inside(
    shape: str, u: npt.NDArray[np.float64], v: npt.NDArray[np.float64], radius: float
) -> npt.NDArray[np.bool_]:
    """Whether each point ``(u, v)`` of the shape's frame (v down) lies in the shape."""
    if shape == "circle":
        return np.hypot(u, v) <= radius
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= radius
    # apex at (0, -r), base corners at (-r, r) and (r, r): the half-width grows with v
    return (v <= radius) & (2 * np.abs(u) <= v + radius)


def _grown(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The mask grown by one pixel in all eight directions (keeps a clear pixel between)."""
    padded = np.pad(mask, 1)
    height, width = mask.shape
    grown = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            grown |= padded[dy : dy + height, dx : dx + width]
    return grown
