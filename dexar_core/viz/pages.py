"""Self-contained HTML pages of a comparison and of an evaluation run folder.

:func:`comparison_html` is the models x methods grid of sequence maps, each cell linked
to its explanation's full interactive report further down the same page (embedded as an
``iframe`` ``srcdoc``, so each report keeps its own script). :func:`evaluation_index`
is the index of a ``dexar evaluate`` run folder: its tables, then each method's
pictures, linked both ways. Both load nothing from outside (see
:mod:`dexar_core.viz.report`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from dexar_core.viz.figures import picture_of
from dexar_core.viz.picture import DEFAULT_ALPHA, DEFAULT_CMAP, heat_picture, seen_mask
from dexar_core.viz.report import explanation_html, page, png_data_uri

if TYPE_CHECKING:
    from dexar_core.compare.on_image import Comparison

__all__ = ["comparison_html", "evaluation_index"]

_REASON_CHARACTERS = 300


def comparison_html(
    comparison: Comparison, *, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA
) -> str:
    """The comparison's grid and every cell's report, as one HTML page.

    Args:
        comparison: what :func:`dexar_core.compare.on_image.compare` returned.
        cmap: the colour map of the maps.
        alpha: the maps' opacity in the grid and the reports' starting opacity.
    """
    from dexar_core.viz.comparison import row_caption

    head = "".join(f"<th>{html.escape(method)}</th>" for method in comparison.methods)
    rows, reports = [], []
    for row_index, row in enumerate(comparison.rows):
        cells = [
            f"<th>{html.escape(row.model_id)}<br><small>{html.escape(row_caption(row))}</small></th>"
        ]
        for column, cell in enumerate(row.cells):
            explanation = cell.explanation
            if explanation is None:
                reason = (cell.reason or "")[:_REASON_CHARACTERS]
                cells.append(f'<td class="unsupported">not supported: {html.escape(reason)}</td>')
                continue
            anchor = f"report-{row_index}-{column}"
            picture = picture_of(explanation, comparison.image, 0)
            heat = heat_picture(
                picture,
                explanation.sequence_maps[0],
                explanation.grids[0].pixel_box,
                seen=seen_mask(
                    [g.pixel_box for g in explanation.grids if g.image_index == 0], picture.size
                ),
                alpha=alpha,
                cmap=cmap,
            )
            cells.append(
                f'<td><a href="#{anchor}"><img src="{png_data_uri(heat)}" '
                f'alt="{html.escape(row.model_id)}, {html.escape(cell.method)}"></a></td>'
            )
            document = html.escape(
                explanation_html(explanation, comparison.image, cmap=cmap, alpha=alpha), quote=True
            )
            reports.append(
                f'<details id="{anchor}"><summary>{html.escape(row.model_id)} / '
                f"{html.escape(cell.method)}: the full report</summary>"
                f'<iframe class="report" title="report" srcdoc="{document}">'
                "</iframe></details>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    prompts = ", ".join(repr(prompt) for prompt in comparison.prompts)
    body = (
        f"<h1>dexar compare</h1><p>prompt: {html.escape(prompts)}. Each cell is the sequence "
        "map over the greyed image; click it for its interactive report.</p>"
        f'<table class="cells"><tr><th>model</th>{head}</tr>{"".join(rows)}</table>'
        "<h2>reports</h2>" + "".join(reports)
    )
    return page("dexar compare", body)


def evaluation_index(folder: str | Path, tables: str, methods: Sequence[str]) -> str:
    """The index of an evaluation run folder: the tables, then each method's pictures.

    Args:
        folder: the ``--out`` folder of ``dexar evaluate``, one folder per method
            (``<method>/pictures/`` when ``--pictures`` was given).
        tables: the printed report (:func:`dexar_core.evaluation.report.format_report`).
        methods: the methods that ran.
    """
    root = Path(folder)
    summaries = list(methods)
    links = " | ".join(
        f'<a href="#pictures-{html.escape(method)}">{html.escape(method)} pictures</a>'
        for method in summaries
    )
    sections = []
    for method in summaries:
        pictures = sorted((root / method / "pictures").glob("item*_sequence.png"))
        items = []
        for sequence in pictures:
            stem = sequence.name.removesuffix("_sequence.png")
            shown = [sequence, sequence.with_name(f"{stem}_tokens.png")]
            images = "".join(
                f'<img class="figure" src="{_file_uri(path)}" alt="{html.escape(path.name)}">'
                for path in shown
                if path.is_file()
            )
            items.append(f"<h3>{html.escape(stem)}</h3>{images}")
        gallery = "".join(items) or "<p>No pictures: rerun with --pictures N.</p>"
        sections.append(
            f'<section id="pictures-{html.escape(method)}"><h2>{html.escape(method)}: pictures'
            f'</h2><p><a href="#tables">back to the tables</a></p>{gallery}</section>'
        )
    body = (
        f"<h1>dexar evaluate: {html.escape(str(root))}</h1>"
        f'<section id="tables"><h2>tables</h2><p>{links}</p>'
        f"<pre>{html.escape(tables)}</pre></section>" + "".join(sections)
    )
    return page("dexar evaluate", body)


def _file_uri(path: Path) -> str:
    with Image.open(path) as picture:
        return png_data_uri(picture.copy())
