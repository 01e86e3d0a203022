"""``legrad`` on open_clip follows the published LeGrad; a generative model's is unchanged.

The published method (Bousselham et al., LeGrad; the authors' ``compute_legrad_clip``)
for a CLIP ViT: for each of the last 2 blocks l, the target is the cosine of
``normalize(ln_post(mean over all tokens of block l's output) @ proj)`` with the text;
its gradient with respect to block l's attention probabilities (every query row) is
clamped at 0, averaged over heads and over query rows and kept at the patch keys; each
layer's map is upsampled bilinearly by the patch size, the layers are summed, and each
prompt's map is min-max normalised. :func:`published_legrad` below writes that from the
description with plain autograd and hooks on the open_clip model (not dexar's capture).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from llava_fixtures import noise_image, tiny_llava

import dexar_core
from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import MethodError
from dexar_core.heatmap import minmax, paste_to_image
from dexar_open_clip.similarity import similarity_gradients
from dexar_open_clip.tiny import tiny_loaded
from dexar_plugins.testing.tolerance import assert_float32_close

torch.set_num_threads(2)

PROMPTS = ["a red circle", "a blue square", "a green triangle at the top"]
WIDTH = 32  # the tiny model's width: the longest float32 sum behind a gradient
SIDE = 32  # the tiny tower's input side: an image of that size is its processed image


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded(seed=2)


@pytest.fixture(scope="module")
def image():
    return ShapesDataset("test", size=2, image_size=SIDE)[1].image


def _attention_from_weights(probabilities, index, module, args, kwargs, output):
    """nn.MultiheadAttention recomputed with its probabilities kept in the graph."""
    x = args[0]
    batch, length, width = x.shape
    heads = module.num_heads
    q, k, v = (
        part.reshape(batch, length, heads, -1).transpose(1, 2)
        for part in F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
    )
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    probabilities[index] = weights
    context = (weights @ v).transpose(1, 2).reshape(batch, length, width)
    return module.out_proj(context), None


def published_legrad(model, pixels, text, layer_index=-2):
    """LeGrad's maps ``[P, H, W]``, raw grid sum ``[P, h, w]`` and targets ``[layers, P]``."""
    visual = model.visual
    assert visual.transformer.batch_first
    blocks = visual.transformer.resblocks
    first = len(blocks) + layer_index
    probabilities, outputs, handles = {}, {}, []
    for index in range(first, len(blocks)):
        hook = partial(_attention_from_weights, probabilities, index)
        handles.append(blocks[index].attn.register_forward_hook(hook, with_kwargs=True))
        handles.append(
            blocks[index].register_forward_hook(
                lambda module, args, output, i=index: outputs.__setitem__(i, output)
            )
        )
    patch = visual.patch_size[0]
    upsampled, grid_sum, targets = 0, 0, []
    try:
        with torch.enable_grad():
            model.encode_image(pixels)
            for index in range(first, len(blocks)):
                pooled = visual.ln_post(outputs[index].mean(dim=1)) @ visual.proj
                similarity = (F.normalize(pooled, dim=-1) @ text.T)[0]
                targets.append(similarity.detach())
                prompts = []
                for p in range(text.shape[0]):
                    (grad,) = torch.autograd.grad(
                        similarity[p], probabilities[index], retain_graph=True
                    )
                    patches = grad.clamp(min=0)[0].mean(dim=0).mean(dim=0)[1:]
                    side = math.isqrt(patches.numel())
                    prompts.append(patches.reshape(side, side))
                layer_map = torch.stack(prompts)[None]
                grid_sum = grid_sum + layer_map[0]
                upsampled = upsampled + F.interpolate(
                    layer_map, scale_factor=patch, mode="bilinear"
                )
    finally:
        for handle in handles:
            handle.remove()
    maps = upsampled[0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low), grid_sum, torch.stack(targets)


def _text(loaded, prompts):
    with torch.no_grad():
        tokens = loaded.processor.tokenizer(prompts)
        return F.normalize(loaded.model.encode_text(tokens), dim=-1)


def test_legrad_equals_the_published_definition(loaded, image):
    explanation = dexar_core.explain(loaded, image, PROMPTS, method="legrad")
    prepared = loaded.adapter.prepare(loaded, [image], PROMPTS)
    maps, grid_sum, _ = published_legrad(
        loaded.model, prepared.inputs["pixels"], _text(loaded, PROMPTS)
    )
    assert grid_sum.max() > 0
    assert explanation.grids[0].pixel_box == (0, 0, SIDE, SIDE)
    assert_float32_close(explanation.raw_token_maps[0], grid_sum, terms=WIDTH)
    upsampled, _ = explanation.upsample()
    assert_float32_close(upsampled, maps, terms=WIDTH)


