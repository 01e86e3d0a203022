"""Figures of one explanation a person can read without the docs.

:func:`sequence_figure` puts the original image, the sequence map over it and a colour
bar side by side under a title with the model, the method, the prompt and the answer;
:func:`tokens_figure` shows every unit's map (answer token, or a contrastive model's
prompt) with its weight drawn as a bar, weights of 0 marked, one colour bar. Both say
what the weight means, flag a sequence map that fell back to equal weights, and draw
the regions the model did not see hatched. They are built without pyplot (no GUI
backend needed) and are what :meth:`Explanation.plot` returns and ``dexar explain``
saves.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dexar_core.errors import InputError
from dexar_core.viz.picture import (
    DEFAULT_ALPHA,
    DEFAULT_CMAP,
    colour_map,
    heat_picture,
    seen_mask,
    shown_picture,
)
from dexar_core.viz.wording import fallback_note, units_of, weight_meaning, weight_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dexar_core.explanation import Explanation

__all__ = ["map_values", "picture_of", "sequence_figure", "title_of", "tokens_figure"]

DPI = 100
PANEL_INCHES = 4.5
TOKEN_INCHES = 4.0
ZERO_COLOUR = "#b03030"


def picture_of(explanation: Explanation, image: Image.Image | None, grid: int) -> Image.Image:
    """The picture a grid's maps lie on: ``image`` when given, else the one kept."""
    if not 0 <= grid < len(explanation.grids):
        raise InputError(f"no grid {grid}; the explanation has {len(explanation.grids)}.")
    if image is not None:
        return image.convert("RGB")
    index = explanation.grids[grid].image_index
    if index >= len(explanation.images):
        raise InputError(
            "this explanation keeps no picture to draw on (a video input, or a file saved "
            "before pictures were kept); pass the image, e.g. plot(image=...)."
        )
    return explanation.images[index]


def map_values(
    explanation: Explanation, grid: int, *, raw: bool
) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[float, float]]:
    """Token maps, sequence map and the value range each is drawn over.

    Normalised maps are drawn over ``(0, 1)``. Raw maps share one range across the
    tokens, so a token with weak relevance looks weak beside a strong one.
    """
    if not raw:
        return explanation.token_maps[grid], explanation.sequence_maps[grid], (0, 1), (0, 1)
    if not explanation.has_raw_maps:
        raise InputError(
            "this explanation was saved before raw maps were kept; draw it with raw=False "
            "or explain the image again."
        )
    tokens, sequence = explanation.raw_token_maps[grid], explanation.raw_sequence_maps[grid]
    return tokens, sequence, _span(tokens), _span(sequence)


def characters_across(inches: float, fontsize: float) -> int:
    """About how many characters of text at ``fontsize`` fit across ``inches``.

    Matplotlib's default sans-serif averages a little over half an em per character;
    0.6 em leaves a margin, so text wrapped to this width stays inside the figure.
    """
    return max(20, int(inches * 72 / (0.6 * fontsize)))


def title_of(explanation: Explanation, width: int = 110) -> str:
    """Model, method, prompt and answer (or prompts), each shortened to 110 characters
    and wrapped to ``width``."""
    units = units_of(explanation)
    said = (
        f"answer: {explanation.answer!r}"
        if units.text_label == "answer"
        else "prompts: " + ", ".join(repr(token) for token in explanation.tokens)
    )
    head = f"{explanation.model_id}, method {explanation.method}"
    lines = [head, f"prompt: {explanation.prompt!r}", said]
    # Cut before shortening: textwrap on a 3000-word prompt is slow, and a title is one line.
    shortened = (textwrap.shorten(line[:400], 110, placeholder=" ...") for line in lines)
    return "\n".join(textwrap.fill(line, width) for line in shortened)


