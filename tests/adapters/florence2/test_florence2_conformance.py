"""The built-in Florence-2 adapter passes the conformance suite adapter authors run."""

from __future__ import annotations

import numpy as np
import torch

from dexar_plugins.testing.conformance import AdapterConformance, ConformanceSubject


def encoder_image_positions(subject: ConformanceSubject) -> np.ndarray:
    """Encoder positions whose input changes with the pixels, less the global pooled token.

    For an encoder-decoder the image enters the explained keys through the encoder's
    input; Florence-2's first image token is the mean of the grid, on no grid cell.
    """
    model, prepared = subject.loaded.model, subject.prepared
    encoder_layer = model.model.language_model.encoder.layers[0]
    seen: list[torch.Tensor] = []
    handle = encoder_layer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            (args[0] if args else kwargs["hidden_states"]).detach()[0]
        ),
        with_kwargs=True,
    )
    pixels = prepared.inputs["pixel_values"]
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            model(**prepared.inputs)
            model(**{**prepared.inputs, "pixel_values": pixels + noise})
    finally:
        handle.remove()
    change = (seen[0] - seen[-1]).abs().amax(dim=-1)
    dependent = np.flatnonzero((change > 1e-6 * float(seen[0].abs().max())).numpy())
    image_tokens = np.flatnonzero(
        prepared.inputs["input_ids"][0].numpy() == model.config.image_token_id
    )
    return np.setdiff1d(dependent, image_tokens[:1])


class TestFlorence2Conformance(AdapterConformance):
    adapter_name = "florence2"

    def image_dependent_positions(self, subject: ConformanceSubject) -> np.ndarray:
        return encoder_image_positions(subject)
