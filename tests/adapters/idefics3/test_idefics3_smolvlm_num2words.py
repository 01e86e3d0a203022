"""SmolVLM's processor will not start without ``num2words``: loading says so and how to fix it."""

from __future__ import annotations

import pytest
from mirrors import build_mirror

from dexar_core.api import load
from dexar_core.errors import InputError


@pytest.mark.slow
def test_loading_smolvlm_without_num2words_names_the_package(tmp_path, monkeypatch):
    from transformers.models.smolvlm import processing_smolvlm

    folder = build_mirror("smolvlm2-2.2b-instruct", tmp_path / "smolvlm2")
    # as where the package is not installed (pyproject.toml depends on it)
    monkeypatch.setattr(processing_smolvlm, "num2words", None)
    with pytest.raises(InputError, match=r"not installed: Package `num2words` is required"):
        load(str(folder), dtype="float32")
