"""``dexar evaluate``: run the grounded benchmark and print the table with its chance lines.

The work is :func:`dexar_core.evaluation.evaluate`; this module opens the dataset, loads
the model, shows progress on stderr, saves pictures of the first items when asked, and
formats the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.commands.explain import DEFAULT_MODEL, parse_option
from dexar_core.errors import CheckpointError, InputError

if TYPE_CHECKING:
    from dexar_core.datasets.shapes import ShapesItem
    from dexar_core.evaluation import ItemResult, Summary
    from dexar_core.explanation import Explanation

TRAINING_FACTS = "dexar_training.json"
"""Written beside an embedded checkpoint by ``dexar_core.zoo.train``: its image size."""

DEFAULT_IMAGE_SIZE = 64
PICTURE_SIDE = 256  # the benchmark's 64-pixel images are too small to read as overlays

LINE_NAMES = {"method": None, "uniform": "uniform", "random_smooth": "random smooth"}


def run_evaluate(args: argparse.Namespace) -> int:
    """Load the model, run the benchmark, print the summary table; write the outputs."""
    from dexar_core.evaluation import evaluate, open_dataset

    if args.limit is not None and args.limit < 1:
        raise InputError(
            f"--limit must be a positive number of items, got {args.limit}; leave it out to "
            "evaluate the whole split."
        )
    if args.pictures < 0:
        raise InputError(f"--pictures must be 0 or more, got {args.pictures}.")
    model_name = args.model or DEFAULT_MODEL
    options = dict(parse_option(text) for text in args.option)
    out = Path(args.out)
    open_dataset(args.dataset, args.split, seed=args.seed)  # a bad name fails before loading
    start = time.perf_counter()
    _progress(f"dexar: loading {model_name} ...")
    loaded = _load_model(model_name, args.device)
    image_size = args.image_size or _training_image_size(loaded.model.name_or_path)
    dataset = open_dataset(args.dataset, args.split, seed=args.seed, image_size=image_size)
    total = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    _progress(
        f"dexar: loaded in {time.perf_counter() - start:.1f} s; evaluating {total} items of "
        f"{args.dataset}/{args.split} ({image_size} px) ..."
    )
    counter = _progress_bar(total)
    picture_writer = _picture_writer(out / "pictures", args.pictures)

    def on_item(item: ShapesItem, explanation: Explanation | None, result: ItemResult) -> None:
        picture_writer(item, explanation, result)
        counter()

    try:
        summary = evaluate(
            loaded,
            dataset,
            method=args.method,
            limit=args.limit,
            out=out,
            seed=args.seed,
            max_new_tokens=args.max_new_tokens,
            on_item=on_item,
            **options,
        )
    finally:
        counter(close=True)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(format_summary(summary))
    _progress(f"dexar: wrote {out}/items.jsonl and {out}/summary.json")
    return 0


def format_summary(summary: Summary) -> str:
    """The summary as plain-text tables, the chance lines under the method's numbers."""
    method = summary.method
    head = (
        f"{summary.dataset}, split {summary.split}: {summary.items} items "
        f"({summary.skipped} not explained), model {summary.model_id}, method {method}, "
        f"seed {summary.seed}, {summary.seconds:.0f} s"
    )
    segmentation = _table(
        ("sequence map vs union mask", "soft_iou", "best_iou", "epg", "snr_db"),
        [
            (LINE_NAMES[line] or method, *(_number(scores[m]) for m in scores))
            for line, scores in summary.segmentation.items()
        ],
    )
    undefined = {metric: n for metric, n in summary.undefined.items() if n}
    if undefined:
        segmentation += (
            "\n(left out as undefined: "
            + ", ".join(f"{metric} {n}" for metric, n in undefined.items())
            + ")"
        )
    grounding = summary.grounding
    tokens = _table(
        (f"object-word tokens ({grounding['tokens']})", "pointing", "iou"),
        [
            (
                LINE_NAMES[line] or method,
                _number(grounding["pointing_game"][line]),
                _number(grounding["iou"][line]),
            )
            for line in ("method", "uniform", "random_smooth")
        ],
    )
    if grounding["absent"]:
        tokens += f"\n({grounding['absent']} colour/shape tokens named no object of their item)"
    delta = summary.delta_auroc
    separation = (
        f"delta AUROC, object vs function words: {_number(delta['auroc'])} pooled "
        f"({delta['object_words']} object, {delta['function_words']} function tokens), "
        f"{_number(delta['auroc_within_answer'])} within answers ({delta['answers']} answers)"
    )
    accuracy = _table(
        ("answer accuracy", *summary.accuracy),
        [
            ("exact match", *(_number(value) for value in summary.accuracy.values())),
            ("items", *(str(n) for n in summary.kind_counts.values())),
        ],
    )
    return "\n\n".join((head, segmentation, tokens, separation, accuracy))


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    from dexar_core.cli import format_table

    return format_table(headers, rows)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}"


