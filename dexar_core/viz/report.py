"""The interactive HTML report of an explanation: one self-contained file.

The page carries everything inline: the pictures as ``data:`` URIs, the maps as
numbers at token-grid resolution (drawn in the browser, smoothed, over the greyed
image), the colour map as a 256-entry table, and the script and style shipped beside
this module (``report.js``, ``report.css``, ``report.html``). A Content-Security-Policy
forbids every request, so it works from ``file://`` and loads nothing from outside.

:func:`explanation_html` is what ``dexar explain --html``, :meth:`Explanation.to_html`
and :meth:`Explanation._repr_html_` write; :func:`notebook_html` wraps any page in an
``iframe`` so several reports share a notebook without clashing.
"""

from __future__ import annotations

import base64
import html
import io
import json
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dexar_core.viz.figures import picture_of, title_of
from dexar_core.viz.picture import (
    DEFAULT_ALPHA,
    DEFAULT_CMAP,
    colour_map,
    display_size,
    heat_picture,
    seen_mask,
    shown_picture,
)
from dexar_core.viz.wording import fallback_note, units_of, weight_meaning, weight_name

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation

__all__ = [
    "explanation_html",
    "notebook_html",
    "page",
    "png_data_uri",
    "write_html",
]

# Maps are sent with this many significant digits: the colour table has 256 steps.
_MAP_DIGITS = 5


def png_data_uri(picture: Image.Image) -> str:
    """The picture as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def page(title: str, body: str, *, script: str = "", data: Any = None) -> str:
    """A complete HTML page with the shipped style, ``body``, and optional data and script.

    Args:
        title: the page's title.
        body: the HTML inside ``<body>``.
        script: the name of a shipped script (``"report.js"``), inlined; none when "".
        data: JSON-ready data the script reads from ``#dexar-data``.
    """
    template = _asset("report.html")
    data_block = ""
    if data is not None:
        # "</" would end the script element early; JSON allows the escaped slash.
        text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        data_block = f'<script type="application/json" id="dexar-data">{text}</script>'
    script_block = f"<script>{_asset(script)}</script>" if script else ""
    return (
        template.replace("{{TITLE}}", html.escape(title))
        .replace("{{STYLE}}", _asset("report.css"))
        .replace("{{BODY}}", body)
        .replace("{{DATA}}", data_block)
        .replace("{{SCRIPT}}", script_block)
    )


def explanation_html(
    explanation: Explanation,
    image: Image.Image | None = None,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
) -> str:
    """The interactive report of one explanation, as a complete HTML page.

    Args:
        explanation: what ``explain()`` returned.
        image: the picture of the first image; the explanation's own when None.
        cmap: the colour map of the maps (a matplotlib name).
        alpha: the opacity the slider starts at.

    Returns:
        The page's HTML text.
    """
    data = report_data(explanation, image, cmap=cmap, alpha=alpha)
    return page(f"dexar: {explanation.model_id}", _BODY, script="report.js", data=data)


def write_html(text: str, path: str | PathLike[str]) -> Path:
    """Write a page, creating the parent folders; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def notebook_html(document: str, height: int = 900) -> str:
    """A page inside an ``iframe``, so its script and ids stay apart from the notebook's."""
    return (
        f'<iframe srcdoc="{html.escape(document, quote=True)}" style="width:100%;'
        f'height:{height}px;border:1px solid #ccc" title="dexar report"></iframe>'
    )


