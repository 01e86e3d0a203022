"""Published layouts on plain objects: what the adapters' mends leave alone and what they
cannot mend, and the core's machinery that asks every adapter."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from dexar_core.errors import CheckpointError
from dexar_core.hf.published_layouts import (
    mend_published_layout,
    processor_folder,
    published_file,
    refuse_unreadable_layout,
)
from dexar_core.values import AdapterSpec
from dexar_plugins import default_catalog


def installed() -> list[AdapterSpec]:
    return [registration.spec for registration in default_catalog().adapters.values()]


def mend(path, model, processor):
    """What ``load`` does after the adapter serving ``model`` has loaded it."""
    spec = default_catalog().adapter(model.config.model_type)
    return mend_published_layout(str(path), spec, model, processor)


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
        mend(tmp_path, model, processor)


def test_a_siglip_tower_emits_no_extra_token(tmp_path):
    (tmp_path / "processor_config.json").write_text(json.dumps({"patch_size": 14}))
    processor = SimpleNamespace(vision_feature_select_strategy="full")
    notes = mend(tmp_path, SimpleNamespace(config=llava_config("siglip_vision_model")), processor)
    assert processor.num_additional_image_tokens == 0
    assert len(notes) == 1


def test_complete_layouts_and_other_models_are_left_alone(tmp_path):
    written = {"patch_size": 14, "num_additional_image_tokens": 1}
    (tmp_path / "processor_config.json").write_text(json.dumps(written))
    processor = SimpleNamespace(vision_feature_select_strategy="default", patch_size=14)
    llava = SimpleNamespace(config=llava_config("clip_vision_model"))
    assert mend(tmp_path, llava, processor) == ()
    for spec in installed():
        other = SimpleNamespace(config=SimpleNamespace(model_type="qwen2_vl"))
        assert mend_published_layout(str(tmp_path), spec, other, processor) == ()
    with processor_folder(
        str(tmp_path), {"Qwen2_5_VLImageProcessor": "Qwen2VLImageProcessor"}
    ) as folder:
        assert folder == str(tmp_path)
    assert published_file(str(tmp_path), "config.json") is None
    refuse_unreadable_layout(str(tmp_path), installed())


def test_a_broken_file_is_left_to_transformers_to_report(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    assert published_file(str(tmp_path), "config.json") is None
    refuse_unreadable_layout(str(tmp_path), installed())


def test_native_florence2_is_not_refused(tmp_path):
    native = {"model_type": "florence2", "vision_config": {"model_type": "florence_vision"}}
    (tmp_path / "config.json").write_text(json.dumps(native))
    refuse_unreadable_layout(str(tmp_path), installed())


def third_party(**layout_hooks) -> AdapterSpec:
    return AdapterSpec(name="myvlm", model_types=("myvlm",), factory=object, **layout_hooks)


def test_a_third_party_adapter_refuses_its_own_unreadable_format(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "myvlm", "v": 1}))
    seen = []

    def refuse(path, config):
        seen.append(config)
        return f"{path} is myvlm v1; convert it" if config["v"] == 1 else None

    with pytest.raises(CheckpointError, match="is myvlm v1; convert it"):
        refuse_unreadable_layout(str(tmp_path), [*installed(), third_party(refuse_layout=refuse)])
    assert seen == [{"model_type": "myvlm", "v": 1}]


def test_a_third_party_adapter_mends_its_own_layout_and_each_mend_is_logged(tmp_path, caplog):
    def fill(path, model, processor):
        processor.patch_size = 16
        return ["no patch_size; took 16"]

    processor = SimpleNamespace()
    model = SimpleNamespace(config=SimpleNamespace(model_type="myvlm"))
    with caplog.at_level(logging.INFO, logger="dexar"):
        notes = mend_published_layout(
            str(tmp_path), third_party(mend_layout=fill), model, processor
        )
    assert notes == ("no patch_size; took 16",)
    assert processor.patch_size == 16
    assert f"{tmp_path}: no patch_size; took 16." in caplog.text
    assert mend_published_layout(str(tmp_path), third_party(), model, processor) == ()
