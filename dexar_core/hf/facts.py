"""Per-architecture facts of the transformers kit: where an image's tokens lie, as data.

Most VLMs follow one image-token convention: the processor writes a block of
``config.image_token_id`` placeholders per image, in image order; each block is some
tokens on no patch (a CLS or pooled feature) followed by a ``rows x cols`` grid in
row-major order, derived from the processed pixels; the grid covers the part of the
original image the processor's resize and crop keep. :class:`ImageTokenConvention`
states a family's variant of it in a few fields, as pytorch-grad-cam states a model's
token layout with a reshape function. A family that does not follow it (Qwen-VL's
dynamic grids and videos) gives its own :class:`ImageTokenRule`.

:class:`PromptLocator` turns the prepared prompt's facts into the ``VisualLayout``; it
needs nothing from the adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any, Protocol

import attrs
import numpy as np

from dexar_core.errors import InputError
from dexar_core.hf.loading import resized_image_box
from dexar_core.interfaces import VisualTokenLocator
from dexar_core.records import ImageFacts, LoadedModel, PreparedPrompt
from dexar_core.values import VisualLayout

Box = tuple[float, ...]
"""A pixel box ``(left, top, right, bottom)`` on the original image."""


class ImageTokenRule(Protocol):
    """What a family states about its image tokens (see :class:`ImageTokenConvention`)."""

    def image_token_ids(self, config: Any) -> frozenset[int]:
        """The placeholder token ids the processor expands for images (and videos)."""
        ...

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """One record per image (or tile, or temporal patch), from the processor's outputs.

        Raises:
            InputError: the prompt's image tokens do not match the images.
        """
        ...


class PlaceholderRule(ABC):
    """An :class:`ImageTokenRule` whose one placeholder is ``config.image_token_id``.

    Most families' processors write that token for every image token; a family's rule
    then states only where the placeholders lie (:meth:`image_facts`).
    """

    def image_token_ids(self, config: Any) -> frozenset[int]:
        """See :meth:`ImageTokenRule.image_token_ids`: ``config.image_token_id``."""
        return frozenset({int(config.image_token_id)})

    @abstractmethod
    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`."""


def patch_grid(config: Any, height: int, width: int) -> tuple[int, int]:
    """``(height / patch, width / patch)`` with the vision config's ``patch_size``."""
    patch = int(config.vision_config.patch_size)
    return height // patch, width // patch


def whole_image(image_processor: Any, size: tuple[int, int]) -> tuple[float, ...]:
    """The whole original image: for processors that resize without cropping."""
    width, height = size
    return (0.0, 0.0, float(width), float(height))