def sequence_figure(
    explanation: Explanation,
    image: Image.Image | None = None,
    *,
    grid: int = 0,
    alpha: float = DEFAULT_ALPHA,
    cmap: str = DEFAULT_CMAP,
    raw: bool = False,
) -> Figure:
    """The original image, the sequence map over it and its colour bar, with a title.

    Args:
        explanation: what ``explain()`` returned.
        image: the picture to draw on; the one the explanation keeps when None.
        grid: which grid's map (one per image, tile or frame group).
        alpha: weight of the map's colours over the greyed image.
        cmap: a matplotlib colour map name (perceptual ones read best).
        raw: draw the unnormalised map over its own value range.

    Returns:
        A matplotlib figure; save it with ``figure.savefig(path)``.
    """
    from matplotlib.figure import Figure

    picture = picture_of(explanation, image, grid)
    _, sequence, _, value_range = map_values(explanation, grid, raw=raw)
    heat = _heat(explanation, picture, sequence, grid, alpha, cmap, value_range)
    aspect = heat.height / heat.width
    figure = Figure(
        figsize=(2 * PANEL_INCHES + 1.6, PANEL_INCHES * aspect + 2.2), dpi=DPI, layout="constrained"
    )
    original_ax, heat_ax, bar_ax = figure.subplots(1, 3, width_ratios=[1, 1, 0.06])
    _show(original_ax, shown_picture(picture), "input")
    units = units_of(explanation)
    _show(heat_ax, heat, f"{units.whole_map} (all {units.many}, weighted)")
    _colour_bar(bar_ax, cmap, value_range, raw=raw)
    _unseen_legend(explanation, picture, grid, heat_ax)
    inches = figure.get_figwidth()
    figure.suptitle(title_of(explanation, characters_across(inches, 11)), fontsize=11)
    notes = [weight_meaning(explanation)]
    note = fallback_note(explanation)
    if note:
        notes.insert(0, note)
    figure.supxlabel(textwrap.fill(" ".join(notes), characters_across(inches, 8)), fontsize=8)
    return figure


def tokens_figure(
    explanation: Explanation,
    image: Image.Image | None = None,
    *,
    grid: int = 0,
    alpha: float = DEFAULT_ALPHA,
    cmap: str = DEFAULT_CMAP,
    raw: bool = False,
    columns: int = 4,
) -> Figure:
    """Every unit's map with its weight as a bar; weights of 0 marked, one colour bar.

    Args:
        explanation: what ``explain()`` returned.
        image: the picture to draw on; the one the explanation keeps when None.
        grid: which grid's maps.
        alpha: weight of the maps' colours over the greyed image.
        cmap: a matplotlib colour map name.
        raw: draw the unnormalised maps over one shared range (magnitudes comparable).
        columns: maps per row.

    Returns:
        A matplotlib figure; save it with ``figure.savefig(path)``.
    """
    from matplotlib.figure import Figure

    if columns < 1:
        raise InputError(f"tokens_figure: columns must be positive, got {columns}.")
    picture = picture_of(explanation, image, grid)
    token_maps, _, value_range, _ = map_values(explanation, grid, raw=raw)
    count = len(explanation.tokens)
    shown_columns = max(1, min(columns, count))
    rows = math.ceil(count / shown_columns)
    aspect = picture.height / picture.width
    inches = TOKEN_INCHES * shown_columns + 1.2
    scale = (
        "one shared raw range" if raw else f"each {units_of(explanation).one} min-max normalised"
    )
    across = characters_across(inches, 11)
    maps_line = textwrap.fill(f"per-{units_of(explanation).one} maps ({scale})", across)
    title = f"{title_of(explanation, across)}\n{maps_line}"
    note = textwrap.fill(weight_meaning(explanation), characters_across(inches, 8))
    # A narrow figure wraps the title and the note onto more lines: make room for them.
    extra = 0.2 * max(0, title.count("\n") - 3) + 0.14 * max(0, note.count("\n") - 1)
    maps_height = rows * (TOKEN_INCHES * aspect + 0.5)
    figure = Figure(figsize=(inches, 2.6 + extra + maps_height), dpi=DPI, layout="constrained")
    heights = [2.2 + extra, maps_height]
    top, bottom = figure.subfigures(2, 1, squeeze=False, height_ratios=heights)[:, 0]
    _weight_bars(top.subplots(), explanation, note)
    grid_axes = bottom.subplots(
        rows, shown_columns + 1, squeeze=False, width_ratios=[1] * shown_columns + [0.05]
    )
    weights = [float(w) for w in explanation.token_weights]
    for index in range(rows * shown_columns):
        ax = grid_axes[index // shown_columns, index % shown_columns]
        if index >= count:
            ax.set_axis_off()
            continue
        heat = _heat(explanation, picture, token_maps[index], grid, alpha, cmap, value_range)
        zero = weights[index] == 0
        _show(ax, heat, f"{_shown(explanation.tokens[index])}   {weights[index]:.3g}")
        if zero:
            ax.title.set_color(ZERO_COLOUR)
            ax.text(
                0.5,
                0.04,
                f"weight 0: not in the {units_of(explanation).whole_map}",
                transform=ax.transAxes,
                ha="center",
                va="bottom",
                fontsize=9,
                color="white",
                bbox={"facecolor": ZERO_COLOUR, "edgecolor": "none", "alpha": 0.85},
            )
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_edgecolor(ZERO_COLOUR)
                spine.set_linewidth(3)
    for row in range(rows):
        bar_ax = grid_axes[row, shown_columns]
        if row == 0:
            _colour_bar(bar_ax, cmap, value_range, raw=raw)
        else:
            bar_ax.set_axis_off()
    _unseen_legend(explanation, picture, grid, grid_axes[0, 0])
    figure.suptitle(title, fontsize=11)
    return figure


def _heat(
    explanation: Explanation,
    picture: Image.Image,
    map2d: np.ndarray,
    grid: int,
    alpha: float,
    cmap: str,
    value_range: tuple[float, float],
) -> Image.Image:
    seen = seen_mask(_boxes_of(explanation, grid), picture.size)
    return heat_picture(
        picture,
        map2d,
        explanation.grids[grid].pixel_box,
        seen=seen,
        alpha=alpha,
        cmap=cmap,
        value_range=value_range,
    )


def _boxes_of(explanation: Explanation, grid: int) -> list[tuple[float, float, float, float]]:
    """The pixel boxes of every grid on the same image as ``grid``."""
    image_index = explanation.grids[grid].image_index
    return [g.pixel_box for g in explanation.grids if g.image_index == image_index]


def _unseen_legend(explanation: Explanation, picture: Image.Image, grid: int, ax: Axes) -> None:
    if seen_mask(_boxes_of(explanation, grid), picture.size).all():
        return
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(facecolor="0.6", edgecolor="0.35", hatch="//", label="not seen by the model")
        ],
        loc="upper right",
        fontsize=8,
        framealpha=0.9,
    )


