"""``dexar evaluate``: run a benchmark for one or more methods and print the tables.

The work is :func:`dexar_core.evaluation.run.evaluate`; this module opens the dataset, loads
the model, runs each method into its own resumable run folder (``OUT/<method>/``),
shows progress on stderr, saves pictures of the first items when asked, and prints the
report (:mod:`dexar_core.evaluation.report`). Under ``accelerate launch`` every
process runs this same code on its share of the items.

A method the model's architecture cannot run (``evaluate`` raises a
:class:`MethodError` or an :class:`UnsupportedModelError`, e.g. ``rollout`` on an
encoder-decoder model) does not stop the others: its entry in ``OUT/summary.json`` is
the string ``"not supported: <reason>"``, the report lists it after the tables, and the
command exits 0 when at least one method ran (else it raises the last such error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.cli.explain import DEFAULT_MODEL, parse_option
from dexar_core.cli.loading import load_options
from dexar_core.errors import CheckpointError, InputError, MethodError, UnsupportedModelError
from dexar_core.zoo import TRAINING_FACTS

if TYPE_CHECKING:
    from dexar_core.datasets.benchmark import BenchmarkItem
    from dexar_core.evaluation.distributed import Processes
    from dexar_core.evaluation.run import ItemResult, Summary
    from dexar_core.explanation import Explanation

DEFAULT_IMAGE_SIZE = 64
PICTURE_SIDE = 256  # the benchmark's 64-pixel images are too small to read as overlays
SUMMARIES_FILE = "summary.json"
"""``OUT/summary.json``: every method's summary, by method."""


def run_evaluate(args: argparse.Namespace) -> int:
    """Load the model, run the benchmark per method, print the report; write the outputs."""
    from dexar_core.datasets.benchmark import open_benchmark
    from dexar_core.evaluation.distributed import current_processes
    from dexar_core.evaluation.report import format_report
    from dexar_core.evaluation.run import check_metrics, evaluate
    from dexar_core.evaluation.run_log import write_atomically
    from dexar_plugins import default_catalog

    if args.limit is not None and args.limit < 1:
        raise InputError(
            f"--limit must be a positive number of items, got {args.limit}; leave it out to "
            "evaluate the whole split."
        )
    if args.pictures < 0:
        raise InputError(f"--pictures must be 0 or more, got {args.pictures}.")
    if args.resamples < 0:
        raise InputError(f"--resamples must be 0 (no intervals) or more, got {args.resamples}.")
    methods = _names(args.methods, "--methods")
    metrics = None if args.metrics is None else _names(args.metrics, "--metrics")
    options = _method_options(args.option, methods)
    model_name = args.model or DEFAULT_MODEL
    out = Path(args.out)

    def dataset(image_size: int = DEFAULT_IMAGE_SIZE) -> Any:
        return open_benchmark(
            args.dataset,
            args.split,
            seed=args.seed,
            image_size=image_size,
            prompt=args.prompt,
            class_index=args.class_index,
        )

    check_metrics(metrics, dataset())  # bad names and datasets fail before loading
    catalog = default_catalog()
    for method in methods:
        catalog.method(method).factory(**options[method])
    team = current_processes()
    start = time.perf_counter()
    _progress(f"dexar: loading {model_name} ...", team)
    loaded = _load_model(
        model_name, args.device or team.device, {"dtype": args.dtype, **load_options(args)}
    )
    image_size = args.image_size or _training_image_size(getattr(loaded.model, "name_or_path", ""))
    benchmark = dataset(image_size)
    total = len(benchmark) if args.limit is None else min(args.limit, len(benchmark))
    shard = f" (process {team.rank + 1} of {team.world})" if team.world > 1 else ""
    _progress(
        f"dexar: loaded in {time.perf_counter() - start:.1f} s; evaluating {total} items of "
        f"{args.dataset}{'/' + benchmark.split if benchmark.split else ''} with "
        f"{', '.join(methods)}{shard} ...",
        team,
    )
    summaries: dict[str, Summary] = {}
    not_supported: dict[str, str] = {}
    failure: Exception | None = None
    for method in methods:
        folder = out / method
        counter = _progress_bar(_remaining(folder, total, team), method, team)
        picture_writer = _picture_writer(folder / "pictures", args.pictures)

        def on_item(
            item: BenchmarkItem,
            explanation: Explanation | None,
            result: ItemResult,
            write: Callable[..., None] = picture_writer,
            step: Callable[..., None] = counter,
        ) -> None:
            write(item, explanation, result)
            step()

        try:
            summaries[method] = evaluate(
                loaded,
                benchmark,
                method=method,
                metrics=metrics,
                limit=args.limit,
                out=folder,
                seed=args.seed,
                max_new_tokens=args.max_new_tokens,
                replacement=args.replacement,
                resamples=args.resamples,
                on_item=on_item,
                processes=team,
                **options[method],
            )
        except (MethodError, UnsupportedModelError) as error:  # the architecture, not input
            not_supported[method], failure = str(error), error
            _progress(f"dexar: {method}: not supported: {error}", team)
        finally:
            counter(close=True)
    if not summaries and failure is not None:
        raise failure
    if not team.is_main:
        return 0
    by_method: dict[str, Any] = {
        method: summaries[method].to_dict()
        if method in summaries
        else f"not supported: {not_supported[method]}"
        for method in methods
    }
    write_atomically(out / SUMMARIES_FILE, json.dumps(by_method, indent=2) + "\n")
    if args.json:
        print(json.dumps(by_method, indent=2))
    else:
        print(format_report(summaries, not_supported))
    _progress(f"dexar: wrote {out}/<method>/items.jsonl and {out}/{SUMMARIES_FILE}", team)
    return 0