@attrs.frozen(kw_only=True)
class ImageTokenConvention:
    """The common image-token convention, with a family's variant as plain data.

    Attributes:
        grid: ``(config, pixel_height, pixel_width) -> (rows, cols)`` of one image's
            grid (default: the processed pixels over the vision tower's patch size).
        leading_tokens: ``config -> n``, the placeholders before each image's grid that
            lie on no patch (default none).
        pixel_box: ``(image_processor, (width, height)) -> (left, top, right, bottom)``,
            the part of the original image the grid covers (default: the CLIP-style
            resize and centre crop the image processor states).
        token_id: ``config -> id`` of the image placeholder (default
            ``config.image_token_id``).
        name: the name of image ``index``'s grid, a format string.
        hint: what to do when the counts disagree, appended to the error.
    """

    grid: Callable[[Any, int, int], tuple[int, int]] = patch_grid
    leading_tokens: Callable[[Any], int] = lambda config: 0
    pixel_box: Callable[[Any, tuple[int, int]], tuple[float, ...]] = resized_image_box
    token_id: Callable[[Any], int] = lambda config: int(config.image_token_id)
    name: str = "image {index}"
    hint: str = (
        "put exactly one image placeholder per image in the prompt (or none, to let dexar "
        "apply the template), with a processor saved with the model"
    )

    def image_token_ids(self, config: Any) -> frozenset[int]:
        """See :meth:`ImageTokenRule.image_token_ids`."""
        return frozenset({self.token_id(config)})

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`; each image's block in prompt order."""
        config = loaded.model.config
        pixel_height, pixel_width = inputs["pixel_values"].shape[-2:]
        rows, cols = self.grid(config, int(pixel_height), int(pixel_width))
        leading = self.leading_tokens(config)
        ids = inputs["input_ids"][0].cpu().numpy()
        positions = np.flatnonzero(ids == self.token_id(config))
        per_image = leading + rows * cols
        if positions.size != per_image * len(images):
            raise InputError(
                f"the prompt holds {positions.size} image tokens but {len(images)} image(s) "
                f"of {per_image} tokens each were given; {self.hint}."
            )
        image_processor = getattr(loaded.processor, "image_processor", None)
        return tuple(
            ImageFacts(
                name=self.name.format(index=index),
                image_index=index,
                positions=positions[index * per_image : (index + 1) * per_image],
                rows=rows,
                cols=cols,
                leading_tokens=leading,
                pixel_box=self.pixel_box(image_processor, image.size),
            )
            for index, image in enumerate(images)
        )


def image_blocks(
    inputs: Mapping[str, Any],
    token: int,
    counts: Sequence[int],
    images: Sequence[Any],
    *,
    placeholder: str = "image placeholder",
) -> list[np.ndarray]:
    """The prompt's positions of ``token``, one block of ``counts[i]`` per image, in order.

    Args:
        inputs: the processor's outputs.
        token: the image placeholder id.
        counts: how many tokens each image's block holds, from the processor's outputs.
        images: the images given.
        placeholder: the placeholder a user writes in the prompt, for the error.

    Raises:
        InputError: the blocks do not match the images or the prompt's tokens.
    """
    positions = np.flatnonzero(inputs["input_ids"][0].cpu().numpy() == token)
    if len(counts) != len(images) or positions.size != sum(counts):
        raise InputError(
            f"the prompt holds {positions.size} image tokens but {len(images)} image(s) of "
            f"{list(counts)} tokens were given; put exactly one {placeholder} per image in "
            "the prompt (or none, to let dexar apply the template), with the processor "
            "saved with the model."
        )
    bounds = np.cumsum([0, *counts])
    return [positions[start:stop] for start, stop in pairwise(bounds)]


def equal_grids(
    positions: np.ndarray, rows: int, cols: int, views: Sequence[tuple[str, int, Box]]
) -> list[ImageFacts]:
    """One ``rows x cols`` grid per view, ``positions`` cut into equal consecutive blocks.

    Each view is ``(name, image_index, pixel_box)``, in the order its block comes (an
    image and its crops, a video's temporal patches); ``positions`` holds
    ``len(views) * rows * cols`` entries.
    """
    blocks = np.split(positions, len(views)) if views else []
    return [
        ImageFacts(
            name=name, image_index=index, positions=block, rows=rows, cols=cols, pixel_box=box
        )
        for (name, index, box), block in zip(views, blocks)
    ]


def token_runs(ids: np.ndarray, token: int) -> list[np.ndarray]:
    """The maximal runs of consecutive positions holding ``token``, in prompt order.

    A tiling processor writes one run per image (InternVL) or per view (a tile or a
    global view, between text markers: Idefics3).
    """
    positions = np.flatnonzero(ids == token)
    if positions.size == 0:
        return []
    return np.split(positions, np.flatnonzero(np.diff(positions) > 1) + 1)


def assembled_tiles(runs: Sequence[np.ndarray], rows: int, cols: int, side: int) -> np.ndarray:
    """The positions of ``rows x cols`` tiles of ``side x side`` tokens as one grid.

    ``runs`` are the tiles' token positions in row-major tile order, each row-major within
    its tile; the result is row-major over the assembled ``rows*side x cols*side`` grid:
    tile ``(r, c)``'s token ``(i, j)`` lands at cell ``(r*side + i, c*side + j)``, so each
    tile's map lies where the tile came from on the image.
    """
    blocks = np.stack([run.reshape(side, side) for run in runs]).reshape(rows, cols, side, side)
    return blocks.transpose(0, 2, 1, 3).reshape(-1)


def tiled_image_facts(
    index: int,
    size: tuple[int, int],
    views: Sequence[np.ndarray],
    tiles: tuple[int, int],
    whole_view: str,
) -> list[ImageFacts]:
    """One tiled image's records from its views' token runs, in prompt order.

    ``views`` are ``rows x cols`` tile runs then one run of the whole image at one tile's
    size (a global view, a thumbnail; named ``whole_view``), each ``side x side`` tokens;
    or a single run where the processor showed the image as one view. The tiles become
    one grid over the whole original image (:func:`assembled_tiles`: every resize acts on
    the whole image, so tile ``(r, c)`` covers that fraction of it), the whole-image view
    its own grid over it too.
    """
    width, height = size
    whole = (0.0, 0.0, float(width), float(height))
    side = round(views[-1].size ** 0.5)
    rows, cols = tiles
    last = ImageFacts(
        name=f"image {index}" if len(views) == 1 else f"image {index}, {whole_view}",
        image_index=index,
        positions=views[-1],
        rows=side,
        cols=side,
        pixel_box=whole,
    )
    if len(views) == 1:
        return [last]
    grid = ImageFacts(
        name=f"image {index}, {rows}x{cols} tiles",
        image_index=index,
        positions=assembled_tiles(views[:-1], rows, cols, side),
        rows=rows * side,
        cols=cols * side,
        pixel_box=whole,
    )
    return [grid, last]


class PromptLocator(VisualTokenLocator):
    """V from the prepared prompt's facts: every grid cell of every image.

    Image tokens on no grid (a CLS or pooled feature) are in neither V nor the text
    set; nor are positions the attention mask hides (an encoder's padding).
    """

    def locate(self, prepared: PreparedPrompt) -> VisualLayout:
        """See :meth:`VisualTokenLocator.locate`."""
        facts = prepared.facts
        input_ids = prepared.inputs["input_ids"][0].cpu().numpy()
        grids = facts.grids
        visual = np.zeros(input_ids.size, dtype=bool)
        for grid in grids:
            visual[grid.positions] = True
        image_tokens = np.isin(input_ids, sorted(facts.image_token_ids))
        attended = np.ones(input_ids.size, dtype=bool)
        if prepared.inputs.get("attention_mask") is not None:
            attended = prepared.inputs["attention_mask"][0].cpu().numpy().astype(bool)
        return VisualLayout(
            visual_mask=visual,
            text_mask=~visual & ~image_tokens & attended,
            template_mask=facts.template_mask & ~image_tokens & attended,
            grids=grids,
            projection=facts.projection,
        )
