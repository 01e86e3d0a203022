"""The LLaVA-NeXT adapter: ``LlavaNextForConditionalGeneration`` (any-resolution tiles).

LLaVA-NeXT shows the vision tower each image twice: once resized whole to one tile (the
*base* image), and once at a higher resolution chosen from ``image_grid_pinpoints``,
resized to keep its aspect ratio, padded to that resolution and cut into tiles. The
model lays the tiles' patch features side by side into one grid, removes the rows (or
columns) that fall on the padding, and appends the learned ``image_newline`` embedding at
the end of each remaining row. Each ``<image>`` placeholder therefore expands to

* the base image's ``(tile / patch) ** 2`` features, row-major, covering the whole image;
* the unpadded high-resolution grid, row by row, each row followed by one newline token.

dexar reports two grids per image: the base grid and the high-resolution grid, the tiles
assembled into one map over the original image. The newline tokens lie on no patch and
carry no text: they are in neither V nor the text set (docs/method.md §8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from dexar_core.errors import UnsupportedModelError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import PlaceholderRule, image_blocks
from dexar_core.hf.loading import ServedModelType
from dexar_core.records import ImageFacts, LoadedModel
from dexar_llava.adapter import llava_prompt


@attrs.frozen(kw_only=True)
class HighResolutionGrid:
    """Where one image's unpadded high-resolution grid lies.

    Attributes:
        rows: patch rows after unpadding.
        cols: patch columns after unpadding.
        pixel_box: ``(left, top, right, bottom)`` of the original image those patches cover.
    """

    rows: int
    cols: int
    pixel_box: tuple[float, float, float, float]


def high_resolution_grid(config: Any, height: int, width: int) -> HighResolutionGrid:
    """The unpadded tile grid of an ``height x width`` image, as the model builds it.

    The tile grid and the padding removed are computed with transformers' own functions
    on an index grid, so the surviving patches are exactly the model's.
    """
    import torch
    from transformers.image_processing_utils import select_best_resolution
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    # Each tile gives (tile // patch)^2 features, so one feature spans tile / side pixels of
    # the padded canvas (exactly the patch where the tile is a multiple of it, as in
    # LLaVA-NeXT; 384 / 27 px for LLaVA-OneVision's SigLIP).
    tile = int(config.vision_config.image_size)
    side = tile // int(config.vision_config.patch_size)
    feature = tile / side
    best_height, best_width = select_best_resolution((height, width), config.image_grid_pinpoints)
    patch_rows, patch_cols = best_height // tile * side, best_width // tile * side
    index = torch.arange(patch_rows * patch_cols).view(1, patch_rows, patch_cols)
    kept = unpad_image(index, (height, width))[0]
    rows, cols = kept.shape
    top_row, left_col = divmod(int(kept[0, 0]), patch_cols)
    # The processor resizes the image to fit the best resolution (aspect kept, the longer
    # fitting side rounded up) and pads it centred: undo both to reach original pixels.
    scale = min(best_width / width, best_height / height)
    if best_width / width < best_height / height:
        fitted_height, fitted_width = min(int(np.ceil(height * scale)), best_height), best_width
    else:
        fitted_height, fitted_width = best_height, min(int(np.ceil(width * scale)), best_width)
    pad_top, pad_left = (best_height - fitted_height) // 2, (best_width - fitted_width) // 2
    x_scale, y_scale = width / fitted_width, height / fitted_height
    return HighResolutionGrid(
        rows=int(rows),
        cols=int(cols),
        pixel_box=(
            (left_col * feature - pad_left) * x_scale,
            (top_row * feature - pad_top) * y_scale,
            ((left_col + cols) * feature - pad_left) * x_scale,
            ((top_row + rows) * feature - pad_top) * y_scale,
        ),
    )


def check_supported(config: Any) -> None:
    """Refuse the LLaVA-NeXT variants whose image tokens dexar cannot place on a grid.

    Raises:
        UnsupportedModelError: the variant, why, and what to use instead.
    """
    strategy = config.vision_feature_select_strategy
    if strategy != "default":
        raise UnsupportedModelError(
            f"the llava_next adapter needs vision_feature_select_strategy 'default' (the CLS "
            f"feature dropped, as every published LLaVA-NeXT); this model has {strategy!r}. "
            "With the CLS feature kept, transformers cannot lay the tiles' features into one "
            "grid. Use a checkpoint with the 'default' strategy."
        )
    if not getattr(config, "image_grid_pinpoints", None):
        raise UnsupportedModelError(
            "the llava_next adapter needs image_grid_pinpoints in the model's config (the "
            "any-resolution sizes); this config has none. Save the config with them."
        )


def base_facts(index: int, block: np.ndarray, side: int, image: Any, *, name: str) -> ImageFacts:
    """The base view of image ``index``: the first ``side * side`` positions of its block,
    row-major, over the whole original image."""
    return ImageFacts(
        name=name,
        image_index=index,
        positions=block[: side * side],
        rows=side,
        cols=side,
        pixel_box=(0.0, 0.0, float(image.size[0]), float(image.size[1])),
    )


def tile_facts(index: int, block: np.ndarray, side: int, grid: HighResolutionGrid) -> ImageFacts:
    """The unpadded tile grid of image ``index``: the rest of its block, each row ended
    by a newline token, which lies on no patch and is left out."""
    tiles = block[side * side :].reshape(grid.rows, grid.cols + 1)
    return ImageFacts(
        name=f"image {index}, tiles",
        image_index=index,
        positions=tiles[:, :-1].ravel(),
        rows=grid.rows,
        cols=grid.cols,
        pixel_box=grid.pixel_box,
    )


@attrs.frozen
class AnyResolutionImageTokens(PlaceholderRule):
    """LLaVA-NeXT's image tokens: per image, a base grid then the unpadded tile grid.

    An :class:`~dexar_core.hf.facts.ImageTokenRule` giving two records per image; the
    newline token ending each row of the tile grid belongs to neither.
    """

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`; each image's block in prompt order."""
        config = loaded.model.config
        check_supported(config)
        side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
        sizes = [tuple(int(v) for v in size) for size in inputs["image_sizes"].tolist()]
        grids = [high_resolution_grid(config, height, width) for height, width in sizes]
        counts = [side * side + grid.rows * (grid.cols + 1) for grid in grids]
        blocks = image_blocks(inputs, int(config.image_token_id), counts, images)
        facts: list[ImageFacts] = []
        for index, (image, grid, block) in enumerate(zip(images, grids, blocks)):
            facts.append(base_facts(index, block, side, image, name=f"image {index}, base"))
            facts.append(tile_facts(index, block, side, grid))
        return tuple(facts)


class LlavaNextAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``LlavaNextForConditionalGeneration`` (LLaVA-1.6 / LLaVA-NeXT)."""

    name = "llava_next"
    model_class = "LlavaNextForConditionalGeneration"
    image_tokens = AnyResolutionImageTokens()
    pixel_keys = ("pixel_values",)
    served_model_type = ServedModelType(
        family="LLaVA-NeXT image models",
        model_type="llava_next",
        instead="LLaVA-NeXT-Video pools each frame's features to a smaller grid and is not "
        "supported; explain its frames as images with an image LLaVA-NeXT checkpoint.",
    )

    def check_config(self, config: Any) -> None:
        """See :meth:`HFGenerativeAdapter.check_config`: :func:`check_supported`."""
        check_supported(config)

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the LLaVA form; a prompt with ``<image>`` is kept."""
        return llava_prompt(loaded, prompt, num_images)