def test_the_target_is_ln_post_of_the_mean_of_all_tokens_through_proj(loaded, image):
    prepared = loaded.adapter.prepare(loaded, [image], PROMPTS)
    layout = loaded.adapter.locator.locate(prepared)
    published, _ = similarity_gradients(loaded, prepared, layout, (1, 2), mean_tokens=True)
    model_pooled, _ = similarity_gradients(loaded, prepared, layout, (1, 2))
    _, _, expected = published_legrad(
        loaded.model, prepared.inputs["pixels"], _text(loaded, PROMPTS)
    )
    assert_float32_close(published.targets, expected, terms=WIDTH)
    assert published.metadata["target_pooling"] == "mean_tokens"
    # the model pools the class token: another target
    assert np.abs(model_pooled.targets - published.targets).max() > 1e-3


def test_every_query_row_is_a_leaf(loaded, image):
    prepared = loaded.adapter.prepare(loaded, [image], PROMPTS[:1])
    layout = loaded.adapter.locator.locate(prepared)
    published, _ = similarity_gradients(loaded, prepared, layout, (2,), mean_tokens=True)
    class_row, _ = similarity_gradients(loaded, prepared, layout, (2,))
    assert published.averaged_rows == layout.sequence_length == 17
    assert published.metadata["query_rows"] == "all"
    assert class_row.averaged_rows == 1


def test_the_default_is_the_last_two_blocks_and_model_pool_keeps_every_block(loaded, image):
    published = dexar_core.explain(loaded, image, PROMPTS[:1], method="legrad")
    model_pooled = dexar_core.explain(
        loaded, image, PROMPTS[:1], method="legrad", target="model_pool"
    )
    chosen = dexar_core.explain(loaded, image, PROMPTS[:1], method="legrad", layers="all")
    assert published.layers == (1, 2) and published.options["target"] == "mean_tokens"
    assert model_pooled.layers == (0, 1, 2) and chosen.layers == (0, 1, 2)
    assert published.metadata["target_pooling"] == "mean_tokens"
    assert model_pooled.metadata["target_pooling"] == "model"
    assert chosen.minmax_after_upsampling and not model_pooled.minmax_after_upsampling


def test_maps_are_normalised_after_upsampling_where_the_two_orders_differ(loaded, image):
    explanation = dexar_core.explain(loaded, image, PROMPTS, method="legrad")
    box, size = explanation.grids[0].pixel_box, explanation.image_sizes[0]
    grid_first = np.stack([paste_to_image(m, box, size) for m in explanation.token_map_stack])
    published, sequence = explanation.upsample()
    # bilinear interpolation lowers interior extremes: normalised on the grid, the
    # upsampled map no longer spans [0, 1]
    assert np.abs(grid_first - published).max() > 1e-2
    for index, grid_map in enumerate(grid_first):
        np.testing.assert_allclose(published[index], minmax(grid_map), atol=1e-6)
    assert sequence.min() == 0 and sequence.max() == 1
    model_pooled = dexar_core.explain(loaded, image, PROMPTS, method="legrad", target="model_pool")
    kept, _ = model_pooled.upsample()
    on_grid = [paste_to_image(m, box, size) for m in model_pooled.token_map_stack]
    np.testing.assert_array_equal(kept, np.stack(on_grid))


def test_the_normalisation_order_survives_save_and_load(loaded, image, tmp_path):
    explanation = dexar_core.explain(loaded, image, PROMPTS[:2], method="legrad")
    explanation.save(tmp_path / "legrad")
    again = dexar_core.Explanation.load(tmp_path / "legrad")
    assert again == explanation and again.minmax_after_upsampling


def test_an_unknown_target_is_refused_naming_the_choices(loaded, image):
    with pytest.raises(MethodError, match=r"target must be one of.*mean_tokens.*model_pool"):
        dexar_core.explain(loaded, image, PROMPTS[:1], method="legrad", target="cls")


def test_a_generative_models_legrad_keeps_the_logit_lens_and_every_layer():
    llava = tiny_llava(seed=1)
    image = noise_image(1)
    default = dexar_core.explain(
        llava, image, "what is it?", answer="a red circle", method="legrad"
    )
    model_pool = dexar_core.explain(
        llava, image, "what is it?", answer="a red circle", method="legrad", target="model_pool"
    )
    assert default.layers == (0, 1)
    assert not default.minmax_after_upsampling
    assert "target_pooling" not in default.metadata
    for mine, other in zip(default.raw_token_maps, model_pool.raw_token_maps):
        np.testing.assert_array_equal(mine, other)