def report_data(
    explanation: Explanation,
    image: Image.Image | None = None,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
) -> dict[str, Any]:
    """Everything the report's script draws, JSON-ready."""
    units = units_of(explanation)
    lut = np.round(np.asarray(colour_map(cmap)(np.linspace(0, 1, 256)))[:, :3] * 255)
    grids = []
    for index, grid in enumerate(explanation.grids):
        picture = picture_of(explanation, image if grid.image_index == 0 else None, index)
        boxes = [g.pixel_box for g in explanation.grids if g.image_index == grid.image_index]
        width, height = display_size(picture.size)
        scale_x, scale_y = width / picture.width, height / picture.height
        left, top, right, bottom = grid.pixel_box
        backdrop = heat_picture(
            picture,
            np.zeros(grid.shape, np.float32),
            grid.pixel_box,
            seen=seen_mask(boxes, picture.size),
            alpha=0,
        )
        entry: dict[str, Any] = {
            "name": grid.name,
            "width": width,
            "height": height,
            "box": [left * scale_x, top * scale_y, right * scale_x, bottom * scale_y],
            "unseen": not seen_mask(boxes, picture.size).all(),
            "original": png_data_uri(shown_picture(picture)),
            "backdrop": png_data_uri(backdrop),
            "tokenMaps": _numbers(explanation.token_maps[index]),
            "sequence": _numbers(explanation.sequence_maps[index]),
        }
        if explanation.has_raw_maps:
            entry["rawTokenMaps"] = _numbers(explanation.raw_token_maps[index])
            entry["rawSequence"] = _numbers(explanation.raw_sequence_maps[index])
        grids.append(entry)
    facts = {
        "model": explanation.model_id,
        "adapter": explanation.adapter,
        "method": explanation.method,
        "options": json.dumps(explanation.options),
        "layers": ", ".join(str(layer) for layer in explanation.layers),
        "dtype": str(explanation.metadata.get("dtype", "not recorded")),
        "device": str(explanation.metadata.get("device", "not recorded")),
        "answer": "generated" if explanation.generated else "given (teacher-forced)",
        "timings": ", ".join(f"{k} {v:.2f} s" for k, v in explanation.timings.items()),
    }
    return {
        "title": title_of(explanation).split("\n"),
        "units": {
            "one": units.one,
            "many": units.many,
            "text": units.text_label,
            "whole": units.whole_map,
        },
        "weightName": weight_name(explanation),
        "weightMeaning": weight_meaning(explanation),
        "fallback": fallback_note(explanation),
        "tokens": list(explanation.tokens),
        "weights": [float(w) for w in explanation.token_weights],
        "headWeights": _numbers(explanation.head_weights),
        "layers": list(explanation.layers),
        "lut": lut.astype(int).tolist(),
        "alpha": alpha,
        "cmap": cmap,
        "grids": grids,
        "facts": facts,
    }


def _numbers(array: np.ndarray) -> Any:
    """An array as nested lists of floats with a few significant digits (a smaller page)."""
    values = np.asarray(array, dtype=np.float64)
    short = [float(f"{value:.{_MAP_DIGITS}g}") for value in values.ravel()]
    return np.array(short, dtype=np.float64).reshape(values.shape).tolist()


def _asset(name: str) -> str:
    """A file shipped beside this module (the template, script and style)."""
    return resources.files("dexar_core.viz").joinpath(name).read_text(encoding="utf-8")


_BODY = """
<header><h1 id="title"></h1><p id="notes"></p></header>
<section id="chips-section">
  <h2 id="chips-heading"></h2>
  <div id="chips" role="listbox"></div>
  <p class="hint">Hover over an item to see its map; click to keep it. The first chip is the
  map of all of them, weighted.</p>
</section>
<section id="view">
  <figure><figcaption>input</figcaption><img id="original" alt="the input image"></figure>
  <figure><figcaption id="shown"></figcaption>
    <canvas id="map" data-token="-1" data-mode="normalised"></canvas>
    <p id="unseen-legend" hidden><span class="hatch"></span> not seen by the model</p>
  </figure>
  <figure class="bar"><figcaption id="bar-label">relevance</figcaption>
    <span id="bar-high"></span><canvas id="colour-bar" width="24" height="300"></canvas>
    <span id="bar-low"></span></figure>
</section>
<section id="controls">
  <label>opacity <input type="range" id="opacity" min="0" max="1" step="0.05"></label>
  <label><input type="checkbox" id="raw"> raw maps (one shared scale; unticked: each map
  min-max normalised)</label>
  <label id="grid-choice" hidden>grid <select id="grid"></select></label>
</section>
<section id="heads-section">
  <h2 id="heads-heading">head weights</h2>
  <div id="heads"></div>
</section>
<section><h2>what was run</h2><table id="facts"></table></section>
"""
