"""PaliGemma 2 alternates sliding-window and full layers: each masks with its own keys."""

from __future__ import annotations

import numpy as np
from dexar_paligemma.adapter import PaliGemmaAdapter
from dexar_paligemma.tiny import build_tiny_paligemma
from PIL import Image

from dexar_core.engine import attention_gradients
from dexar_core.records import LoadedModel

WINDOW = 20


def test_gradients_of_each_layer_stop_at_that_layers_window():
    model, processor = build_tiny_paligemma(seed=2, gemma2=True, sliding_window=WINDOW)
    assert model.config.text_config.layer_types == ["sliding_attention", "full_attention"]
    loaded = LoadedModel(model=model, processor=processor, adapter=PaliGemmaAdapter(), model_id="t")
    adapter = loaded.adapter
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), np.uint8))
    prepared = adapter.prepare(loaded, [image], "what color is the circle?")
    answer = adapter.encode_answer(loaded, prepared, "a red circle")
    forced = adapter.teacher_forced(loaded, prepared, answer)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    record = attention_gradients(loaded, forced, layout, (0, 1))

    last = len(answer) - 1
    hidden = np.arange(forced.key_length) <= forced.query_rows[last] - WINDOW
    assert hidden.any(), "the case must outgrow the window"
    sliding, full = record.gradients[last, 0], record.gradients[last, 1]
    assert not sliding[:, hidden].any()
    assert full[:, hidden].any()
    assert record.visible[last, hidden].all()  # the full layer sees them