def _load_model(name: str, device: str | None) -> Any:
    """``load()``, with a corrupt weights file reported as the checkpoint's fault."""
    from safetensors import SafetensorError

    from dexar_core.api import load

    try:
        return load(name, device=device)
    except SafetensorError as error:
        raise CheckpointError(
            f"the weights of {name!r} are corrupt ({error}); the file is truncated or not "
            "a safetensors file. Save the checkpoint again (save_pretrained) or retrain it."
        ) from error


def _training_image_size(path: str) -> int:
    """The image size an embedded checkpoint was trained at, else the default."""
    facts = Path(path) / TRAINING_FACTS
    if facts.is_file():
        try:
            return int(json.loads(facts.read_text())["image_size"])
        except (ValueError, KeyError, TypeError):
            pass  # a hand-made checkpoint: the default size is the best guess
    return DEFAULT_IMAGE_SIZE


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress_bar(total: int) -> Callable[..., None]:
    """A step function drawing progress on stderr: tqdm when installed, else a counter."""
    try:
        from tqdm import tqdm
    except ImportError:
        done = 0

        def count(close: bool = False) -> None:
            nonlocal done
            if close:
                print(file=sys.stderr, flush=True)
                return
            done += 1
            print(f"\rdexar: {done}/{total} items", end="", file=sys.stderr, flush=True)

        return count
    bar = tqdm(total=total, desc="dexar evaluate", unit="item", file=sys.stderr)

    def step(close: bool = False) -> None:
        if close:
            bar.close()
        else:
            bar.update(1)

    return step


def _picture_writer(
    folder: Path, count: int
) -> Callable[[ShapesItem, Explanation | None, ItemResult], None]:
    """Saves the sequence overlay and the token strip of the first ``count`` explained items."""
    written = 0

    def write(item: ShapesItem, explanation: Explanation | None, result: ItemResult) -> None:
        nonlocal written
        if explanation is None or written >= count:
            return
        from PIL import Image

        from dexar_core.heatmap import paste_to_image
        from dexar_core.viz.overlay import overlay, save_png, token_strip

        written += 1
        side = (PICTURE_SIDE, PICTURE_SIDE)
        picture = item.image.resize(side, Image.Resampling.NEAREST)
        scale = PICTURE_SIDE / item.image.size[0], PICTURE_SIDE / item.image.size[1]
        left, top, right, bottom = explanation.grids[0].pixel_box
        box = (left * scale[0], top * scale[1], right * scale[0], bottom * scale[1])

        def draw(map2d: Any) -> Any:
            return paste_to_image(map2d, box, side)

        stem = folder / f"item{item.index:04d}"
        save_png(overlay(picture, draw(explanation.sequence_maps[0])), f"{stem}_sequence.png")
        save_png(
            token_strip(
                picture,
                [draw(m) for m in explanation.token_maps[0]],
                list(explanation.tokens),
                list(explanation.token_weights),
            ),
            f"{stem}_tokens.png",
        )
        save_png(item.image.resize(side, Image.Resampling.NEAREST), f"{stem}_image.png")
        (folder / f"item{item.index:04d}.json").write_text(
            json.dumps(result.to_dict(), indent=2) + "\n"
        )

    return write
