"""The Qwen-VL adapter: dynamic resolution, several images and video.

It serves ``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``
and ``Qwen3VLForConditionalGeneration``.
Resolution is dynamic: the processor resizes each image to a multiple of
``patch_size * merge_size`` on each side (``smart_resize``, no crop), cuts it into
patches, and the vision tower merges each 2x2 block of patches into one language-model
token. The processor writes one ``<|image_pad|>`` per merged token between
``<|vision_start|>`` and ``<|vision_end|>``, row-major over a
``(grid_h / merge) x (grid_w / merge)`` grid, with ``(t, grid_h, grid_w)`` in
``image_grid_thw``. A video (a :class:`dexar_core.images.Video`) is the same with
``<|video_pad|>`` and ``video_grid_thw``: ``grid_t`` consecutive grids, each covering
``temporal_patch_size`` frames (the last one repeated when the count is odd).

The visual tokens are located from those outputs, never from fixed counts: the runs of
pad tokens, each checked to lie between the vision markers and to hold exactly
``t * grid_h * grid_w / merge**2`` tokens. Each run belongs to the next image (or
video) in the order of the inputs, as the processor assigns them.

Qwen3-VL differs in three ways, none of which changes V (docs/architectures.md):

- DeepStack: the merged features of three vision blocks are added to the outputs of
  the first three decoder layers at the visual positions. The keys at those positions
  hold image information at every layer (more of it in the first layers), so V stays
  the visual positions, at every layer; the logit-lens target reads a layer's output
  before that addition, which only touches visual positions, never a query row.
- A video is written as one ``<|vision_start|><|video_pad|>...<|vision_end|>`` run per
  temporal patch, each after a ``<t seconds>`` timestamp in text: the runs of one video
  are joined into its grids, and the timestamps are text (in ``T_set``). dexar's
  ``Video`` carries no frame rate, so the processor's default of 24 fps dates them.
- Interleaved M-RoPE: positions only, nothing dexar reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from dexar_core.errors import InputError, LayoutError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import equal_grids
from dexar_core.hf.generative import chat_template_prompt
from dexar_core.images import Video
from dexar_core.records import ImageFacts, LoadedModel, PreparedPrompt
from dexar_qwen_vl.resolution import resize_settings, resized_size

MODEL_CLASSES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
}
"""The model class served for each ``config.model_type``."""

ROPE_INDEX_INPUTS = frozenset(
    (
        "input_ids",
        "mm_token_type_ids",
        "image_grid_thw",
        "video_grid_thw",
        "second_per_grid_ts",
        "attention_mask",
    )
)
"""The prompt inputs the model's ``get_rope_index`` reads (M-RoPE positions)."""

IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"

FALLBACK_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{visuals}{prompt}<|im_end|>\n<|im_start|>assistant\n"
)
"""The Qwen2-VL chat format, used when the processor has no chat template."""


def _kind(visual: Any) -> str:
    return "video" if isinstance(visual, Video) else "image"


def frames_name(video: int, group: int, temporal_patch: int, num_frames: int) -> str:
    """Name of the grid of one temporal patch, e.g. ``"video 0, frames 2-3"``.

    The last group of a video with a frame count that is not a multiple of the temporal
    patch holds the last frame repeated; it is named after the real frame only.
    """
    first = group * temporal_patch
    last = min(first + temporal_patch, num_frames) - 1
    if first == last:
        return f"video {video}, frame {first}"
    return f"video {video}, frames {first}-{last}"


