"""Where the Qwen-VL adapter finds the visual tokens, how it lays them out, what it refuses."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.errors import ImageError, InputError
from dexar_core.images import Video
from dexar_core.records import LoadedModel
from dexar_qwen_vl.adapter import QwenVLAdapter
from dexar_qwen_vl.tiny import build_tiny_qwen_vl, format_prompt

QUESTION = "what color is the circle?"
MERGE = 2
FACTOR = 16  # patch 8 x merge 2 in the tiny models


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _video(frames: int, height: int = 32, width: int = 48) -> Video:
    return Video(frames=[_image(height, width, seed) for seed in range(frames)])


def _loaded(version: str) -> LoadedModel:
    torch.set_num_threads(2)
    model, processor = build_tiny_qwen_vl(version=version, seed=0)
    return LoadedModel(model=model, processor=processor, adapter=QwenVLAdapter(), model_id="tiny")


@pytest.fixture(scope="module", params=["2", "2.5"])
def loaded(request) -> LoadedModel:
    return _loaded(request.param)


@pytest.fixture(scope="module")
def qwen2() -> LoadedModel:
    return _loaded("2")


def _layout(loaded: LoadedModel, visuals, prompt: str = QUESTION):
    prepared = loaded.adapter.prepare(loaded, visuals, prompt)
    return prepared, loaded.adapter.locator.locate(prepared)


VISUAL_SETS = {
    "square": lambda: [_image(64, 64)],
    "wide": lambda: [_image(48, 80)],
    "tall": lambda: [_image(100, 40)],
    "resized": lambda: [_image(200, 100)],
    "two images": lambda: [_image(48, 80), _image(64, 32, 1)],
    "video": lambda: [_video(4)],
    "image and odd video": lambda: [_image(40, 40), _video(3)],
}


@pytest.mark.parametrize("case", sorted(VISUAL_SETS))
def test_visual_positions_are_the_pads_and_count_t_h_w_over_merge_squared(loaded, case):
    prepared, layout = _layout(loaded, VISUAL_SETS[case]())
    inputs = prepared.inputs
    expected = sum(
        t * h * w // MERGE**2
        for key in ("image_grid_thw", "video_grid_thw")
        for t, h, w in (inputs[key].tolist() if key in inputs else [])
    )
    assert int(layout.visual_mask.sum()) == expected
    config = loaded.model.config
    pads = np.isin(inputs["input_ids"][0].numpy(), [config.image_token_id, config.video_token_id])
    assert np.array_equal(layout.visual_mask, pads)
    assert not np.any(layout.text_mask & layout.visual_mask)
    assert np.array_equal(layout.text_mask, ~pads)


@pytest.mark.parametrize(("height", "width"), [(48, 80), (100, 40), (200, 100), (30, 70), (77, 33)])
def test_grids_and_boxes_match_the_processor_for_non_square_images(loaded, height, width):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    prepared, layout = _layout(loaded, [_image(height, width)])
    (grid,) = layout.grids
    _, grid_h, grid_w = prepared.inputs["image_grid_thw"][0].tolist()
    assert (grid.height, grid.width) == (grid_h // MERGE, grid_w // MERGE)
    resized_h, resized_w = smart_resize(height, width, FACTOR, 32 * 32, 96 * 96)
    assert (grid.height, grid.width) == (resized_h // FACTOR, resized_w // FACTOR)
    # the resize keeps the whole image (no crop): the grid covers it all
    assert grid.pixel_box == (0.0, 0.0, float(width), float(height))
    assert prepared.image_sizes == ((width, height),)
    assert grid.name == "image 0" and grid.image_index == 0


def test_grid_cells_are_row_major_over_the_image(qwen2):
    """Cell (r, c) of the grid is the merged token made from the pixels of region (r, c)."""
    rows, cols = 3, 5
    cell = np.zeros((rows * FACTOR, cols * FACTOR, 3), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            cell[r * FACTOR : (r + 1) * FACTOR, c * FACTOR : (c + 1) * FACTOR] = 40 + 10 * (
                r * cols + c
            )
    prepared, layout = _layout(qwen2, [Image.fromarray(cell)])
    (grid,) = layout.grids
    assert (grid.height, grid.width) == (rows, cols)
    red = _red_channel_per_token(qwen2, prepared.inputs["pixel_values"])
    np.testing.assert_allclose(red, 40 + 10 * np.arange(rows * cols), atol=1.0)
    # the k-th pad of the block receives the k-th merged token (the model fills pads in order)
    assert np.array_equal(grid.positions, np.flatnonzero(layout.visual_mask))


def _red_channel_per_token(loaded: LoadedModel, pixel_values: torch.Tensor) -> np.ndarray:
    """Mean red value (0-255) of the patches merged into each language-model token."""
    image_processor = loaded.processor.image_processor
    patch, temporal = image_processor.patch_size, image_processor.temporal_patch_size
    red = pixel_values[:, : temporal * patch * patch].double()  # channel-first patch rows
    red = (red * image_processor.image_std[0] + image_processor.image_mean[0]) * 255
    return red.reshape(-1, MERGE * MERGE * temporal * patch * patch).mean(dim=1).numpy()


def test_video_grids_follow_the_frames_in_time(qwen2):
    frames = [np.full((32, 48, 3), 40 + 30 * index, dtype=np.uint8) for index in range(4)]
    prepared, layout = _layout(qwen2, [Video(frames=frames)])
    assert [grid.name for grid in layout.grids] == ["video 0, frames 0-1", "video 0, frames 2-3"]
    red = _red_channel_per_token(qwen2, prepared.inputs["pixel_values_videos"])
    first, second = layout.grids
    cells = first.height * first.width
    np.testing.assert_allclose(red[:cells], (40 + 70) / 2, atol=1.0)
    np.testing.assert_allclose(red[cells:], (100 + 130) / 2, atol=1.0)
    assert second.positions[0] == first.positions[-1] + 1


def test_grids_are_named_and_indexed_by_input_in_prompt_order(qwen2):
    visuals = [_image(48, 80), _video(3), _image(32, 32, 1), _video(5, 48, 32)]
    _, layout = _layout(qwen2, visuals)
    names = [grid.name for grid in layout.grids]
    assert names == [
        "image 0",
        "video 0, frames 0-1",
        "video 0, frame 2",
        "image 1",
        "video 1, frames 0-1",
        "video 1, frames 2-3",
        "video 1, frame 4",
    ]
    assert [grid.image_index for grid in layout.grids] == [0, 1, 1, 2, 3, 3, 3]
    starts = [int(grid.positions[0]) for grid in layout.grids]
    assert starts == sorted(starts)
    assert layout.grids[-1].pixel_box == (0.0, 0.0, 32.0, 48.0)


def test_maps_land_on_the_correct_image(qwen2):
    """Each grid's positions receive exactly its own image's vision features."""
    model = qwen2.model
    images = [_image(64, 32, 3), _image(48, 80, 4)]
    prepared, layout = _layout(qwen2, images)
    seen = {}

    def keep(module, args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"][0].detach()

    handle = model.model.language_model.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**prepared.inputs)
    finally:
        handle.remove()
    for grid in layout.grids:
        alone = qwen2.processor.image_processor(
            images=[images[grid.image_index]], return_tensors="pt"
        )
        with torch.no_grad():
            features = model.model.get_image_features(
                alone["pixel_values"], alone["image_grid_thw"]
            ).pooler_output[0]
        torch.testing.assert_close(
            seen["embeds"][grid.positions.tolist()], features, rtol=1e-5, atol=1e-5
        )


def test_template_mask_marks_exactly_the_qwen_template(qwen2):
    prepared, layout = _layout(qwen2, [_image(32, 32), _image(32, 48, 1)])
    tokens = qwen2.processor.tokenizer.convert_ids_to_tokens(prepared.inputs["input_ids"][0])
    prompt_only = layout.text_set("prompt_only")
    assert [t for t, keep in zip(tokens, prompt_only) if keep] == [
        "what", "color", "is", "the", "circle", "?",
    ]  # fmt: skip
    template = [t for t, flag in zip(tokens, layout.template_mask) if flag]
    assert template == [
        "<|im_start|>", "system", "you", "are", "a", "helpful", "assistant", ".", "<|im_end|>",
        "<|im_start|>", "user", "<|vision_start|>", "<|vision_end|>", "<|vision_start|>",
        "<|vision_end|>", "<|im_end|>", "<|im_start|>", "assistant",
    ]  # fmt: skip
    assert np.array_equal(layout.text_set("all_non_visual"), ~layout.visual_mask)


def test_a_prompt_with_placeholders_is_used_verbatim(qwen2):
    prompt = format_prompt("where is the red shape?")
    prepared, layout = _layout(qwen2, [_image(48, 80)], prompt)
    assert prepared.prompt_text == prompt
    assert len(layout.grids) == 1 and layout.grids[0].shape == (3, 5)


def test_video_pixels_and_dtype_follow_the_model(qwen2):
    prepared, _ = _layout(qwen2, [_video(2)])
    assert prepared.inputs["pixel_values_videos"].dtype == qwen2.model.dtype
    assert prepared.image_sizes == ((48, 32),)


# --- bad input ------------------------------------------------------------------------------


def _fresh(loaded: LoadedModel, **sizes: int) -> LoadedModel:
    processor = copy.deepcopy(loaded.processor)
    for part in (processor.image_processor, processor.video_processor):
        part.size = {**dict(part.size), **sizes}
    return LoadedModel(
        model=loaded.model, processor=processor, adapter=loaded.adapter, model_id="tiny"
    )


@pytest.mark.parametrize(
    ("visuals", "prompt", "message"),
    [
        ([_image(10, 40)], QUESTION, "smaller than one merged patch"),
        ([_image(48, 12)], QUESTION, "smaller than one merged patch"),
        ([_image(16, 3000)], QUESTION, "cannot be met"),
        ([_image(16, 3400)], QUESTION, "aspect ratio above"),
        ([Video(frames=[_image(32, 32)])], QUESTION, "1 frame"),
        ([_video(2, 8, 40)], QUESTION, "smaller than one merged patch"),
        (
            [_image(32, 32)],
            format_prompt("<|vision_start|><|image_pad|><|vision_end|>what?"),
            "2 image placeholder",
        ),
        ([_image(32, 32)], format_prompt("").replace("image_pad", "video_pad"), "0 image"),
        ([_image(32, 32)], "<|image_pad|> what color is the circle?", "not wrapped"),
    ],
)
def test_bad_inputs_raise_clear_errors(qwen2, visuals, prompt, message):
    with pytest.raises(InputError, match=message):
        qwen2.adapter.prepare(qwen2, visuals, prompt)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"shortest_edge": 5000, "longest_edge": 1000}, "exceeds max_pixels"),
        ({"shortest_edge": 64, "longest_edge": 128}, "below one merged patch"),
    ],
)
def test_pixel_ranges_that_cannot_be_met_are_refused(qwen2, sizes, message):
    bad = _fresh(qwen2, **sizes)
    with pytest.raises(InputError, match=message):
        bad.adapter.prepare(bad, [_image(48, 80)], QUESTION)
    with pytest.raises(InputError, match=message):
        bad.adapter.prepare(bad, [_video(2)], QUESTION)


def test_video_records_refuse_unusable_frames():
    with pytest.raises(ImageError, match="empty"):
        Video(frames=[])
    with pytest.raises(ImageError, match="same size"):
        Video(frames=[_image(32, 32), _image(32, 48)])
    with pytest.raises(ImageError, match="sequence of frames"):
        Video(frames=_image(32, 32))
    video = Video(frames=[np.zeros((20, 30, 3), np.uint8), _image(20, 30)])
    assert video.size == (30, 20) and video.num_frames == 2
    assert all(frame.mode == "RGB" for frame in video.frames)


def test_an_images_only_adapter_refuses_a_video():
    from dexar_llava.adapter import LlavaAdapter
    from dexar_llava.tiny import build_tiny_llava

    model, processor = build_tiny_llava(seed=0, text_layers=1, vision_layers=1)
    llava = LoadedModel(model=model, processor=processor, adapter=LlavaAdapter(), model_id="t")
    with pytest.raises(InputError, match="images only"):
        llava.adapter.prepare(llava, [_video(2, 64, 64)], QUESTION)


def test_the_entry_point_registers_the_adapter_for_both_model_types():
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    from dexar_plugins import default_catalog, resolve_adapter

    catalog = default_catalog()
    assert "qwen_vl" in catalog.adapters
    for config in (Qwen2VLConfig(), Qwen2_5_VLConfig()):
        spec = resolve_adapter(config, catalog=catalog)
        assert spec.name == "qwen_vl"
        assert isinstance(spec.factory(), QwenVLAdapter)


def test_the_pil_image_processor_gives_the_same_layout(qwen2):
    from transformers import Qwen2VLImageProcessorPil

    image_processor = qwen2.processor.image_processor
    pil = copy.deepcopy(qwen2.processor)
    pil.image_processor = Qwen2VLImageProcessorPil(
        min_pixels=image_processor.size["shortest_edge"],
        max_pixels=image_processor.size["longest_edge"],
        patch_size=image_processor.patch_size,
        merge_size=image_processor.merge_size,
        temporal_patch_size=image_processor.temporal_patch_size,
    )
    other = LoadedModel(model=qwen2.model, processor=pil, adapter=qwen2.adapter, model_id="pil")
    images = [_image(200, 100), _image(48, 80, 1)]
    _, expected = _layout(qwen2, images)
    _, actual = _layout(other, images)
    assert actual == expected
