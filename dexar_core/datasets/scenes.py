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
- **jitter**: every shape is rotated (squares up to 12 degrees, triangles 8, circles
  become rotated ellipses), stretched by an aspect factor in [0.85, 1.18] at constant
  area, painted in its colour name's colour jittered by up to 16 per channel (shapes
  paints the exact colour), and anti-aliased (4x4 supersampling: an edge pixel blends
  the object's colour with the background).

An object's mask is the pixels it covers at least half of (its coverage >= 0.5), so
the mask's pixel count equals the drawn area up to the anti-aliased rim. The position
word is that of the 3x3 cell holding the object's centre; one to three objects, in
distinct cells, two or three in 80% of the items (most object words then have other
objects to be confused with).

The splits are ``val`` (to choose a method's options) and ``test`` (to report); items
are generated from ``(seed, split, index)`` on a random stream of their own (the
shapes benchmark's streams are never drawn), so the same arguments give the same bytes
everywhere. Shared with shapes is what the models must know to answer, and no drawing
code: the colour, shape and position names, the colour each name stands for (before
jitter), the question and caption templates (:func:`dexar_core.datasets.shapes.ask`),
the item record (:class:`~dexar_core.datasets.shapes.ShapesItem`) and the split
container (:class:`~dexar_core.datasets.generated.GeneratedSplit`).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
from PIL import Image

from dexar_core.datasets.generated import GeneratedSplit
from dexar_core.datasets.shapes import COLORS, KINDS, POSITIONS, SHAPES, ShapesItem, ask

__all__ = ["SPLITS", "SceneItem", "SceneObject", "ScenesDataset"]

SPLITS: dict[str, int] = {"val": 500, "test": 1000}
"""Split names and their default sizes."""


_STREAM = 0x5CE7E5  # the first entry of every scenes seed sequence after the user's seed
_SPLIT_CODES = {"val": 1, "test": 2}
_SUPERSAMPLE = 4  # sub-pixels per side: edge pixels get coverage in steps of 1/16
_COLOR_JITTER = 16  # per channel, around the colour name's centre
_MIN_SIDE = 30  # pixels: below this a 3x3 layout cannot hold the smallest objects
_ROTATION = {"circle": 90.0, "square": 12.0, "triangle": 8.0}  # degrees, either way
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
        color: its colour name (a key of the shapes benchmark's ``COLORS``).
        position: the name of the layout cell holding its centre, e.g. ``"top left"``.
        rgb: the colour it was painted in: its name's colour, jittered per channel.
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
class SceneItem(ShapesItem):
    """One scene with one question: the shapes benchmark's item record, with its background.

    The record (pixels, objects, question, answer, kind, targets, split, index, and the
    image, caption and masks it derives) is the one every reader of generated items
    takes (:class:`~dexar_core.datasets.shapes.ShapesItem`); here its objects are
    :class:`SceneObject` records.

    Attributes:
        background: ``(height, width, 3)`` read-only uint8: the image before any object
            was painted.
    """

    background: np.ndarray = attrs.field(converter=_readonly_pixels, eq=_same_array, repr=False)


class ScenesDataset(GeneratedSplit[SceneItem]):
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

    splits = SPLITS
    min_side = _MIN_SIDE
    known_kinds = KINDS

    def _item(self, index: int) -> SceneItem:
        rng = np.random.default_rng([self.seed, _STREAM, _SPLIT_CODES[self.split], index])
        item = None
        while item is None:  # a draw that allows no question of its kind is drawn again
            item = self._scene(rng, index)
        return item

    def _scene(self, rng: np.random.Generator, position: int) -> SceneItem | None:
        height, width = self.image_size
        background = _background(rng, height, width)
        count = 1 + int(rng.choice(len(_OBJECT_COUNTS), p=_OBJECT_COUNTS))
        cells = rng.permutation(len(POSITIONS))[:count]
        colors = list(COLORS)
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
        item: SceneItem | None = ask(
            rng,
            tuple(objects),
            self.kinds,
            record=SceneItem,
            pixels=np.clip(np.rint(pixels), 0, 255),
            background=background,
            split=self.split,
            index=position,
        )
        return item


def _tint(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A low-saturation colour: a grey level plus a chroma of 4-12 along a random hue."""
    level = rng.uniform(75, 185)
    chroma = rng.uniform(4, 12)
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
        for value in COLORS[color]
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