class QwenVisualTokens:
    """Qwen-VL's image tokens: runs of pad tokens between the vision markers, one grid
    per image and per temporal patch of each video, in prompt order (an
    :class:`~dexar_core.hf.facts.ImageTokenRule`)."""

    def image_token_ids(self, config: Any) -> frozenset[int]:
        """The image and the video pad tokens."""
        return frozenset({int(config.image_token_id), int(config.video_token_id)})

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """The grids of every image and temporal patch, from the processor's outputs."""
        config = loaded.model.config
        merge = int(config.vision_config.spatial_merge_size)
        ids = inputs["input_ids"][0].cpu().numpy()
        pads = {"image": int(config.image_token_id), "video": int(config.video_token_id)}
        runs = _pad_runs(
            ids, pads, int(config.vision_start_token_id), int(config.vision_end_token_id)
        )
        grid_thw = {
            kind: inputs[f"{kind}_grid_thw"].tolist() if f"{kind}_grid_thw" in inputs else []
            for kind in pads
        }
        order = {kind: [i for i, v in enumerate(images) if _kind(v) == kind] for kind in pads}
        temporal_patch = int(config.vision_config.temporal_patch_size)
        facts: list[ImageFacts] = []
        for kind in pads:
            kind_runs = _blocks(
                [positions for run_kind, positions in runs if run_kind == kind],
                [t * (h // merge) * (w // merge) for t, h, w in grid_thw[kind]],
            )
            if not len(kind_runs) == len(grid_thw[kind]) == len(order[kind]):
                raise InputError(
                    f"the prompt holds {len(kind_runs)} {kind} block(s), the processor made "
                    f"{len(grid_thw[kind])} {kind} grid(s) and {len(order[kind])} {kind}(s) "
                    f"were given; put one {VISION_START}{pads_name(kind)}{VISION_END} per {kind}."
                )
            for number, (positions, (t, h, w), index) in enumerate(
                zip(kind_runs, grid_thw[kind], order[kind])
            ):
                rows, cols = h // merge, w // merge
                if positions.size != t * rows * cols:
                    raise LayoutError(
                        f"{kind} {number} has {positions.size} pad tokens but its grid "
                        f"(t, h, w) = {(t, h, w)} with merge {merge} needs {t * rows * cols}; "
                        "the processor and the model disagree on the merge size."
                    )
                width, height = images[index].size
                whole = (0.0, 0.0, float(width), float(height))
                names = (
                    [f"image {number}"] * t
                    if kind == "image"
                    else [
                        frames_name(number, group, temporal_patch, images[index].num_frames)
                        for group in range(t)
                    ]
                )
                views = [(name, index, whole) for name in names]
                facts.extend(equal_grids(positions, rows, cols, views))
        facts.sort(key=lambda image: int(image.positions[0]))
        return tuple(facts)


DROPPED_IMAGE_PROCESSORS: Mapping[str, str] = MappingProxyType(
    {
        "Qwen2_5_VLImageProcessor": "Qwen2VLImageProcessor",
        "Qwen2_5_VLImageProcessorFast": "Qwen2VLImageProcessor",
    }
)
"""Image processor class names written by transformers 4.x that 5 dropped, and the
class that replaced each (Qwen2.5-VL always shared Qwen2-VL's image processing)."""


class QwenVLAdapter(HFDecoderOnlyAdapter):
    """Adapter for Qwen2-VL, Qwen2.5-VL and Qwen3-VL: dynamic resolution, several images,
    video.

    ``model_class`` is set per checkpoint by :meth:`load` from ``config.model_type``.
    """

    name = "qwen_vl"
    model_class = MODEL_CLASSES["qwen2_vl"]
    accepts_video = True
    image_tokens = QwenVisualTokens()
    dropped_image_processors = DROPPED_IMAGE_PROCESSORS
    model_classes = MODEL_CLASSES
    # answer tokens are text for M-RoPE: mm_token_type_ids grows with zeros
    answer_token_types = MappingProxyType({"mm_token_type_ids": 0})

    # --- prompt -------------------------------------------------------------------------

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The chat-template prompt for ``num_images`` images then the text."""
        return self._template(loaded, prompt, ["image"] * num_images)

    def format_visual_prompt(self, loaded: LoadedModel, prompt: str, visuals: Sequence[Any]) -> str:
        """The chat-template prompt: the images and videos in order, then the text.

        A prompt that already holds ``<|image_pad|>`` or ``<|video_pad|>`` placeholders
        is used verbatim, after checking there is one per image and one per video.
        """
        kinds = [_kind(visual) for visual in visuals]
        if IMAGE_PAD in prompt or VIDEO_PAD in prompt:
            for kind, pad in (("image", IMAGE_PAD), ("video", VIDEO_PAD)):
                placeholders, given = prompt.count(pad), kinds.count(kind)
                if placeholders != given:
                    raise InputError(
                        f"the prompt holds {placeholders} {kind} placeholder(s) {pad} but "
                        f"{given} {kind}(s) were given; put exactly one "
                        f"{VISION_START}{pad}{VISION_END} per {kind} in the prompt, or none "
                        "to let dexar apply the chat template."
                    )
            return prompt
        return self._template(loaded, prompt, kinds)

    def _template(self, loaded: LoadedModel, prompt: str, kinds: Sequence[str]) -> str:
        templated = chat_template_prompt(loaded.processor, prompt, kinds)
        if templated is not None:
            return templated
        visuals = "".join(
            f"{VISION_START}{VIDEO_PAD if kind == 'video' else IMAGE_PAD}{VISION_END}"
            for kind in kinds
        )
        return FALLBACK_TEMPLATE.format(visuals=visuals, prompt=prompt)

    # --- inputs -------------------------------------------------------------------------

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """Check every image and video against the processor's resize, then prepare."""
        processor = loaded.processor
        videos = 0
        for index, visual in enumerate(images):
            if isinstance(visual, Video):
                settings = resize_settings(processor.video_processor)
                who = f"video {videos} (input {index})"
                if visual.num_frames < settings["temporal_patch_size"]:
                    raise InputError(
                        f"{who} has {visual.num_frames} frame(s) but the model groups "
                        f"{settings['temporal_patch_size']} frames per temporal patch; give at "
                        f"least {settings['temporal_patch_size']} frames, or pass a single "
                        "frame as an image."
                    )
                videos += 1
            else:
                settings = resize_settings(processor.image_processor)
                who = f"image {index - videos} (input {index})"
            width, height = visual.size
            resized_size(width, height, settings, who=who)
        return super().prepare(loaded, images, prompt)

    def processor_inputs(
        self, loaded: LoadedModel, text: str, images: Sequence[Any]
    ) -> dict[str, Any]:
        """Run the processor with the images and the videos' frames (all frames kept)."""
        stills = [visual for visual in images if not isinstance(visual, Video)]
        videos = [list(visual.frames) for visual in images if isinstance(visual, Video)]
        kwargs: dict[str, Any] = {"text": text, "return_tensors": "pt"}
        if stills:
            kwargs["images"] = stills
        if videos:
            kwargs["videos"] = videos
            # dexar explains the frames it was given: never let the processor drop some.
            kwargs["do_sample_frames"] = False
        return dict(loaded.processor(**kwargs))

    def resume_prompt(self, loaded: LoadedModel, prompt_inputs: Mapping[str, Any]) -> None:
        """See :meth:`GenerativeAdapter.resume_prompt`: the rows after a cached prompt
        take their M-RoPE positions from the deltas the model keeps from its last
        prefill, which may have been a batch's; the prompt's own are set again."""
        names = ROPE_INDEX_INPUTS & set(prompt_inputs)
        text_model = loaded.model.model
        _, deltas = text_model.get_rope_index(**{name: prompt_inputs[name] for name in names})
        text_model.rope_deltas = deltas

    def describe(self) -> dict[str, Any]:
        """The adapter and the model class it loaded."""
        return {"adapter": self.name, "model_class": self.model_class}


def pads_name(kind: str) -> str:
    """The pad token of ``"image"`` or ``"video"``."""
    return VIDEO_PAD if kind == "video" else IMAGE_PAD


def _blocks(runs: list[np.ndarray], sizes: list[int]) -> list[np.ndarray]:
    """The runs joined into one block per grid of ``sizes`` tokens, in order.

    Qwen2-VL writes one run per image or video; Qwen3-VL writes a video as one run per
    temporal patch, a timestamp in text before each. Runs that do not add up to the
    grids are left as they are, for the caller's count check to report.
    """
    blocks: list[np.ndarray] = []
    remaining = list(runs)
    for size in sizes:
        taken: list[np.ndarray] = []
        while remaining and sum(run.size for run in taken) < size:
            taken.append(remaining.pop(0))
        if not taken or sum(run.size for run in taken) != size:
            return runs
        blocks.append(np.concatenate(taken))
    return blocks + remaining


def _pad_runs(
    ids: np.ndarray, pads: dict[str, int], start: int, end: int
) -> list[tuple[str, np.ndarray]]:
    """Maximal runs of one pad token, in order, each checked to sit between the markers.

    The model groups its visual tokens the same way (consecutive tokens of one type).
    """
    kind_of = {token: kind for kind, token in pads.items()}
    runs: list[tuple[str, np.ndarray]] = []
    position = 0
    while position < ids.size:
        kind = kind_of.get(int(ids[position]))
        if kind is None:
            position += 1
            continue
        stop = position
        while stop < ids.size and ids[stop] == ids[position]:
            stop += 1
        if position == 0 or ids[position - 1] != start or stop == ids.size or ids[stop] != end:
            raise InputError(
                f"the {kind} placeholder at position {position} is not wrapped as "
                f"{VISION_START}{pads_name(kind)}{VISION_END}; the model expects its visual "
                "tokens between these markers. Fix the prompt, or give no placeholder to let "
                "dexar apply the chat template."
            )
        runs.append((kind, np.arange(position, stop)))
        position = stop
    return runs
