"""The checks of the layout, the gradients and the maps, registered after the capture's.

The suite runs the checks in the order they are registered: those of the plugin's
declaration and of the capture (:mod:`dexar_plugins.testing.checks`) come first, so this
module imports that one before it registers its own. Each check takes a
:class:`~dexar_plugins.testing.subject.ConformanceSubject`, raises
:class:`~dexar_plugins.testing.subject.ConformanceFailure` naming itself when the adapter
is wrong, and leaves the model as it found it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

import dexar_plugins.testing.checks  # noqa: F401  (registers the earlier checks first)
from dexar_core.values import VisualLayout
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error
from dexar_plugins.testing.subject import ConformanceFailure, ConformanceSubject, conformance_check

GRADIENT_TOLERANCE = 1e-5
"""Largest error of the one-pass gradients against the naive reference, relative to the
reference's largest entry (``relative_error``), the engine's bound (docs/method.md §7)."""


def _fail(check: str, message: str) -> ConformanceFailure:
    return ConformanceFailure(check, message)


# --- the layout -----------------------------------------------------------------------


def image_dependent_positions(subject: ConformanceSubject) -> np.ndarray:
    """Prompt positions whose input to the first decoder layer changes with the pixels.

    These are the positions where the model puts what it saw: exactly the visual set V
    for decoder-only models and for models whose visual tokens are learned queries.
    An encoder-decoder explaining cross-attention overrides
    :meth:`AdapterConformance.image_dependent_positions` with the positions of the
    encoder outputs that are image features.
    """
    model, prepared = subject.loaded.model, subject.prepared
    parts = subject.adapter.decoder_parts(model)
    seen: list[torch.Tensor] = []

    def record(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        seen.append(hidden.detach().float()[0])

    generator = torch.Generator().manual_seed(0)
    perturbed = {}
    for key, value in prepared.inputs.items():
        if key.startswith("pixel_values") and torch.is_tensor(value) and value.is_floating_point():
            noise = torch.randn(value.shape, generator=generator).to(value.device, value.dtype)
            value = value + noise
        perturbed[key] = value
    handle = parts.layers[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**prepared.inputs)
            model(**perturbed)
    finally:
        handle.remove()
    first, second = seen[0], seen[-1]
    change = (first - second).abs().amax(dim=-1)
    scale = float(first.abs().max()) or 1.0
    return np.flatnonzero((change > 1e-6 * scale).cpu().numpy())


def _positions(values: Iterable[int], limit: int = 8) -> str:
    values = [int(v) for v in values]
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)})"


@conformance_check("the layout's grids name every image-dependent position once, and nothing else")
def check_grids_cover_visual_positions(subject: ConformanceSubject) -> None:
    """The visual set V is the union of the grids, and it is where the image enters."""
    name = "grids_cover_visual_positions"
    layout = subject.layout
    if not isinstance(layout, VisualLayout):
        raise _fail(name, f"locate() returned {type(layout).__name__}, not a VisualLayout.")
    prompt_length = int(subject.prepared.inputs["input_ids"].shape[-1])
    if subject.forced.key_length != prompt_length + len(subject.answer_ids):
        # keys that do not grow with the answer (a cross-attention's): the layout covers them
        prompt_length = subject.forced.key_length
    if layout.sequence_length != prompt_length:
        raise _fail(
            name,
            f"the layout covers {layout.sequence_length} keys but the prompt has "
            f"{prompt_length} tokens.",
        )
    covered = np.concatenate([grid.positions for grid in layout.grids])
    visual = layout.visual_positions
    if covered.size != np.unique(covered).size or not np.array_equal(np.sort(covered), visual):
        raise _fail(name, "the grids and visual_mask disagree: every V position is one grid cell.")
    if len(subject.case.images) != len({grid.image_index for grid in layout.grids}):
        raise _fail(
            name,
            f"{len(subject.case.images)} image(s) were given but the grids belong to images "
            f"{sorted({grid.image_index for grid in layout.grids})}.",
        )
    find_dependent = subject.dependent_positions or image_dependent_positions
    dependent = np.asarray(find_dependent(subject), dtype=np.int64)
    # Either way round, a position in one set and not the other is the failure.
    mismatches = (
        (
            np.setdiff1d(dependent, visual),
            "the image reaches key positions {} that no grid cell names: the grids miss "
            "visual positions (a row, a tile, or a count off by one).",
        ),
        (
            np.setdiff1d(visual, dependent),
            "grid cells name positions {} whose input does not depend on the image: the "
            "grids name text or template tokens.",
        ),
    )
    for positions, problem in mismatches:
        if positions.size:
            raise _fail(name, problem.format(_positions(positions)))


# --- the gradients and the maps ---------------------------------------------------------


@conformance_check("the one-pass gradients equal the naive per-token, per-layer reference")
def check_gradients_equal_reference(subject: ConformanceSubject) -> None:
    """The engine's G equals ``naive_attention_gradients`` to a relative 1e-5."""
    from dexar_core.engine import attention_gradients

    name, loaded, forced = "gradients_equal_reference", subject.loaded, subject.forced
    layout = subject.adapter.layout_for_answer(loaded, subject.prepared, forced, subject.layout)
    record = attention_gradients(
        loaded, forced, layout.with_length(forced.key_length), subject.layers
    )
    reference = naive_attention_gradients(
        loaded, subject.prepared, list(subject.answer_ids), subject.layers
    )
    if record.gradients.shape != reference.shape:
        raise _fail(
            name,
            f"the engine's gradients have shape {record.gradients.shape} but the reference "
            f"{reference.shape} ([tokens, layers, heads, keys]).",
        )
    if not np.abs(reference).max() > 0:
        raise _fail(name, "the reference gradients are all zero; the case explains nothing.")
    error = relative_error(record.gradients, reference)
    if not error <= GRADIENT_TOLERANCE:
        worst = np.unravel_index(np.abs(record.gradients - reference).argmax(), reference.shape)
        raise _fail(
            name,
            f"relative error {error:.2e} against the naive reference (at most "
            f"{GRADIENT_TOLERANCE:g}); worst at token {worst[0]}, layer "
            f"{subject.layers[worst[1]]}, head {worst[2]}, key {worst[3]}. Check the "
            "logit-lens targets (final norm, head, soft-capping) and the query rows.",
        )


