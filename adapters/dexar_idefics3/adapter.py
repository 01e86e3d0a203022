"""The Idefics3 / SmolVLM adapter: an image split into tiles plus a global view.

It serves ``Idefics3ForConditionalGeneration`` (model type ``idefics3``) and
``SmolVLMForConditionalGeneration`` (``smolvlm``, SmolVLM and SmolVLM2). Their processor
resizes an image so its longest edge is ``size["longest_edge"]`` (aspect kept), then
stretches it to whole multiples of the tile side ``max_image_size["longest_edge"]`` and
cuts it into ``rows x cols`` tiles; a *global* view, the whole image resized to one tile,
comes last. A small image (one tile or less) is shown as the global view alone. The
vision tower sees each tile and the global view separately; pixel shuffle folds each
``scale_factor x scale_factor`` block of patches into one language-model token, so each
view becomes ``n x n`` tokens (``n = tile / patch / scale_factor``), row-major. The
prompt holds, per image::

    <fake_token_around_image><row_1_col_1><image>*n*n<fake_token_around_image><row_1_col_2>...
    \\n ... \\n\\n<fake_token_around_image><global-img><image>*n*n<fake_token_around_image>

Which run of ``<image>`` tokens is which view is read from the text marker before it
(``<row_R_col_C>`` or ``<global-img>``, one token in SmolVLM's vocabulary, several BPE
pieces in Idefics3's): the processor keeps no row and column counts in its outputs.

The method's definition here (docs/architectures.md): V is every ``<image>`` position.
dexar reports two grids per split image: the tiles, assembled into one
``rows*n x cols*n`` grid over the whole original image (each tile where it came from,
the stretch to whole tiles undone), and the global view as its own ``n x n`` grid over the
whole image. The ``<fake_token_around_image>``, ``<row_R_col_C>``, ``<global-img>`` and
newline tokens lie on no patch: they are text of the template (in ``T_set``, dropped by
``text_set="prompt_only"``), never visual. Nothing is cropped: the whole image is seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dexar_core.errors import InputError, UnsupportedModelError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import PlaceholderRule, tiled_image_facts, token_runs
from dexar_core.hf.generative import image_prompt
from dexar_core.images import Video
from dexar_core.records import ImageFacts, LoadedModel, PreparedPrompt

MODEL_CLASSES = {
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
}
"""The model class served for each ``config.model_type``."""

FALLBACK_TEMPLATE = "User:{images}{prompt}<end_of_utterance>\nAssistant:"
"""The Idefics3 chat form, used when the processor has no chat template."""

TILE_MARKER = re.compile(r"<row_(\d+)_col_(\d+)>$")
GLOBAL_MARKER = "<global-img>"


def view_marker(tokenizer: Any, ids: np.ndarray, start: int, fake_token: int) -> str:
    """The text between the ``<fake_token_around_image>`` before ``start`` and ``start``.

    Decoded and stripped of spaces, so a marker the tokenizer splits into pieces reads
    as one (``"<row_1_col_2>"``, ``"<global-img>"``); empty where no fake token precedes.
    """
    before = np.flatnonzero(ids[:start] == fake_token)
    if before.size == 0:
        return ""
    pieces = ids[before[-1] + 1 : start].tolist()
    return re.sub(r"\s", "", tokenizer.decode(pieces, skip_special_tokens=False))


def tile_places(index: int, tile_markers: Sequence[str]) -> tuple[int, int]:
    """``(rows, cols)`` of an image's tiles from their ``<row_R_col_C>`` markers, checked
    to be a full grid in row-major order; ``(0, 0)`` for an image shown whole."""
    if not tile_markers:
        return 0, 0
    places = [TILE_MARKER.match(marker) for marker in tile_markers]
    if not all(places):
        raise InputError(
            f"image {index}: a tile's marker reads {tile_markers[places.index(None)]!r}, "
            "not <row_R_col_C>; the prompt was not written by this model's processor."
        )
    cells = [(int(place[1]), int(place[2])) for place in places if place]
    rows, cols = max(r for r, _ in cells), max(c for _, c in cells)
    if cells != [(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)]:
        raise InputError(
            f"image {index}: its tiles are {cells}, not a full {rows}x{cols} grid in "
            "row-major order; the prompt was not written by this model's processor."
        )
    return rows, cols


class TiledImageTokens(PlaceholderRule):
    """Idefics3 / SmolVLM image tokens: per image, a tile grid (if split) then a global view."""

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`: per image its assembled tiles, if
        split, then its global view, each view told by the text marker before it."""
        config = loaded.model.config
        tokenizer = loaded.tokenizer
        side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
        side //= int(config.scale_factor)
        ids = inputs["input_ids"][0].cpu().numpy()
        fake = int(tokenizer.convert_tokens_to_ids(loaded.processor.fake_image_token))
        runs = token_runs(ids, int(config.image_token_id))
        markers = [view_marker(tokenizer, ids, int(run[0]), fake) for run in runs]
        wrong = [index for index, run in enumerate(runs) if run.size != side * side]
        if wrong:
            raise InputError(
                f"the prompt's image-token run {wrong[0]} holds {runs[wrong[0]].size} tokens "
                f"but each view of this model holds {side * side} (tile "
                f"{config.vision_config.image_size} px, patch {config.vision_config.patch_size}, "
                f"scale factor {config.scale_factor}); the processor's image_seq_len does not "
                "match the model. Save the processor with the model."
            )
        facts: list[ImageFacts] = []
        start = 0
        for index, image in enumerate(images):
            # An image's views are its tile runs, then the run after <global-img>.
            stop = next(
                (k for k in range(start, len(markers)) if markers[k] == GLOBAL_MARKER), None
            )
            if stop is None:
                raise InputError(
                    f"image {index} has no <global-img> view in the prompt ({len(images)} "
                    f"image(s), {len(runs)} image-token runs); put exactly one <image> "
                    "placeholder per image in the prompt, or none to let dexar apply the template."
                )
            tiles = tile_places(index, markers[start:stop])
            views = runs[start : stop + 1]
            facts.extend(tiled_image_facts(index, image.size, views, tiles, "global"))
            start = stop + 1
        if start != len(runs):
            raise InputError(
                f"the prompt holds {len(runs) - start} image view(s) more than the "
                f"{len(images)} image(s) given; put exactly one <image> placeholder per image."
            )
        return tuple(facts)


