"""Baselines on an encoder-decoder: answer-row methods run, full-sequence ones refuse."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dexar_core.api import explain
from dexar_core.errors import MethodError
from dexar_core.records import LoadedModel
from dexar_florence2.adapter import Florence2Adapter
from dexar_florence2.tiny import build_tiny_florence2


@pytest.fixture(scope="module")
def florence2():
    model, processor = build_tiny_florence2(seed=0)
    return LoadedModel(model=model, processor=processor, adapter=Florence2Adapter(), model_id="t")


@pytest.fixture(scope="module")
def image():
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("method", ["attention", "attn_grad", "legrad"])
def test_answer_row_baselines_run_on_decoder_cross_attention(florence2, image, method):
    explanation = explain(florence2, image, "<CAPTION>", answer="a red circle", method=method)
    assert np.isfinite(explanation.token_map_stack).all()


@pytest.mark.parametrize("method", ["rollout", "gae", "tam"])
def test_full_sequence_baselines_refuse_cross_attention(florence2, image, method):
    with pytest.raises(MethodError, match="cross-attention"):
        explain(florence2, image, "<CAPTION>", answer="a red circle", method=method)