def _show(ax: Axes, picture: Image.Image, title: str) -> None:
    ax.imshow(np.asarray(picture), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10)


def _colour_bar(ax: Axes, cmap: str, value_range: tuple[float, float], *, raw: bool) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(*value_range), cmap=colour_map(cmap))
    bar = ax.figure.colorbar(mappable, cax=ax)
    bar.set_label("relevance (raw)" if raw else "relevance (min-max normalised)", fontsize=9)


def _weight_bars(ax: Axes, explanation: Explanation, note: str) -> None:
    """One bar per unit, its weight; zeros marked so they are not read as missing; the
    note (what the weight means, wrapped to the figure) above."""
    weights = np.asarray(explanation.token_weights, dtype=np.float64)
    positions = np.arange(len(weights))
    zero = weights == 0
    ax.bar(positions, weights, color=np.where(zero, ZERO_COLOUR, "#3b6ea8").tolist())
    top = float(weights.max()) if weights.size and weights.max() > 0 else 1.0
    for position in positions[zero]:
        ax.text(position, top * 0.02, "0", ha="center", va="bottom", color=ZERO_COLOUR, fontsize=9)
    ax.set_xticks(
        positions,
        [_shown(token) for token in explanation.tokens],
        fontsize=9,
        rotation=30 if len(weights) > 8 else 0,
    )
    ax.set_ylabel(weight_name(explanation), fontsize=9)
    ax.set_xlim(-0.6, max(len(weights), 1) - 0.4)
    ax.set_title(note, fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _span(values: np.ndarray) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    return (low, high) if high > low else (low, low + 1.0)


LABEL_CHARACTERS = 40
"""A unit's label in a figure is cut to this many characters (a prompt unit can be long)."""


def _shown(token: str) -> str:
    if len(token) > LABEL_CHARACTERS:  # drawing a 3000-word label took minutes
        token = token[: LABEL_CHARACTERS - 1] + "…"
    shown = token.replace("\n", "\\n").replace("\t", "\\t")
    return repr(token) if not shown.strip() else shown
