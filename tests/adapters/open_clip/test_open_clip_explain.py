"""open_clip through dexar_core.explain: prompts as units, every method, loading, bad input."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
import torch

import dexar_core
from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import (
    CheckpointError,
    DexarError,
    InputError,
    MethodError,
    UnsupportedModelError,
)
from dexar_open_clip.adapter import wrap_model
from dexar_open_clip.tiny import build_tiny_open_clip, save_checkpoint, tiny_loaded

torch.set_num_threads(2)

PROMPTS = ["a red circle", "a blue square", "a green triangle at the top"]

ROW_METHODS = (
    "dexar",
    "dexar_weighted",
    "dexar_nohead",
    "dexar_nodelta",
    "legrad",
    "attn_grad",
    "attention",
)
"""The catalog's methods that read the explained rows: they run on the pooled pass."""

NOT_ON_PROMPTS = {
    "rollout": "whole attention matrices",
    "gae": "whole attention matrices",
    "tam": "language-model logit at every key position",
}
"""The catalog's methods that need what a contrastive model has not, and what they name."""


def explain_similarity(loaded, image, prompts, **options):
    return dexar_core.explain(loaded, image, prompts, **options)


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded(seed=0)


@pytest.fixture(scope="module")
def image():
    return ShapesDataset("test", size=3)[0].image


