"""Figures of a :class:`~dexar_core.compare.on_image.Comparison`: the models x methods grid and
one per-token figure per model.

:func:`comparison_figure` puts one sequence-map overlay per (model, method) cell, the
models as rows and the methods as columns, with each row's answer (or, for a contrastive
model, its prompts and similarities) written underneath; a method that could not run on
a model shows ``not supported: <reason>`` in its cell. :func:`token_figure` shows one
model's per-token overlays (:func:`dexar_core.viz.overlay.token_strip`), one strip per
method. Both return matplotlib figures built without pyplot, so no GUI backend is
needed; :func:`save_figure` writes them.
"""

from __future__ import annotations

import textwrap
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dexar_core.viz.overlay import token_strip
from dexar_core.viz.picture import DEFAULT_ALPHA, DEFAULT_CMAP, heat_picture, seen_mask

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from dexar_core.compare.on_image import Cell, Comparison, ModelRow

__all__ = ["comparison_figure", "row_caption", "save_figure", "token_figure"]

CELL_INCHES = 2.4
CAPTION_INCHES = 0.7
DISPLAY_SIDE = 256  # the embedded models' 64-pixel images are too small to read
REASON_CHARACTERS = 240
REASON_HEIGHT = 60  # pixels of a strip row that shows why its method could not run
MIN_STRIP_WIDTH = 480
DPI = 100


def comparison_figure(
    comparison: Comparison, *, alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP
) -> Figure:
    """The models x methods grid of sequence-map overlays, a caption under each row.

    Each map is coloured over the greyed image (regions a model did not see hatched).

    Args:
        comparison: what :func:`dexar_core.compare.on_image.compare` returned.
        alpha: weight of the maps' colours.
        cmap: a matplotlib colour map name.

    Returns:
        A matplotlib figure (save it with :func:`save_figure`).
    """
    from matplotlib.figure import Figure

    columns, rows = len(comparison.methods), len(comparison.rows)
    figure = Figure(
        figsize=(CELL_INCHES * columns + 0.6, (CELL_INCHES + CAPTION_INCHES) * rows),
        dpi=DPI,
        layout="constrained",
    )
    row_figures = np.atleast_1d(figure.subfigures(rows, 1, squeeze=False)[:, 0])
    for index, (row, row_figure) in enumerate(zip(comparison.rows, row_figures, strict=True)):
        axes = np.atleast_1d(row_figure.subplots(1, columns))
        for cell, ax in zip(row.cells, axes, strict=True):
            ax.set_xticks([])
            ax.set_yticks([])
            if index == 0:
                ax.set_title(cell.method, fontsize=11)
            _draw_cell(ax, cell, comparison.image, alpha, cmap)
        axes[0].set_ylabel(row.model_id, fontsize=10)
        _caption(row_figure, row_caption(row), columns)
    return figure


def token_figure(row: ModelRow, image: Image.Image) -> Figure:
    """One model's per-token overlays: a strip per method, the token's weight under each.

    For a contrastive model the "tokens" are the prompts and the number under each is
    the model's image-text similarity.

    Args:
        row: one row of a :class:`~dexar_core.compare.on_image.Comparison`.
        image: the compared image.

    Returns:
        A matplotlib figure with one strip per method (a line of text for a method that
        could not run).
    """
    from matplotlib.figure import Figure

    strips = [(cell, _strip(cell, row, image)) for cell in row.cells]
    width = max([MIN_STRIP_WIDTH, *(strip.width for _, strip in strips if strip is not None)])
    heights = [strip.height if strip is not None else REASON_HEIGHT for _, strip in strips]
    figure = Figure(
        figsize=(width / DPI + 0.4, sum(heights) / DPI + 0.5 * len(strips) + 0.6),
        dpi=DPI,
        layout="constrained",
    )
    title = textwrap.shorten(f"{row.model_id}: {row_caption(row)}", width=300, placeholder=" ...")
    figure.suptitle(textwrap.fill(title, width=width // 7), fontsize=10)
    axes = np.atleast_1d(figure.subplots(len(strips), 1, height_ratios=heights))
    for (cell, strip), ax in zip(strips, axes, strict=True):
        ax.set_axis_off()
        ax.set_title(cell.method, fontsize=10, loc="left")
        if strip is None:
            ax.text(0, 0.5, _reason_text(cell, width // 6), fontsize=8, va="center")
        else:
            ax.imshow(np.asarray(strip))
    return figure


def row_caption(row: ModelRow) -> str:
    """The text under a row: the answer, or the prompts with their similarities."""
    if row.contrastive:
        if not row.similarities:
            return "prompts: " + ", ".join(repr(prompt) for prompt in row.prompts)
        return "similarity: " + ", ".join(
            f"{prompt!r} {value:.3f}"
            for prompt, value in zip(row.prompts, row.similarities, strict=True)
        )
    return f"answer: {row.answer!r}" if row.answer else "no answer"


def save_figure(figure: Figure, path: str | PathLike[str]) -> Path:
    """Write a figure as PNG, creating the parent folders; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target


def _display_picture(image: Image.Image) -> Image.Image:
    """The image scaled so that its longer side is :data:`DISPLAY_SIDE`."""
    scale = DISPLAY_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.NEAREST)


def _draw_cell(ax: Axes, cell: Cell, image: Image.Image, alpha: float, cmap: str) -> None:
    explanation = cell.explanation
    if explanation is None:
        ax.set_facecolor("0.93")
        ax.text(0.04, 0.5, _reason_text(cell, 30), fontsize=7, va="center", transform=ax.transAxes)
        return
    boxes = [grid.pixel_box for grid in explanation.grids if grid.image_index == 0]
    heat = heat_picture(
        image,
        explanation.sequence_maps[0],
        explanation.grids[0].pixel_box,
        seen=seen_mask(boxes, image.size),
        alpha=alpha,
        cmap=cmap,
    )
    ax.imshow(np.asarray(heat))


def _strip(cell: Cell, row: ModelRow, image: Image.Image) -> Image.Image | None:
    explanation = cell.explanation
    if explanation is None:
        return None
    token_maps, _ = explanation.upsample(0)
    weights = row.similarities if row.contrastive else explanation.token_weights
    return token_strip(
        _display_picture(image),
        token_maps,
        list(explanation.tokens),
        list(weights),
        cmap=DEFAULT_CMAP,
    )


def _reason_text(cell: Cell, width: int) -> str:
    reason = cell.reason or ""
    if len(reason) > REASON_CHARACTERS:
        reason = reason[: REASON_CHARACTERS - 3] + "..."
    return textwrap.fill(f"not supported: {reason}", width=max(width, 20))


def _caption(row_figure: SubFigure, text: str, columns: int) -> None:
    shown = textwrap.shorten(text, width=90 * columns, placeholder=" ...")
    row_figure.supxlabel(textwrap.fill(shown, width=32 * columns), fontsize=9)