@conformance_check(
    "an explanation's maps are finite, in [0, 1], shaped like the grids, deterministic"
)
def check_heatmap_invariants(subject: ConformanceSubject) -> None:
    """``explain()`` end to end, twice: the maps' range, shape, finiteness and determinism."""
    from dexar_core.api import explain

    name, case = "heatmap_invariants", subject.case

    def run() -> Any:
        return explain(
            case.loaded,
            list(case.images),
            case.prompt,
            answer=case.answer,
            max_new_tokens=case.max_new_tokens,
            layers=list(subject.layers),
        )

    first, second = run(), run()
    tokens = len(first.token_ids)
    if tokens != len(subject.answer_ids):
        raise _fail(name, f"{tokens} tokens explained; the answer has {len(subject.answer_ids)}.")
    for grid, token_maps, sequence_map in zip(first.grids, first.token_maps, first.sequence_maps):
        for label, maps, shape in (
            ("token maps", token_maps, (tokens, *grid.shape)),
            ("sequence map", sequence_map, grid.shape),
        ):
            where = f"grid {grid.name!r}: {label}"
            if maps.shape != shape:
                raise _fail(name, f"{where} have shape {maps.shape}, expected {shape}.")
            if not np.isfinite(maps).all():
                raise _fail(name, f"{where} hold NaN or infinite values.")
            if maps.min() < 0 or maps.max() > 1:
                raise _fail(name, f"{where} range over [{maps.min()}, {maps.max()}], not [0, 1].")
    for label, values in (
        ("token_weights", first.token_weights),
        ("head_weights", first.head_weights),
    ):
        if not np.isfinite(values).all():
            raise _fail(name, f"{label} hold NaN or infinite values.")
    # Exact on purpose: the same code on the same inputs in one process adds in the same
    # order, so any difference is state that leaks from one explanation into the next.
    same = (
        first.token_ids == second.token_ids
        and all(np.array_equal(a, b) for a, b in zip(first.token_maps, second.token_maps))
        and all(np.array_equal(a, b) for a, b in zip(first.sequence_maps, second.sequence_maps))
        and np.array_equal(first.token_weights, second.token_weights)
    )
    if not same:
        raise _fail(name, "two explanations of the same input on CPU differ: not deterministic.")
