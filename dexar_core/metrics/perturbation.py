"""Normalised-perplexity perturbation tests, insertion and deletion curves (docs/method.md §11).

A map ranks the visual patches. For each removal fraction r, the top-r (positive test,
also the deletion curve) or bottom-r (negative test) patches are replaced in pixel space
of the original image, through each grid's pixel box, by the processor's normalisation
mean (or a blurred copy of the image); the same answer is teacher-forced on the
perturbed image and its perplexity divided by the clean one: ``nPPL_r = PPL_r / PPL_0``.
The insertion curve starts from the fully replaced image and puts the top-r patches
back. AUCs are trapezoids over r. Beside the AUC, the log-ratio curve
``ln(PPL_r / PPL_0)`` (the mean per-token NLL increase, in nats) and its trapezoid area,
which a few items whose perplexity explodes cannot dominate (:func:`curve_numbers`). One
teacher-forced forward per level, several levels per batch.

Only what the model saw is perturbed and ranked (:mod:`dexar_core.seen`): a cell's box is
replaced only where it lies on the part of the image the processor kept, a blur is taken
of that part alone (so a cropped-off band cannot bleed into it), and a cell holding no
seen pixel (off the image, or narrower than a pixel) is not ranked, so r counts only
patches whose removal removes something. Pixels the processor crops away therefore
change no perturbation score.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from PIL import Image, ImageFilter

from dexar_core.errors import InputError
from dexar_core.records import LoadedModel
from dexar_core.seen import grid_box, seen_mask
from dexar_core.values import Grid

FRACTIONS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(10))
"""The removal fractions r in {0, 0.1, ..., 0.9}."""

ORDERS = ("positive", "negative", "insertion")
"""positive: remove the most relevant first (= deletion); negative: the least relevant
first; insertion: start from the replaced image and restore the most relevant first."""

REPLACEMENTS = ("mean", "blur")

PERPLEXITY_BATCH = 16
"""Image sets per teacher-forced forward (benchmarks/bench_perturbation.py measured it)."""


@attrs.frozen(kw_only=True)
class PerturbationCurve:
    """Normalised perplexity of one answer as patches are removed (or inserted).

    Attributes:
        order: ``"positive"``, ``"negative"`` or ``"insertion"``.
        replacement: ``"mean"`` or ``"blur"``.
        fractions: the fractions r of patches removed (inserted).
        perplexities: PPL_r of the answer at each fraction.
        clean_perplexity: PPL_0, on the unperturbed image.
        normalised: ``PPL_r / PPL_0`` (exactly 1 at r = 0 for removal orders).
        auc: trapezoid area under ``normalised`` over ``fractions``.
        log_ratio: ``ln(PPL_r / PPL_0)``, the mean per-token NLL increase in nats
            (exactly 0 at r = 0 for removal orders).
        log_ratio_area: trapezoid area under ``log_ratio`` over ``fractions``.
    """

    order: str
    replacement: str
    fractions: tuple[float, ...]
    perplexities: tuple[float, ...]
    clean_perplexity: float
    normalised: tuple[float, ...]
    auc: float
    log_ratio: tuple[float, ...]
    log_ratio_area: float


def trapezoid_auc(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Area under ``values`` over ``fractions`` by the trapezoid rule."""
    x, y = np.asarray(fractions, float), np.asarray(values, float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def curve_numbers(
    fractions: Sequence[float], scores: Sequence[float], clean_score: float
) -> dict[str, Any]:
    """A curve's normalised scores, their AUC, log-ratios and log-ratio area (docs/method.md §11).

    ``normalised_r = score_r / score_0`` and ``log_ratio_r = ln(score_r / score_0)``, each
    integrated over ``fractions`` by :func:`trapezoid_auc`. For a perplexity the log-ratio
    is the mean per-token NLL on the perturbed image minus that on the clean one, so an
    item whose perplexity grows a million-fold adds ``ln(1e6) = 13.8`` nats to a level, not
    a million. Both are NaN where ``score_0 <= 0``; a log-ratio is NaN where ``score_r <= 0``.

    Returns:
        ``{"normalised", "auc", "log_ratio", "log_ratio_area"}``, as the curve records
        hold them.
    """
    values = np.asarray(scores, dtype=np.float64)
    ratios = values / clean_score if clean_score > 0 else np.full(values.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(ratios)
    logs[~(ratios > 0)] = np.nan  # ln 0 = -inf and ln of a negative are no ratio
    normalised: list[float] = ratios.tolist()
    log_ratio: list[float] = logs.tolist()
    return {
        "normalised": tuple(normalised),
        "auc": trapezoid_auc(fractions, normalised),
        "log_ratio": tuple(log_ratio),
        "log_ratio_area": trapezoid_auc(fractions, log_ratio),
    }


def patch_boxes(grid: Grid) -> np.ndarray:
    """``[h*w, 4]`` integer ``(left, top, right, bottom)`` pixel boxes of a grid's cells.

    Row-major like ``grid.positions``; edges are rounded so neighbouring cells tile the
    grid's pixel box without gaps or overlaps.
    """
    left, top, right, bottom = grid.pixel_box
    xs = np.rint(np.linspace(left, right, grid.width + 1)).astype(int)
    ys = np.rint(np.linspace(top, bottom, grid.height + 1)).astype(int)
    rows, cols = np.divmod(np.arange(grid.height * grid.width), grid.width)
    return np.stack([xs[cols], ys[rows], xs[cols + 1], ys[rows + 1]], axis=1)


def mask_to_grid(mask: Any, grid: Grid) -> np.ndarray:
    """``[h, w]`` fraction of each grid cell's pixel box inside a boolean pixel mask.

    The oracle map of a perturbation test: ranks the patches by how much of the true
    object they hold. ``mask`` is ``(height, width)`` over the original image.
    """
    pixels = np.asarray(mask, dtype=bool)
    if pixels.ndim != 2:
        raise InputError(f"mask_to_grid: expected a 2-D mask, got shape {pixels.shape}.")
    height, width = pixels.shape
    cover = np.zeros(grid.height * grid.width, dtype=np.float32)
    for cell, (left, top, right, bottom) in enumerate(patch_boxes(grid)):
        box = pixels[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
        cover[cell] = box.mean() if box.size else 0.0
    return cover.reshape(grid.shape)


def replacement_color(processor: Any) -> tuple[int, int, int]:
    """The processor's normalisation mean as an RGB colour (what normalises to zero)."""
    image_processor = getattr(processor, "image_processor", processor)
    mean = getattr(image_processor, "image_mean", None)
    if mean is None:
        raise InputError(
            f"{type(image_processor).__name__} has no image_mean; perturb with "
            "replacement='blur' instead of 'mean'."
        )
    values = np.broadcast_to(np.asarray(mean, float), (3,))
    return tuple(int(v) for v in np.clip(np.rint(values * 255), 0, 255))  # type: ignore[return-value]


def patch_ranking(maps: Sequence[Any], grids: Sequence[Grid]) -> list[tuple[int, int]]:
    """All ``(grid index, cell index)`` pairs, most relevant first (ties: grid, cell order).

    Args:
        maps: one ``[h, w]`` relevance map per grid (e.g. ``Explanation.sequence_maps``).
        grids: the grids the maps are drawn on.
    """
    if len(maps) != len(grids):
        raise InputError(
            f"perturbation: got {len(maps)} maps for {len(grids)} grids; give one map per grid."
        )
    scores: list[np.ndarray] = []
    cells: list[tuple[int, int]] = []
    for index, (map2d, grid) in enumerate(zip(maps, grids)):
        values = np.asarray(map2d, dtype=np.float64)
        if values.shape != grid.shape:
            raise InputError(
                f"perturbation: map {index} has shape {values.shape} but grid {grid.name!r} is "
                f"{grid.shape}; rank with the token-grid maps (Explanation.sequence_maps), "
                "not upsampled ones."
            )
        if not np.isfinite(values).all():
            raise InputError(f"perturbation: map {index} holds NaN or infinite values.")
        scores.append(values.reshape(-1))
        cells.extend((index, cell) for cell in range(values.size))
    order = np.argsort(-np.concatenate(scores), kind="stable")
    return [cells[k] for k in order]


def perturbed_images(
    images: Sequence[Image.Image],
    grids: Sequence[Grid],
    cells: Sequence[tuple[int, int]],
    *,
    replacement: str = "mean",
    color: tuple[int, int, int] = (0, 0, 0),
    blur_radius: float = 8.0,
) -> list[Image.Image]:
    """Copies of ``images`` with the seen pixels of the boxes of ``cells`` replaced.

    A pixel the model did not see (:func:`dexar_core.seen.seen_mask`) is never changed,
    and never reaches a replacement: the blur of a grid's cells is a blur of the part of
    the image that grid covers, cropped off from the rest.

    Args:
        images: the original images (``grid.image_index`` indexes them).
        grids: the layout's grids.
        cells: ``(grid index, cell index)`` pairs to replace.
        replacement: ``"mean"`` (fill with ``color``) or ``"blur"`` (a Gaussian-blurred
            copy of what the grid saw, radius ``blur_radius`` pixels).
        color: the fill of ``"mean"``.
        blur_radius: the blur of ``"blur"``.
    """
    if replacement not in REPLACEMENTS:
        raise InputError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}.")
    clean = [image.convert("RGB") for image in images]
    out = [image.copy() for image in clean]
    boxes = [patch_boxes(grid) for grid in grids]
    seen: dict[int, np.ndarray] = {}
    blurred: dict[int, Image.Image] = {}
    for grid_index, cell in cells:
        image_index = grids[grid_index].image_index
        box = _on_image(boxes[grid_index][cell], clean[image_index].size)
        if box is None:
            continue
        if image_index not in seen:
            seen[image_index] = seen_mask(grids, clean[image_index].size, image_index)
        left, top, right, bottom = box
        where = Image.fromarray(seen[image_index][top:bottom, left:right])
        if replacement == "mean":
            out[image_index].paste(color, box, where)
        else:
            if grid_index not in blurred:
                blurred[grid_index] = _blurred_within(
                    clean[image_index], grids[grid_index], blur_radius
                )
            out[image_index].paste(blurred[grid_index].crop(box), (left, top), where)
    return out


def _on_image(box: Any, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A cell box clipped to an image of ``size`` (width, height); None when nothing is left."""
    left, top = max(int(box[0]), 0), max(int(box[1]), 0)
    right, bottom = min(int(box[2]), size[0]), min(int(box[3]), size[1])
    return (left, top, right, bottom) if right > left and bottom > top else None


def _blurred_within(image: Image.Image, grid: Grid, radius: float) -> Image.Image:
    """``image`` with the part ``grid`` covers blurred on its own (its edges extended)."""
    box = _on_image(grid_box(grid), image.size)
    canvas = image.copy()
    if box is not None:
        canvas.paste(image.crop(box).filter(ImageFilter.GaussianBlur(radius)), box[:2])
    return canvas


def seen_cell_pixels(images: Sequence[Image.Image], grids: Sequence[Grid]) -> list[np.ndarray]:
    """Per grid, ``int[h*w]``: how many pixels of each cell's box the model saw.

    Zero for a cell off its image or narrower than a pixel: replacing it changes nothing
    the model sees, so it is not ranked.
    """
    counts = []
    masks: dict[int, np.ndarray] = {}
    for grid in grids:
        image = images[grid.image_index]
        if grid.image_index not in masks:
            masks[grid.image_index] = seen_mask(grids, image.size, grid.image_index)
        seen = masks[grid.image_index]
        cells = np.zeros(grid.height * grid.width, dtype=np.int64)
        for cell, box in enumerate(patch_boxes(grid)):
            clipped = _on_image(box, image.size)
            if clipped is not None:
                left, top, right, bottom = clipped
                cells[cell] = int(seen[top:bottom, left:right].sum())
        counts.append(cells)
    return counts


def answer_perplexities(
    loaded: LoadedModel,
    image_sets: Sequence[Sequence[Image.Image]],
    prompt: str,
    answer_ids: Sequence[int],
    *,
    batch_size: int = PERPLEXITY_BATCH,
) -> list[float]:
    """Teacher-forced perplexity of the same answer for each set of images.

    ``exp`` of the mean negative log-likelihood of the answer tokens. Up to
    ``batch_size`` image sets run in one forward; each set's perplexity equals its
    own forward's (the rows share the prompt and answer, so nothing is padded). The
    first set is prepared in full; a set of the same image sizes (a perturbed copy)
    only has its images read again (``GenerativeAdapter.prepare_perturbed``).
    """
    import torch

    if batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}.")
    if not answer_ids:
        raise InputError("perturbation: the answer is empty; there is nothing to score.")
    adapter = loaded.adapter
    first = adapter.prepare(loaded, list(image_sets[0]), prompt)
    results: list[float] = []
    for start in range(0, len(image_sets), batch_size):
        passes = []
        for images in image_sets[start : start + batch_size]:
            sizes = tuple(image.size for image in images)
            prepared = (
                adapter.prepare_perturbed(loaded, first, list(images))
                if sizes == first.image_sizes
                else adapter.prepare(loaded, list(images), prompt)
            )
            passes.append(adapter.teacher_forced(loaded, prepared, answer_ids))
        device = loaded.model.device
        rows = torch.tensor(passes[0].query_rows, dtype=torch.long, device=device)
        inputs = _batched([forced.inputs for forced in passes])
        if "logits_to_keep" in inputs:
            inputs["logits_to_keep"] = rows
        with torch.no_grad():
            logits = loaded.model(**inputs).logits.float()
        if logits.shape[1] != rows.numel():
            logits = logits[:, rows.to(logits.device)]
        targets = torch.tensor(list(answer_ids), device=logits.device)
        steps = torch.arange(len(answer_ids), device=logits.device)
        log_probs = torch.log_softmax(logits, dim=-1)[:, steps, targets]
        results.extend(torch.exp(-log_probs.mean(dim=-1)).cpu().tolist())
    return results


def _batched(many: Sequence[Any]) -> dict[str, Any]:
    import torch

    first = dict(many[0])
    if len(many) == 1:
        return first
    batched: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            batched[key] = torch.cat([inputs[key] for inputs in many], dim=0)
        else:
            batched[key] = value
    return batched


def checked_fractions(fractions: Sequence[float]) -> list[float]:
    """``fractions`` as floats, checked to increase from 0 within [0, 1].

    Raises:
        InputError: if they do not.
    """
    levels = [float(r) for r in fractions]
    if not levels or levels[0] != 0 or any(b <= a for a, b in itertools.pairwise(levels)):
        raise InputError(f"fractions must increase from 0 within [0, 1], got {levels!r}.")
    if levels[-1] > 1:
        raise InputError(f"fractions must lie in [0, 1], got {levels!r}.")
    return levels


def level_images(
    loaded: LoadedModel,
    clean: Sequence[Image.Image],
    maps: Sequence[Any],
    grids: Sequence[Grid],
    levels: Sequence[float],
    *,
    order: str,
    replacement: str,
    blur_radius: float,
) -> list[list[Image.Image]]:
    """The perturbed copies of ``clean`` at each fraction r of ``levels``, in order.

    The maps rank the patches the model saw a pixel of (:func:`patch_ranking`,
    :func:`seen_cell_pixels`). ``"positive"`` removes the top r of them, ``"negative"``
    the bottom r, ``"insertion"`` all but the top r; removing means filling their seen
    pixels with the processor's mean colour (``replacement="mean"``) or a blur.
    """
    seen = seen_cell_pixels(clean, grids)
    ranking = [(grid, cell) for grid, cell in patch_ranking(maps, grids) if seen[grid][cell]]
    if order == "negative":
        ranking = ranking[::-1]
    color = replacement_color(loaded.processor) if replacement == "mean" else (0, 0, 0)
    sets = []
    for r in levels:
        count = round(r * len(ranking))
        cells = ranking[count:] if order == "insertion" else ranking[:count]
        sets.append(
            perturbed_images(
                clean, grids, cells, replacement=replacement, color=color, blur_radius=blur_radius
            )
        )
    return sets


def perturbation_curve(
    loaded: LoadedModel,
    images: Image.Image | Sequence[Image.Image],
    prompt: str,
    answer_ids: Sequence[int],
    maps: Sequence[Any],
    grids: Sequence[Grid],
    *,
    order: str = "positive",
    replacement: str = "mean",
    fractions: Sequence[float] = FRACTIONS,
    batch_size: int = PERPLEXITY_BATCH,
    blur_radius: float = 8.0,
) -> PerturbationCurve:
    """The normalised-perplexity curve of one answer under one patch order.

    Args:
        loaded: the model (as :func:`dexar_core.api.load` returns it).
        images: the clean image(s) the answer was produced on.
        prompt: the prompt, as given to ``explain``.
        answer_ids: the answer's token ids (``Explanation.token_ids``).
        maps: one ``[h, w]`` relevance map per grid (``Explanation.sequence_maps``).
        grids: their grids (``Explanation.grids``), with pixel boxes in original pixels.
        order: ``"positive"`` (deletion), ``"negative"`` or ``"insertion"``.
        replacement: ``"mean"`` (the processor's normalisation mean) or ``"blur"``.
        fractions: increasing fractions in [0, 1], starting at 0.
        batch_size: levels per forward pass.
        blur_radius: Gaussian radius (pixels) of ``"blur"``.
    """
    if order not in ORDERS:
        raise InputError(f"order must be one of {ORDERS}, got {order!r}.")
    levels = checked_fractions(fractions)
    clean = [images] if isinstance(images, Image.Image) else list(images)
    image_sets = level_images(
        loaded,
        clean,
        maps,
        grids,
        levels,
        order=order,
        replacement=replacement,
        blur_radius=blur_radius,
    )
    if order == "insertion":
        image_sets = [clean, *image_sets]  # the clean perplexity normalises the curve
    perplexities = answer_perplexities(
        loaded, image_sets, prompt, answer_ids, batch_size=batch_size
    )
    clean_perplexity = perplexities[0]
    if order == "insertion":
        perplexities = perplexities[1:]
    return PerturbationCurve(
        order=order,
        replacement=replacement,
        fractions=tuple(levels),
        perplexities=tuple(perplexities),
        clean_perplexity=clean_perplexity,
        **curve_numbers(levels, perplexities, clean_perplexity),
    )


def perturbation_aucs(
    loaded: LoadedModel,
    images: Image.Image | Sequence[Image.Image],
    explanation: Any,
    **options: Any,
) -> dict[str, PerturbationCurve]:
    """Positive and negative perturbation curves of an :class:`Explanation`'s sequence map.

    Positive AUC: higher is better; negative AUC: lower is better (docs/method.md §11).

    Args:
        loaded: the model that produced the explanation.
        images: the clean image(s) it explained.
        explanation: its ``prompt``, ``token_ids``, ``sequence_maps`` and ``grids`` are used.
        **options: passed to :func:`perturbation_curve` (``replacement``, ``batch_size``...).
    """
    return {
        order: perturbation_curve(
            loaded,
            images,
            explanation.prompt,
            explanation.token_ids,
            explanation.sequence_maps,
            explanation.grids,
            order=order,
            **options,
        )
        for order in ("positive", "negative")
    }