def _names(text: str, flag: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise InputError(f"{flag} needs at least one name, got {text!r}.")
    return names


def _method_options(texts: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``KEY=VALUE`` for every method, ``METHOD.KEY=VALUE`` for one of them."""
    options: dict[str, dict[str, Any]] = {method: {} for method in methods}
    for text in texts:
        key, value = parse_option(text)
        method, dot, name = key.rpartition(".")
        if not dot:
            for chosen in options.values():
                chosen[key] = value
        elif method in options:
            options[method][name] = value
        else:
            raise InputError(
                f"--option {text!r} is for method {method!r}, which is not in --methods "
                f"({', '.join(methods)}); fix the prefix or add the method."
            )
    return options


def _remaining(folder: Path, total: int, team: Processes) -> int:
    """How many of this process's items the run folder does not hold yet."""
    from dexar_core.evaluation.run_log import finished_records

    done = finished_records(folder) if folder.is_dir() else {}
    mine = [p for p in range(total) if team.owns(p)]
    return sum(p not in done for p in mine)


def _load_model(name: str, device: str | None, options: dict[str, Any]) -> Any:
    """``load()``, with a corrupt weights file reported as the checkpoint's fault."""
    from safetensors import SafetensorError

    from dexar_core.api import load

    try:
        return load(name, device=device, **options)
    except SafetensorError as error:
        raise CheckpointError(
            f"the weights of {name!r} are corrupt ({error}); the file is truncated or not "
            "a safetensors file. Save the checkpoint again (save_pretrained) or retrain it."
        ) from error


def _training_image_size(path: str) -> int:
    """The image size an embedded checkpoint was trained at, else the default.

    ``path`` is "" for a model without a checkpoint folder (open_clip: the default; its
    transform resizes every image to the model's own input size anyway).
    """
    if not path:
        return DEFAULT_IMAGE_SIZE
    facts = Path(path) / TRAINING_FACTS
    if facts.is_file():
        try:
            return int(json.loads(facts.read_text())["image_size"])
        except (ValueError, KeyError, TypeError):
            pass  # a hand-made checkpoint: the default size is the best guess
    return DEFAULT_IMAGE_SIZE


def _progress(message: str, team: Processes) -> None:
    """A line on stderr, from rank 0 only so several processes do not repeat it."""
    if team.is_main:
        print(message, file=sys.stderr, flush=True)


def _progress_bar(total: int, method: str, team: Processes) -> Callable[..., None]:
    """A step function drawing this process's progress on stderr (tqdm, else a counter)."""
    label = f"{method} [{team.rank}]" if team.world > 1 else method
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
            print(f"\rdexar: {label}: {done}/{total} items", end="", file=sys.stderr, flush=True)

        return count
    bar = tqdm(total=total, desc=f"dexar evaluate {label}", unit="item", file=sys.stderr)

    def step(close: bool = False) -> None:
        if close:
            bar.close()
        else:
            bar.update(1)

    return step


def _picture_writer(
    folder: Path, count: int
) -> Callable[[BenchmarkItem, Explanation | None, ItemResult], None]:
    """Saves the sequence overlay and the token strip of the first ``count`` explained items."""
    written = 0

    def write(item: BenchmarkItem, explanation: Explanation | None, result: ItemResult) -> None:
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
