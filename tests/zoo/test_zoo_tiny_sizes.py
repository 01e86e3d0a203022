"""The tiny-model kit's sizes: defaults, the caller's arguments, checks, config fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dexar_core.errors import InputError
from dexar_core.zoo.tiny_models import TILE_SIZES, TinySizes, special_token_fields, tiny_tokenizer
from dexar_gemma3.tiny import SIZES as GEMMA3_SIZES
from dexar_gemma3.tiny import build_tiny_gemma3
from dexar_idefics3.tiny import SIZES as IDEFICS3_SIZES
from dexar_idefics3.tiny import build_tiny_idefics3
from dexar_llava.tiny import SIZES as LLAVA_SIZES
from dexar_llava.tiny import build_tiny_llava
from dexar_llava.tiny_onevision import SIZES as ONEVISION_SIZES
from dexar_llava.tiny_onevision import build_tiny_llava_onevision
from dexar_mistral3.tiny import SIZES as MISTRAL3_SIZES
from dexar_mistral3.tiny import build_tiny_mistral3

SIZES = TinySizes(image_size=32, patch_size=8, hidden_size=64)


def test_given_takes_the_callers_sizes_over_the_defaults() -> None:
    sizes = SIZES.given("build_tiny_x", {"hidden_size": 32, "kv_heads": 2})
    assert (sizes.hidden_size, sizes.key_value_heads, sizes.image_size) == (32, 2, 32)
    assert sizes.intermediate_size == 64
    assert SIZES.key_value_heads == SIZES.heads


def test_given_refuses_an_argument_the_builder_does_not_take() -> None:
    with pytest.raises(TypeError, match=r"build_tiny_x\(\) got an unexpected keyword argument 'x'"):
        SIZES.given("build_tiny_x", {"x": 1})
    with pytest.raises(TypeError, match="'patch_size'"):
        TILE_SIZES.evolve(arguments=("tile_size",)).given("build_tiny_x", {"patch_size": 4})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"hidden_size": 0},
            "build_tiny_x: expected hidden_size to be a positive integer, found 0",
        ),
        ({"text_layers": 0}, "expected text_layers to be a positive integer, found 0"),
        ({"heads": 3}, "expected heads to divide hidden_size, found hidden_size=64, heads=3"),
        ({"kv_heads": 3}, "expected kv_heads to divide heads, found heads=4, kv_heads=3"),
        ({"patch_size": 7}, "expected patch_size to divide image_size, found image_size=32"),
    ],
)
def test_given_names_the_wrong_size_by_the_builders_argument(options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        SIZES.given("build_tiny_x", options)


def test_a_tile_or_layers_argument_sets_the_image_size_or_both_depths() -> None:
    tiles = TILE_SIZES.given("build_tiny_x", {"tile_size": 48})
    assert tiles.image_size == 48 and tiles.image_argument == "tile_size"
    with pytest.raises(
        InputError, match="expected patch_size to divide tile_size, found tile_size=36"
    ):
        TILE_SIZES.given("build_tiny_x", {"tile_size": 36})
    paired = SIZES.evolve(arguments=("layers",)).given("build_tiny_x", {"layers": 3})
    assert (paired.text_layers, paired.vision_layers) == (3, 3)
    with pytest.raises(InputError, match="expected layers to be a positive integer, found 0"):
        SIZES.evolve(arguments=("layers",)).given("build_tiny_x", {"layers": 0})


def test_family_sizes_are_checked_with_the_common_ones() -> None:
    with pytest.raises(InputError, match="expected max_tiles to be a positive integer, found 0"):
        SIZES.given("build_tiny_x", {}, max_tiles=0)


def test_key_value_heads_default_to_one_per_group() -> None:
    assert TILE_SIZES.key_value_heads == 2
    assert TILE_SIZES.given("build_tiny_x", {"heads": 2, "hidden_size": 32}).key_value_heads == 1


def test_the_config_fields_are_the_sizes() -> None:
    tokenizer = tiny_tokenizer(None, "user")
    sizes = SIZES.evolve(text_layers=3, vision_layers=1, kv_heads=2, mlp_ratio=4)
    assert sizes.vision_tower_fields() == {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    fields = sizes.language_model_fields(tokenizer, max_positions=100, head_dim=8)
    assert fields == {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 100,
        "head_dim": 8,
    }
    assert special_token_fields(tokenizer) == {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    assert "user" in tokenizer.get_vocab() and "circle" in tokenizer.get_vocab()


def _llava_parts(model: Any) -> tuple[Any, Any]:
    return model.config.vision_config, model.config.text_config


@pytest.mark.parametrize(
    ("build", "sizes"),
    [
        (build_tiny_llava, LLAVA_SIZES),
        (build_tiny_llava_onevision, ONEVISION_SIZES),
        (build_tiny_mistral3, MISTRAL3_SIZES),
        (build_tiny_gemma3, GEMMA3_SIZES),
        (build_tiny_idefics3, IDEFICS3_SIZES),
    ],
    ids=["llava", "llava_onevision", "mistral3", "gemma3", "idefics3"],
)
def test_each_builders_default_model_has_its_defaults_sizes(
    build: Callable[..., Any], sizes: TinySizes
) -> None:
    model, _ = build(seed=0)
    vision, text = _llava_parts(model)
    tower = {name: getattr(vision, name) for name in sizes.vision_tower_fields()}
    assert tower == sizes.vision_tower_fields()
    assert (text.hidden_size, text.intermediate_size) == (
        sizes.hidden_size,
        sizes.intermediate_size,
    )
    assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        sizes.text_layers,
        sizes.heads,
        sizes.key_value_heads,
    )
