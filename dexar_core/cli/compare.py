"""``dexar compare``: several models x several methods on one image, or on a dataset.

With ``--image`` (or the first model's bundled example) the work is
:func:`dexar_core.compare.on_image.compare`; this module prints each model's answer (or its
prompts' similarities) and every cell whose method could not run, and writes the grid
figure, one per-token figure per model, and every explanation. With ``--dataset`` it is
:func:`dexar_core.compare.on_dataset.compare_on_dataset`, printed as one markdown table per
metric (models x methods).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dexar_core.cli.key_values import parse_option
from dexar_core.cli.loading import load_options
from dexar_core.compare.on_image import Comparison, ModelRow, file_stem, split_names
from dexar_core.errors import InputError


def run_compare(args: argparse.Namespace) -> int:
    """Parse the names, run the comparison, print it and write the outputs."""
    models = split_names(args.models, "models")
    methods = split_names(args.methods, "methods")
    layers = None if args.layers is None else parse_option(f"layers={args.layers}")[1]
    if args.dataset is not None:
        if args.image is not None or len(args.prompt or ()) > 1:
            raise InputError(
                "--dataset compares on the dataset's own images, with one question per item "
                "(--prompt sets it for voc: and imagenet: datasets); leave out --image and "
                "give at most one --prompt, or leave out --dataset to compare on one image."
            )
        from dexar_core.cli.progress import quiet_third_party

        quiet_third_party(args.verbose)
        return _run_on_dataset(args, models, methods, layers)
    for option in ("split", "limit", "metrics", "class_index"):
        if getattr(args, option) is not None:
            raise InputError(
                f"--{option.replace('_', '-')} applies to --dataset only; leave it out when "
                "comparing on one image."
            )
    return _run_on_image(args, models, methods, layers)


def _run_on_image(
    args: argparse.Namespace, models: list[str], methods: list[str], layers: object
) -> int:
    from dexar_core.cli.progress import quiet_third_party, stage
    from dexar_core.compare.on_image import compare
    from dexar_core.viz.comparison import comparison_figure, save_figure, token_figure
    from dexar_core.viz.pages import comparison_html
    from dexar_core.viz.report import write_html

    quiet_third_party(args.verbose)
    doing = f"comparing {', '.join(models)} with {', '.join(methods)}"
    _progress(f"dexar: {doing} ...")
    with stage(f"dexar: {doing}"):
        comparison = compare(
            models,
            methods,
            args.image,
            args.prompt or None,
            max_new_tokens=args.max_new_tokens,
            layers=layers,
            device=args.device,
            dtype=args.dtype,
            load_options=load_options(args),
        )
    print(format_comparison(comparison))
    out = Path(args.out)
    written = [save_figure(comparison_figure(comparison), out / "comparison.png")]
    for row, stem in zip(comparison.rows, file_stems(comparison), strict=True):
        written.append(save_figure(token_figure(row, comparison.image), out / f"tokens_{stem}.png"))
        for cell in row.cells:
            if cell.explanation is not None:
                cell.explanation.save(out / "explanations" / stem / cell.method)
    (out / "comparison.json").write_text(json.dumps(comparison_record(comparison), indent=2) + "\n")
    written.append(out / "comparison.json")
    if args.html:
        written.append(write_html(comparison_html(comparison), out / "comparison.html"))
    print(f"wrote {', '.join(str(path) for path in written)} and {out}/explanations/")
    return 0


def format_comparison(comparison: Comparison) -> str:
    """Per model: its answer (or prompts and similarities), then each method's status."""
    from dexar_core.viz.comparison import row_caption

    lines = []
    for row in comparison.rows:
        lines.append(f"{row.model_id}: {row_caption(row)}")
        for cell in row.cells:
            status = "ok" if cell.supported else f"not supported: {cell.reason}"
            lines.append(f"  {cell.method}: {status}")
    return "\n".join(lines)


def comparison_record(comparison: Comparison) -> dict[str, object]:
    """The comparison's text facts as JSON: prompts, answers, similarities, cell status."""
    return {
        "prompts": list(comparison.prompts),
        "methods": list(comparison.methods),
        "models": [_row_record(row) for row in comparison.rows],
    }


def _row_record(row: ModelRow) -> dict[str, object]:
    return {
        "model": row.model_id,
        "contrastive": row.contrastive,
        "answer": row.answer,
        "prompts": list(row.prompts),
        "similarities": list(row.similarities),
        "cells": {
            cell.method: {"supported": cell.supported, "reason": cell.reason} for cell in row.cells
        },
    }


def file_stems(comparison: Comparison) -> list[str]:
    """One file-name-safe, distinct stem per model (``open_clip:/a/b`` -> ``open_clip_a_b``)."""
    stems: list[str] = []
    for index, row in enumerate(comparison.rows):
        stem = file_stem(row.model_id)
        stems.append(stem if stem not in stems else f"{stem}_{index}")
    return stems


def _run_on_dataset(
    args: argparse.Namespace, models: list[str], methods: list[str], layers: object
) -> int:
    from dexar_core.compare.on_dataset import compare_on_dataset

    _progress(
        f"dexar: evaluating {', '.join(models)} x {', '.join(methods)} on {args.dataset}"
        + ("" if args.split is None else f"/{args.split}")
        + ("" if args.limit is None else f", first {args.limit} items")
        + " ..."
    )
    out = Path(args.out)
    table = compare_on_dataset(
        models,
        methods,
        args.dataset,
        args.split,
        limit=args.limit,
        metrics=None if args.metrics is None else split_names(args.metrics, "metrics"),
        seed=args.seed,
        prompt=args.prompt[0] if args.prompt else None,
        class_index=args.class_index,
        max_new_tokens=args.max_new_tokens,
        layers=layers,
        out=out,
        device=args.device,
        dtype=args.dtype,
        load_options=load_options(args),
    )
    markdown = table.to_markdown()
    print(markdown)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.md").write_text(markdown + "\n")
    (out / "metrics.json").write_text(json.dumps(table.to_dict(), indent=2) + "\n")
    _progress(f"dexar: wrote {out}/metrics.md, {out}/metrics.json and each run's folder")
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