@pytest.mark.parametrize("method", ["dexar", "legrad"])
def test_many_prompts_at_once_equal_one_at_a_time(loaded, image, method):
    together = explain_similarity(loaded, image, PROMPTS, method=method)
    assert together.tokens == tuple(PROMPTS)
    assert together.token_map_stack.shape == (len(PROMPTS), 4, 4)
    for index, prompt in enumerate(PROMPTS):
        alone = explain_similarity(loaded, image, prompt, method=method)
        np.testing.assert_allclose(
            together.token_map_stack[index], alone.token_map_stack[0], atol=1e-5
        )
        np.testing.assert_allclose(
            together.token_weights[index], alone.token_weights[0], rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(
            together.metadata["similarities"][index], alone.metadata["similarities"][0], atol=1e-6
        )


def test_explanation_records_prompts_weights_and_similarities(loaded, image):
    dexar = explain_similarity(loaded, image, PROMPTS, layers=2, head_agg="mean")
    legrad = explain_similarity(loaded, image, PROMPTS, method="legrad", layers="all")
    assert dexar.method == "dexar" and legrad.method == "legrad"
    assert dexar.layers == (1, 2) and legrad.layers == (0, 1, 2)
    assert dexar.options["head_agg"] == "mean"
    assert dexar.head_weights.shape == (3, 2, 4)
    assert np.all(dexar.token_weights >= 0)
    # legrad weighs no prompt: its weights are ones, the similarities stay in metadata
    np.testing.assert_array_equal(legrad.token_weights, np.ones(3))
    assert len(legrad.metadata["similarities"]) == 3
    np.testing.assert_allclose(legrad.metadata["similarities"], dexar.metadata["similarities"])
    assert dexar.adapter == "open_clip" and not dexar.generated
    for explanation in (dexar, legrad):
        assert explanation.units == "prompts" and explanation.answer == ""
        assert explanation.token_ids == (0, 1, 2)
    for explanation in (dexar, legrad):
        assert explanation.sequence_map.min() >= 0 and explanation.sequence_map.max() <= 1
        maps, sequence = explanation.upsample()
        assert maps.shape == (3, 64, 64) and sequence.shape == (64, 64)


@pytest.mark.parametrize("method", ROW_METHODS)
def test_every_row_method_of_the_catalog_runs_on_the_prompts(loaded, image, method):
    explanation = dexar_core.explain(loaded, image, PROMPTS[:2], method=method)
    assert explanation.method == method and explanation.units == "prompts"
    assert explanation.tokens == tuple(PROMPTS[:2])
    assert explanation.token_map_stack.shape == (2, 4, 4)
    assert np.isfinite(explanation.token_map_stack).all()
    assert explanation.sequence_map.max() <= 1
    assert len(explanation.metadata["similarities"]) == 2


def test_attn_grad_weighs_the_class_rows_attention_by_its_signed_gradient(loaded, image):
    """attn_grad on the pooled pass: ReLU(sum over heads of A * signed G), summed over layers."""
    from dexar_core.methods.attn_grad import AttnGradMethod
    from dexar_open_clip.similarity import similarity_gradients

    prepared = loaded.adapter.prepare(loaded, [image], PROMPTS[:2])
    layout = loaded.adapter.locator.locate(prepared)
    record, _ = similarity_gradients(loaded, prepared, layout, (0, 1, 2), raw_gradients=True)
    np.testing.assert_allclose(np.maximum(record.raw_gradients, 0), record.gradients, atol=1e-9)
    visual = layout.visual_positions
    product = record.attentions[..., visual] * record.raw_gradients[..., visual]
    expected = np.maximum(product.sum(axis=2), 0).sum(axis=1)
    result = AttnGradMethod().explain(record)
    np.testing.assert_allclose(result.token_relevance, expected, rtol=1e-6)
    assert np.abs(expected).max() > 0


@pytest.mark.parametrize(("method", "missing"), list(NOT_ON_PROMPTS.items()))
def test_methods_a_contrastive_model_cannot_run_say_why(loaded, image, method, missing):
    with pytest.raises(MethodError, match=missing) as raised:
        dexar_core.explain(loaded, image, PROMPTS[:2], method=method)
    assert "contrastive models" in str(raised.value) and "legrad" in str(raised.value)


def test_the_catalog_offers_no_method_left_untested():
    from dexar_plugins import default_catalog

    assert set(default_catalog().methods) == set(ROW_METHODS) | set(NOT_ON_PROMPTS)


def test_official_compat_is_refused_naming_the_final_norm(loaded, image):
    with pytest.raises(MethodError, match="final norm"):
        dexar_core.explain(loaded, image, PROMPTS[:1], official_compat=True)


def test_an_answer_is_refused_for_a_contrastive_model(loaded, image):
    with pytest.raises(InputError, match="contrastive"):
        dexar_core.explain(loaded, image, "a red circle", answer="red")


def test_explanation_saves_and_loads(loaded, image, tmp_path):
    explanation = explain_similarity(loaded, image, PROMPTS)
    sidecar = explanation.save(tmp_path / "similarity")
    assert json.loads(sidecar.read_text())["units"] == "prompts"
    assert dexar_core.Explanation.load(tmp_path / "similarity") == explanation


def test_a_file_saved_before_units_were_recorded_loads_with_its_units(loaded, image, tmp_path):
    explanation = explain_similarity(loaded, image, PROMPTS[:2])
    sidecar = explanation.save(tmp_path / "old")
    record = json.loads(sidecar.read_text())
    del record["units"]  # what a file written before the field existed holds
    sidecar.write_text(json.dumps(record))
    assert dexar_core.Explanation.load(sidecar) == explanation


@pytest.mark.parametrize(
    ("prompts", "error", "match"),
    [
        ([], DexarError, "at least one text"),
        (["a red circle", "  "], InputError, "is blank"),
        ([3], InputError, "must be text, got int"),
    ],
)
def test_bad_prompts_are_refused(loaded, image, prompts, error, match):
    with pytest.raises(error, match=match):
        explain_similarity(loaded, image, prompts)


def test_bad_method_options_and_images_are_refused(loaded, image):
    with pytest.raises(MethodError, match="no_such_option"):
        explain_similarity(loaded, image, PROMPTS, no_such_option=1)
    with pytest.raises(MethodError, match="head_agg"):
        explain_similarity(loaded, image, PROMPTS, method="legrad", head_agg="max")
    with pytest.raises(MethodError, match="last 7"):
        explain_similarity(loaded, image, PROMPTS, layers=7)
    with pytest.raises(InputError, match="one image per call"):
        explain_similarity(loaded, [image, image], PROMPTS)


@pytest.mark.parametrize(
    "vision_cfg",
    [
        {"layers": [1, 1, 1, 1], "width": 16, "image_size": 64, "head_width": 16},
        {"timm_model_name": "convnext_atto", "timm_model_pretrained": False, "image_size": 32},
    ],
    ids=["ResNet", "ConvNeXt"],
)
def test_convolutional_towers_are_refused_naming_the_supported_ones(vision_cfg, image):
    from open_clip.model import CLIP

    text_cfg = {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1}
    model = CLIP(embed_dim=16, vision_cfg=vision_cfg, text_cfg=text_cfg)
    with pytest.raises(UnsupportedModelError, match=r"VisionTransformer.*ViT-B-32"):
        wrap_model(model, tokenizer=None)
    fake = attrs.evolve(tiny_loaded(), model=model)
    with pytest.raises(UnsupportedModelError, match="VisionTransformer"):
        explain_similarity(fake, image, PROMPTS)


def test_load_reads_an_open_clip_folder_through_the_adapter_prefix(tmp_path, image):
    from dexar_open_clip.tiny import tiny_model_config

    model, tokenizer = build_tiny_open_clip(seed=5)
    config = tiny_model_config(
        vocab_size=len(tokenizer.tokenizer), eos_id=tokenizer.tokenizer.eos_token_id
    )
    save_checkpoint(tmp_path / "tiny", model, tokenizer, config)
    loaded = dexar_core.load(f"open_clip:{tmp_path / 'tiny'}")
    assert loaded.adapter.name == "open_clip"
    assert loaded.model_id == f"open_clip:{tmp_path / 'tiny'}"
    reference = explain_similarity(wrap_model(model, tokenizer), image, PROMPTS)
    again = explain_similarity(loaded, image, PROMPTS)
    np.testing.assert_allclose(again.token_map_stack, reference.token_map_stack, atol=1e-5)


def test_load_reads_an_architecture_with_a_weights_file(tmp_path, image):
    import open_clip
    from open_clip.model import CLIP

    name = "dexar-test-tiny-vit"
    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "patch_size": 8,
            "width": 16,
            "layers": 2,
            "head_width": 8,
        },
        "text_cfg": {
            "context_length": 12,
            "vocab_size": 49408,
            "width": 8,
            "heads": 2,
            "layers": 1,
        },
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{name}.json")
    torch.manual_seed(0)
    torch.save(CLIP(**config).state_dict(), tmp_path / "weights.pt")
    loaded = dexar_core.load(f"open_clip:{name}:{tmp_path / 'weights.pt'}")
    explanation = dexar_core.explain(loaded, image, ["a photo of a red circle", "a dog"])
    assert explanation.token_map_stack.shape == (2, 4, 4)
    with pytest.raises(CheckpointError, match="no weights"):
        dexar_core.load(f"open_clip:{name}")


@pytest.mark.parametrize(
    ("spec", "match"),
    [("no-such-arch", "not an open_clip model specification"), (".", "open_clip_config.json")],
)
def test_load_refuses_unknown_specifications(spec, match):
    with pytest.raises(CheckpointError, match=match):
        dexar_core.load(f"open_clip:{spec}")


@pytest.mark.parametrize("relevance", ["score_gradient", "weighted_gradient"])
def test_relevance_variants_run_where_the_pooled_output_reads_one_row(loaded, image, relevance):
    """Class-token pooling: the record's rows are the class row's, so A x G is exact."""
    explanation = explain_similarity(loaded, image, PROMPTS[:2], relevance=relevance)
    assert explanation.options["relevance"] == relevance
    assert np.isfinite(explanation.token_map_stack).all()
    assert explanation.token_map_stack.max() == 1


def test_relevance_variants_are_refused_on_a_patch_mean_pooled_tower(image):
    with pytest.raises(MethodError, match="product of means"):
        explain_similarity(
            tiny_loaded(seed=0, pool_type="avg"), image, PROMPTS[:1], relevance="score_gradient"
        )