class Idefics3Adapter(HFDecoderOnlyAdapter):
    """Adapter for Idefics3 and SmolVLM: tiles plus a global view, several images.

    ``model_class`` is set per checkpoint by :meth:`load` from ``config.model_type``.
    """

    name = "idefics3"
    model_class = MODEL_CLASSES["idefics3"]
    language_model_path = "model.text_model"
    model_classes = MODEL_CLASSES
    image_tokens = TiledImageTokens()

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """Refuse videos (see :data:`VIDEO_REFUSAL`), then prepare the images."""
        if any(isinstance(item, Video) for item in images):
            raise UnsupportedModelError(VIDEO_REFUSAL)
        return super().prepare(loaded, images, prompt)

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the Idefics3 form; a prompt with ``<image>`` is kept."""
        return image_prompt(loaded.processor, prompt, num_images, FALLBACK_TEMPLATE)

    def describe(self) -> dict[str, Any]:
        """The adapter and the model class it loaded."""
        return {"adapter": self.name, "model_class": self.model_class}


VIDEO_REFUSAL = (
    "the idefics3 adapter explains images only: SmolVLM2's video input (frames sampled by "
    "its video processor, each a global view after a timestamp line) is not supported, "
    "because dexar would have to give each frame's grid its time from the processor's "
    "sampling, which it does not do yet. Pass the frames you want explained as images "
    "(one <image> per frame)."
)
"""Why a video is refused, and what to do instead."""
