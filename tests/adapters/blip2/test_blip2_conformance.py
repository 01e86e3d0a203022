"""The built-in BLIP-2 adapter passes the conformance suite, with OPT and with Flan-T5."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from dexar_blip2.adapter import Blip2Adapter
from dexar_blip2.tiny import build_tiny_blip2
from dexar_core.records import LoadedModel
from dexar_plugins.testing.conformance import (
    AdapterConformance,
    ConformanceCase,
    ConformanceSubject,
)


class TestBlip2OptConformance(AdapterConformance):
    adapter_name = "blip2"


def encoder_image_positions(subject: ConformanceSubject) -> np.ndarray:
    """T5 encoder positions whose input changes with the pixels: the query tokens."""
    model, prepared = subject.loaded.model, subject.prepared
    block = model.language_model.encoder.block[0]
    seen: list[torch.Tensor] = []
    handle = block.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            (args[0] if args else kwargs["hidden_states"]).detach()[0]
        ),
        with_kwargs=True,
    )
    pixels = prepared.inputs["pixel_values"]
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            model(**subject.forced.inputs)
            model(**{**subject.forced.inputs, "pixel_values": pixels + noise})
    finally:
        handle.remove()
    change = (seen[0] - seen[-1]).abs().amax(dim=-1)
    return np.flatnonzero((change > 1e-6 * float(seen[0].abs().max())).numpy())


class TestBlip2T5Conformance(AdapterConformance):
    adapter_name = "blip2"

    def build_case(self) -> ConformanceCase:
        model, processor = build_tiny_blip2(
            seed=1, language_model="t5", hidden_size=64, num_query_tokens=8
        )
        pixels = np.random.default_rng(1).integers(0, 256, (56, 40, 3), dtype=np.uint8)
        return ConformanceCase(
            loaded=LoadedModel(
                model=model, processor=processor, adapter=Blip2Adapter(), model_id="tiny-t5"
            ),
            images=Image.fromarray(pixels),
            prompt="where is the red shape?",
            answer="top left",
        )

    def image_dependent_positions(self, subject: ConformanceSubject) -> np.ndarray:
        return encoder_image_positions(subject)
