"""What reaches the model from each visual token, for tests that move a spot in an image.

``visual_unit_inputs`` returns one feature vector per cell of the grids dexar reports:
the input of the first explained decoder layer at each visual position (LLaVA, Qwen-VL),
or, where the explained attention is a cross-attention over vision features outside the
prompt (mllama), those features,
or, where the visual tokens are learned queries and the maps are drawn over patches
(BLIP-2's projection), the vision tower's output at each patch. For Florence-2, an
encoder-decoder, the input of the first encoder layer.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import signature
from typing import Any

import numpy as np
import torch

from dexar_core.records import PreparedPrompt
from dexar_core.values import Grid
from dexar_plugins.testing.subject import ConformanceSubject


def _module_input(
    loaded: Any, module: Any, inputs: dict[str, Any], pick: Callable[..., torch.Tensor]
) -> torch.Tensor:
    """``pick(args, kwargs)`` of ``module``'s first call during one forward, in float32."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(pick(args, kwargs).detach().float()),
        with_kwargs=True,
    )
    # Only one module's input is read: where the model can skip the language head over
    # the whole prompt (a large vocabulary times hundreds of image tokens), it does.
    parameters = signature(loaded.model.forward).parameters
    keep = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
    try:
        with torch.no_grad():
            loaded.model(**{**inputs, **keep})
    finally:
        handle.remove()
    return seen[0]


def _first_layer_inputs(loaded: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """``[L, D]``: the hidden states entering the first layer that reads the prompt.

    That is the first decoder layer, or for an encoder-decoder (Florence-2) whose keys are
    the encoder's positions, the first encoder layer.
    """
    if loaded.model.config.is_encoder_decoder:
        layer = loaded.model.get_encoder().layers[0]
    else:
        layer = loaded.adapter.decoder_parts(loaded.model).layers[0]

    def hidden(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        return (args[0] if args else kwargs["hidden_states"])[0]

    return _module_input(loaded, layer, inputs, hidden)


def _patch_outputs(loaded: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """``[P, D]``: the vision tower's output at each patch, its CLS feature dropped."""
    with torch.no_grad():
        output = loaded.model.vision_model(pixel_values=inputs["pixel_values"])
    return output.last_hidden_state.detach().float()[0, 1:]


def visual_unit_inputs(loaded: Any, image: Any, prompt: str) -> tuple[np.ndarray, tuple[Grid, ...]]:
    """``([U, D], grids)``: one input vector per grid cell (in ``positions`` order), the grids.

    The grids are the ones the maps are drawn on (the projection's for BLIP-2).
    """
    adapter = loaded.adapter
    prepared: PreparedPrompt = adapter.prepare(loaded, [image], prompt)
    layout = adapter.locator.locate(prepared)
    if layout.projection is not None:
        features = _patch_outputs(loaded, prepared.inputs)
        grids = layout.projection.grids
    elif layout.sequence_length != prepared.inputs["input_ids"].shape[1]:
        # the keys are not prompt positions: a cross-attention's vision features (mllama)
        features = _cross_attention_keys(loaded, prepared.inputs)
        grids = layout.grids
    else:
        features = _first_layer_inputs(loaded, prepared.inputs)
        grids = layout.grids
    positions = np.concatenate([grid.positions for grid in grids])
    return features[torch.as_tensor(positions)].numpy(), grids


def t5_encoder_image_positions(subject: ConformanceSubject) -> np.ndarray:
    """T5 encoder positions whose input changes with the pixels: BLIP-2's query tokens."""
    return _encoder_image_positions(subject, subject.loaded.model.language_model.encoder.block[0])


def florence2_grid_positions(subject: ConformanceSubject) -> np.ndarray:
    """Florence-2's encoder positions the pixels reach, less the global pooled token.

    The first image token is the mean over the grid: it lies on no grid cell, so it is
    in no grid and not among the visual positions.
    """
    model = subject.loaded.model
    dependent = _encoder_image_positions(subject, model.get_encoder().layers[0])
    input_ids = subject.prepared.inputs["input_ids"][0].numpy()
    image_tokens = np.flatnonzero(input_ids == model.config.image_token_id)
    return np.setdiff1d(dependent, image_tokens[:1])


def _encoder_image_positions(subject: ConformanceSubject, block: torch.nn.Module) -> np.ndarray:
    """Positions whose input to the encoder ``block`` changes when noise is added to the pixels."""
    model, prepared = subject.loaded.model, subject.prepared
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


def _cross_attention_keys(loaded: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """``[K, D]``: the features the first explained cross-attention reads as keys (mllama)."""
    attention = loaded.adapter.decoder_parts(loaded.model).attentions[0]

    # [images x tiles, keys per tile, D] for the batch of one
    def keys(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        return kwargs["cross_attention_states"].flatten(0, 1)

    return _module_input(loaded, attention, inputs, keys)


def cross_attention_key_positions(subject: ConformanceSubject) -> np.ndarray:
    """mllama's vision keys that the pixels reach and the answer sees, on the image's cells.

    The keys are the vision features the cross-attention reads: per tile a CLS feature,
    then its patches. Left out are the CLS features (on no cell), the padding tiles (the
    cross-attention mask hides them from the answer) and the cells wholly in the
    processor's padding of the canvas (they show no pixel of the image).
    """
    from dexar_mllama.adapter import canvas_cells, grid_keys

    loaded, forced = subject.loaded, subject.forced
    pixels = subject.prepared.inputs["pixel_values"]
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    clean = _cross_attention_keys(loaded, forced.inputs)
    noisy = _cross_attention_keys(loaded, {**forced.inputs, "pixel_values": pixels + noise})
    changed = ((clean - noisy).abs().amax(dim=-1) > 1e-6 * clean.abs().max()).numpy()
    per_tile = int(loaded.model.model.vision_model.num_patches)
    visible = forced.inputs["cross_attention_mask"][0, -1].reshape(-1).numpy().astype(bool)
    on_image = np.zeros(changed.size, dtype=bool)
    for index, image in enumerate(subject.case.images):
        layout = canvas_cells(loaded.processor.image_processor, loaded.model.config, image.size)
        on_image[grid_keys(layout, index, pixels.shape[2])] = True
    return np.flatnonzero(changed & np.repeat(visible, per_tile) & on_image)
