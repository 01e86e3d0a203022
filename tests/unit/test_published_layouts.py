"""published_layouts on plain objects: what it leaves alone and what it cannot mend."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from dexar_core.errors import CheckpointError
from dexar_core.hf.published_layouts import (
    mend_loaded,
    processor_folder,
    published_file,
    refuse_unreadable_format,
)


def llava_config(tower: str) -> SimpleNamespace:
    return SimpleNamespace(
        model_type="llava",
        vision_feature_select_strategy="default",
        vision_config=SimpleNamespace(model_type=tower, patch_size=14),
    )


def test_a_llava_tower_of_unknown_kind_without_the_extra_token_count_is_refused(tmp_path):
    (tmp_path / "processor_config.json").write_text(json.dumps({"patch_size": 14}))
    processor = SimpleNamespace(vision_feature_select_strategy="default")
    model = SimpleNamespace(config=llava_config("dinov2"))
    with pytest.raises(CheckpointError, match=r"num_additional_image_tokens .* 'dinov2'"):
        mend_loaded(str(tmp_path), model, processor)


def test_a_siglip_tower_emits_no_extra_token(tmp_path):
    (tmp_path / "processor_config.json").write_text(json.dumps({"patch_size": 14}))
    processor = SimpleNamespace(vision_feature_select_strategy="full")
    notes = mend_loaded(
        str(tmp_path), SimpleNamespace(config=llava_config("siglip_vision_model")), processor
    )
    assert processor.num_additional_image_tokens == 0
    assert len(notes) == 1


def test_complete_layouts_and_other_models_are_left_alone(tmp_path):
    written = {"patch_size": 14, "num_additional_image_tokens": 1}
    (tmp_path / "processor_config.json").write_text(json.dumps(written))
    processor = SimpleNamespace(vision_feature_select_strategy="default", patch_size=14)
    assert (
        mend_loaded(
            str(tmp_path), SimpleNamespace(config=llava_config("clip_vision_model")), processor
        )
        == ()
    )
    other = SimpleNamespace(config=SimpleNamespace(model_type="qwen2_vl"))
    assert mend_loaded(str(tmp_path), other, processor) == ()
    with processor_folder(str(tmp_path)) as folder:
        assert folder == str(tmp_path)
    assert published_file(str(tmp_path), "config.json") is None
    refuse_unreadable_format(str(tmp_path))


def test_a_broken_file_is_left_to_transformers_to_report(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    assert published_file(str(tmp_path), "config.json") is None
    refuse_unreadable_format(str(tmp_path))


def test_native_florence2_is_not_refused(tmp_path):
    native = {"model_type": "florence2", "vision_config": {"model_type": "florence_vision"}}
    (tmp_path / "config.json").write_text(json.dumps(native))
    refuse_unreadable_format(str(tmp_path))
