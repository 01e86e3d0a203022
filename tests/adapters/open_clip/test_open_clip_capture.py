"""open_clip adapter: one pass equals the naive definition; capture is transparent and clean."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import InputError
from dexar_open_clip.adapter import vision_tower
from dexar_open_clip.similarity import pooled_rows, similarity_gradients
from dexar_open_clip.tiny import tiny_loaded
from dexar_plugins.testing.tolerance import assert_float32_close

torch.set_num_threads(2)

PROMPTS = ["a red circle", "a blue square at the top", "a green triangle"]
WIDTH = 32  # the tiny model's width: the longest float32 sum behind a gradient
CONFIGS = {
    "class-token pool": {},
    "patch-mean pool": {"pool_type": "avg"},
    "open_clip Attention (qk norm)": {"custom_attention": True},
}


@pytest.fixture(scope="module")
def image():
    return ShapesDataset("test", size=4, image_size=32)[1].image


def _prepared(loaded, image, prompts):
    prepared = loaded.adapter.prepare(loaded, [image], prompts)
    return prepared, loaded.adapter.locator.locate(prepared)


def _blocks(model):
    return vision_tower(model).transformer.resblocks


def naive_gradients(model, pixels, text, layers):
    """mean_rows ReLU(d s^{l,p} / d A^l) by plain autograd.grad, one call per layer and prompt.

    An independent re-implementation of the ViT forward that keeps every attention
    probability tensor in the graph; nothing is detached.
    """
    visual = vision_tower(model)
    x = visual._embeds(pixels)
    probabilities, outputs = [], []
    for block in _blocks(model):
        attention = block.attn
        hidden = block.ln_1(x)
        batch, length, width = hidden.shape
        q, k, v = (
            part.reshape(batch, length, attention.num_heads, -1).transpose(1, 2)
            for part in F.linear(hidden, attention.in_proj_weight, attention.in_proj_bias).chunk(
                3, dim=-1
            )
        )
        if not isinstance(attention, torch.nn.MultiheadAttention):
            q, k = attention.ln_q(q), attention.ln_k(k)
        probs = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        context = (probs @ v).transpose(1, 2).reshape(batch, length, width)
        if isinstance(attention, torch.nn.MultiheadAttention):
            out = attention.out_proj(context)
        else:
            out = attention.out_proj(attention.ln_inner(context))
        out = getattr(block, "ln_attn", torch.nn.Identity())(out)
        x = x + block.ls_1(out)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        probabilities.append(probs)
        outputs.append(x)
    pooled, _ = visual._pool(outputs[-1])
    final = pooled @ visual.proj
    result = np.zeros((text.shape[0], len(layers), *probabilities[0].shape[1:2], x.shape[1]))
    for position, layer in enumerate(layers):
        pooled, _ = visual._pool(outputs[layer])
        embedding = F.normalize(pooled @ visual.proj, dim=-1)
        for prompt in range(text.shape[0]):
            target = (embedding[0] * text[prompt]).sum()
            (grad,) = torch.autograd.grad(target, probabilities[layer], retain_graph=True)
            result[prompt, position] = torch.relu(grad[0]).mean(dim=1).numpy()
    return result, final


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_one_pass_equals_naive_per_layer_autograd(config, image):
    loaded = tiny_loaded(seed=3, **CONFIGS[config])
    prepared, layout = _prepared(loaded, image, PROMPTS)
    layers = (0, 1, 2)
    record, similarities = similarity_gradients(loaded, prepared, layout, layers)
    text = F.normalize(loaded.model.encode_text(prepared.inputs["tokens"]), dim=-1).detach()
    expected, final = naive_gradients(loaded.model, prepared.inputs["pixels"], text, layers)
    assert record.gradients.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 0
    assert np.abs(record.gradients - expected).max() <= 1e-5 * scale
    with torch.no_grad():
        reference = loaded.model.encode_image(prepared.inputs["pixels"])
    assert torch.allclose(final, reference, atol=1e-5)
    cosine = (F.normalize(reference, dim=-1) * text).sum(-1).numpy()
    np.testing.assert_allclose(similarities, cosine, atol=1e-6)
    np.testing.assert_allclose(record.targets[-1], cosine, atol=1e-5)


def test_class_token_pooling_captures_only_the_class_row():
    assert pooled_rows(vision_tower(tiny_loaded().model)) == (0,)
    assert pooled_rows(vision_tower(tiny_loaded(pool_type="avg").model)) is None


def test_last_k_layers_equal_the_same_layers_of_all(image):
    loaded = tiny_loaded(seed=1)
    prepared, layout = _prepared(loaded, image, PROMPTS[:2])
    everything, _ = similarity_gradients(loaded, prepared, layout, (0, 1, 2))
    last_two, _ = similarity_gradients(loaded, prepared, layout, (1, 2))
    assert_float32_close(last_two.gradients, everything.gradients[:, 1:], terms=WIDTH)


def _hook_count(model) -> int:
    return sum(
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(getattr(module, "_forward_hooks_with_kwargs", {}))
        for module in model.modules()
    )


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_capture_is_transparent_and_leaves_nothing_behind(config, image):
    loaded = tiny_loaded(seed=2, **CONFIGS[config])
    model = loaded.model
    prepared, _ = _prepared(loaded, image, PROMPTS)
    pixels = prepared.inputs["pixels"]
    flags = [p.requires_grad for p in model.parameters()]
    with torch.no_grad():
        before = model.encode_image(pixels)
    with loaded.adapter.capture.capture(model, (0, 2), copies=3) as captured:
        during = model.encode_image(pixels)
    assert torch.allclose(during, before, atol=1e-6)
    assert captured.leaves[0].shape == (3, 4, 17, 17)
    assert captured.layer_outputs[2].shape == (3, 17, 32)
    assert _hook_count(model) == 0
    assert [p.requires_grad for p in model.parameters()] == flags
    with torch.no_grad():
        assert torch.equal(model.encode_image(pixels), before)


def test_hooks_are_removed_when_the_forward_raises(image):
    loaded = tiny_loaded()
    model = loaded.model
    prepared, layout = _prepared(loaded, image, PROMPTS[:1])
    two_images = prepared.inputs["pixels"].repeat(2, 1, 1, 1)
    with (
        pytest.raises(InputError, match="one image per forward"),
        loaded.adapter.capture.capture(model, (0, 1, 2)),
    ):
        model.encode_image(two_images)
    assert _hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"), loaded.adapter.capture.capture(model, (1,)):
        raise RuntimeError("boom")
    assert _hook_count(model) == 0
    broken = dict(prepared.inputs, pixels=prepared.inputs["pixels"][:, :2])
    with pytest.raises(RuntimeError):
        similarity_gradients(loaded, attrs.evolve(prepared, inputs=broken), layout, (0, 1))
    assert _hook_count(model) == 0
    assert all(p.requires_grad for p in model.parameters())
