"""Each mirror of a published checkpoint loads as published and explains end to end.

The mirrors (tests/support/mirrors.py, fixtures in tests/mirrors/fixtures) copy the
published config, processor and tokenizer settings, special-token ids, chat template,
weight-key layout, sharding and stored dtype; only depth and width are scaled down.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mirrors import MIRRORS, load_fixture, ranged_tokens
from PIL import Image
from safetensors import safe_open

from dexar_core.cli.main import main
from dexar_plugins.manager import PluginSettings, build_catalog
from dexar_plugins.testing.conformance import ConformanceCase, ConformanceSubject, run_checks

PROMPT = "what is in the image?"
ANSWER = "a red circle"
FREE_RUN_TOKENS = {"florence-2-base": 4}
"""New tokens of the free run where 2 leave no word: Florence-2's published generation
config forces ``<s>`` first and ``</s>`` at the length limit."""


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    )


@pytest.mark.parametrize("name", MIRRORS)
def test_weights_are_sharded_in_the_stored_dtype_under_the_published_keys(name, mirror_folder):
    import torch
    import transformers

    fixture = load_fixture(name)
    folder = mirror_folder(name)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) == fixture["weights"]["shards"]
    new_prefixes = tuple(fixture["weights"]["key_prefixes"])
    for shard in shards:
        with safe_open(folder / shard, "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is no mapping)
                assert weights.get_tensor(key).dtype == getattr(torch, fixture["weights"]["dtype"])
                assert not key.startswith(new_prefixes), f"{key} is in transformers 5's layout"
    # transformers reads the old layout through its own key conversion: nothing is left
    # randomly initialised and nothing is ignored
    model_class = getattr(transformers, fixture["model_class"])
    _, info = model_class.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


@pytest.mark.parametrize("name", MIRRORS)
def test_special_tokens_keep_their_published_ids(name, loaded_mirror):
    fixture = load_fixture(name)
    loaded = loaded_mirror(name)
    tokenizer = loaded.tokenizer
    for token, token_id in fixture["tokenizer"]["special_tokens"].items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
    for token, token_id in ranged_tokens(fixture["tokenizer"]).items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
    published = fixture["files"]["config.json"]
    image_id = published.get("image_token_index", published.get("image_token_id"))
    assert loaded.model.config.image_token_id == image_id
    assert loaded.adapter.name == fixture["adapter"]


@pytest.mark.slow
@pytest.mark.parametrize("name", MIRRORS)
def test_mirror_passes_the_conformance_suite(name, loaded_mirror):
    loaded = loaded_mirror(name)
    catalog = build_catalog(PluginSettings())
    spec = catalog.adapter(loaded.adapter.name)

    def case() -> ConformanceCase:
        fresh = type(loaded.adapter)()
        if hasattr(fresh, "model_class"):
            fresh.model_class = loaded.adapter.model_class
        return ConformanceCase(
            loaded=loaded.__class__(
                model=loaded.model, processor=loaded.processor, adapter=fresh, model_id=name
            ),
            images=noise_image(96, 72),
            prompt=PROMPT,
            answer=ANSWER,
            layers=(0, 1),
        )

    dependent = None
    if name == "blip2-flan-t5-xl":
        from mirror_inputs import t5_encoder_image_positions

        dependent = t5_encoder_image_positions
    elif name == "florence-2-base":
        from mirror_inputs import florence2_grid_positions

        dependent = florence2_grid_positions
    elif name == "llama-3.2-11b-vision-instruct":
        from mirror_inputs import cross_attention_key_positions

        dependent = cross_attention_key_positions
    subject = ConformanceSubject(spec, case, catalog, dependent_positions=dependent)
    failed = [result for result in run_checks(subject) if result.status != "passed"]
    assert not failed, failed


@pytest.mark.parametrize("name", MIRRORS)
def test_dexar_explain_runs_end_to_end_free_and_given(name, mirror_folder, tmp_path, capsys):
    image = tmp_path / "frame.png"
    noise_image(160, 90).save(image)
    common = ["explain", "--model", str(mirror_folder(name)), "--image", str(image)]
    common += ["--prompt", PROMPT, "--dtype", "float32"]
    given = main([*common, "--answer", ANSWER, "--out", str(tmp_path / "given")])
    assert given == 0, capsys.readouterr().err
    tokens = str(FREE_RUN_TOKENS.get(name, 2))
    free = main([*common, "--max-new-tokens", tokens, "--out", str(tmp_path / "free")])
    assert free == 0, capsys.readouterr().err
    for run in ("given", "free"):
        assert list((tmp_path / run).glob("*.npz")), f"{run} run wrote no explanation"
