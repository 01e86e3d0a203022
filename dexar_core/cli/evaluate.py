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

from dexar_core.cli.explain import default_model
from dexar_core.cli.key_values import parse_option
from dexar_core.cli.loading import load_options
from dexar_core.errors import CheckpointError, InputError, MethodError, UnsupportedModelError
from dexar_core.zoo import DEFAULT_IMAGE_SIZE, training_image_size

if TYPE_CHECKING:
    from dexar_core.datasets.benchmark import BenchmarkItem
    from dexar_core.evaluation.distributed import Processes
    from dexar_core.evaluation.run import ItemResult, Summary
    from dexar_core.explanation import Explanation

SUMMARIES_FILE = "summary.json"
"""``OUT/summary.json``: every method's summary, by method."""

PAIRED_FILE = "paired.json"
"""``OUT/paired.json``: dexar's paired differences against every other method run."""


def run_evaluate(args: argparse.Namespace) -> int:
    """Load the model, run the benchmark per method, print the report; write the outputs."""
    from dexar_core.cli.progress import quiet_third_party
    from dexar_core.datasets.benchmark import open_benchmark
    from dexar_core.evaluation.distributed import current_processes
    from dexar_core.evaluation.records import json_ready
    from dexar_core.evaluation.report import format_paired, format_report
    from dexar_core.evaluation.run import check_answers, check_metrics, evaluate
    from dexar_core.evaluation.run_log import check_unlocked, write_atomically
    from dexar_core.explaining import check_batch_size
    from dexar_core.validation import (
        check_device,
        check_max_new_tokens,
        check_method_options,
        check_output_folder,
    )
    from dexar_core.viz.pages import evaluation_index
    from dexar_core.viz.report import write_html
    from dexar_plugins import default_catalog

    quiet_third_party(args.verbose)
    if args.limit is not None and args.limit < 1:
        raise InputError(
            f"--limit must be a positive number of items, got {args.limit}; leave it out to "
            "evaluate the whole split."
        )
    check_batch_size(args.batch_size, flag="--batch-size")
    if args.pictures < 0:
        raise InputError(f"--pictures must be 0 or more, got {args.pictures}.")
    if args.resamples < 0:
        raise InputError(f"--resamples must be 0 (no intervals) or more, got {args.resamples}.")
    labelled = method_labels(args.methods)
    methods = list(labelled)
    metrics = None if args.metrics is None else _names(args.metrics, "--metrics")
    options = _method_options(args.option, methods)
    if args.paired_with is not None and args.paired_with not in labelled:
        raise InputError(
            f"--paired-with {args.paired_with!r} is not in --methods ({', '.join(methods)}); "
            "give one of those labels."
        )
    model_name = args.model or default_model()
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

    unloaded = dataset()  # bad names, datasets and answers fail before loading
    check_metrics(metrics, unloaded)
    check_answers(args.answers, unloaded)
    catalog = default_catalog()
    for method in methods:
        check_method_options(labelled[method], options[method], catalog)
    check_max_new_tokens(args.max_new_tokens)
    check_output_folder(out)
    for method in methods:
        check_unlocked(out / method)
    check_device(args.device)
    team = current_processes()
    start = time.perf_counter()
    _progress(f"dexar: loading {model_name} ...", team)
    loaded = _load_model(
        model_name, args.device or team.device, {"dtype": args.dtype, **load_options(args)}
    )
    image_size = args.image_size or training_image_size(loaded)
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
                method=labelled[method],
                metrics=metrics,
                limit=args.limit,
                out=folder,
                seed=args.seed,
                max_new_tokens=args.max_new_tokens,
                replacement=args.replacement,
                resamples=args.resamples,
                on_item=on_item,
                processes=team,
                batch_size=args.batch_size,
                answers=args.answers,
                **options[method],
            )
        except (MethodError, UnsupportedModelError) as error:  # the architecture, not input
            not_supported[method], failure = str(error), error
            _progress(f"dexar: {method}: not supported: {error}", team)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"rerun the same command to resume: the items finished so far are kept in {out}/"
            ) from None
        finally:
            counter(close=True)
    if not summaries and failure is not None:
        raise failure
    _refuse_all_unexplained(summaries, out)
    if not team.is_main:
        return 0
    by_method: dict[str, Any] = {
        method: summaries[method].to_dict()
        if method in summaries
        else f"not supported: {not_supported[method]}"
        for method in methods
    }
    write_atomically(out / SUMMARIES_FILE, json.dumps(by_method, indent=2) + "\n")
    tables = format_report(summaries, not_supported)
    paired = _paired_differences(out, summaries, args.seed, args.resamples, args.paired_with)
    if paired["against"]:
        write_atomically(out / PAIRED_FILE, json.dumps(json_ready(paired), indent=2) + "\n")
        tables += "\n\n" + format_paired(paired["reference"], paired["against"])
    index = write_html(evaluation_index(out, tables, list(summaries)), out / "index.html")
    if args.json:
        print(json.dumps(by_method, indent=2))
    else:
        print(tables)
    _progress(f"dexar: wrote {out}/<method>/items.jsonl, {out}/{SUMMARIES_FILE} and {index}", team)
    return 0


def _paired_differences(
    out: Path, summaries: dict[str, Summary], seed: int, resamples: int, reference: str | None
) -> dict[str, Any]:
    """``reference`` (default ``dexar``, else the first method) minus every other method,
    paired over the items; ``reference`` may be a method that was not supported.

    Read from the run folders, so a resumed run pairs exactly the items it summarised.
    """
    from dexar_core.evaluation.records import ItemResult
    from dexar_core.evaluation.run_log import finished_records
    from dexar_core.evaluation.summary import paired_differences

    methods = list(summaries)
    if reference is None:
        reference = "dexar" if "dexar" in summaries else methods[0]
    if reference not in summaries:
        return {"reference": reference, "against": {}}
    results = {
        method: [
            ItemResult.from_dict(record)
            for position, record in sorted(finished_records(out / method).items())
            if position < summaries[method].items
        ]
        for method in methods
    }
    against = {
        method: paired_differences(
            results[reference],
            results[method],
            seed=seed,
            resamples=resamples,
            perturbation_measure=summaries[reference].perturbation_measure,
        )
        for method in methods
        if method != reference
    }
    return {"reference": reference, "against": against}


def _refuse_all_unexplained(summaries: dict[str, Summary], out: Path) -> None:
    """A run where no item of any method was explained is a failure, not a 0-score table."""
    if not summaries or any(summary.skipped < summary.items for summary in summaries.values()):
        return
    from dexar_core.errors import DexarError

    reasons = sorted(
        {
            str(json.loads(line).get("error"))
            for method in summaries
            if (out / method / "items.jsonl").is_file()
            for line in (out / method / "items.jsonl").read_text().splitlines()[:20]
            if line.strip()
        }
    )
    raise DexarError(
        f"evaluate: no item could be explained by any method ({', '.join(summaries)}); the "
        f"reasons: {'; '.join(reasons[:3]) or 'unknown'}. Check the model on one item with "
        "`dexar explain` first."
    )


def method_labels(text: str) -> dict[str, str]:
    """``--methods``: each entry a method, or ``LABEL=METHOD`` for a second option set.

    ``dexar,scores=dexar`` runs dexar twice, into ``OUT/dexar/`` and ``OUT/scores/``,
    with ``--option scores.relevance=score_gradient`` for the second; the label names
    the run folder, the tables' rows and the ``--option`` prefix.

    Raises:
        InputError: no entry, a label given twice, or a label that is not a plain name
            (letters, digits and ``_``: it becomes a folder name and an ``--option``
            prefix, where ``-`` would read as ``_``).
    """
    labelled: dict[str, str] = {}
    for entry in _names(text, "--methods"):
        label, equals, method = (part.strip() for part in entry.partition("="))
        method = method if equals else label
        if not label or not method or not all(c.isalnum() or c == "_" for c in label):
            raise InputError(
                f"--methods entry {entry!r} is not METHOD or LABEL=METHOD with a plain label "
                "(letters, digits and _), e.g. --methods dexar,scores=dexar."
            )
        if label in labelled:
            raise InputError(
                f"--methods names {label!r} twice; give a second option set its own label, "
                f"e.g. {label}2={method}."
            )
        labelled[label] = method
    return labelled


def _names(text: str, flag: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise InputError(f"{flag} needs at least one name, got {text!r}.")
    return names


def _method_options(texts: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``KEY=VALUE`` for every method, ``METHOD.KEY=VALUE`` for one of them.

    A prefixed option overrides an unprefixed one for its method; the same option given
    twice at the same level is refused rather than letting one silently win.
    """
    options: dict[str, dict[str, Any]] = {method: {} for method in methods}
    given: set[tuple[str, str]] = set()
    for text in texts:
        key, value = parse_option(text)
        method, dot, name = key.rpartition(".")
        if dot and method not in options:
            raise InputError(
                f"--option {text!r} is for method {method!r}, which is not in --methods "
                f"({', '.join(methods)}); fix the prefix or add the method."
            )
        if (method, name) in given:
            raise InputError(f"--option {key} is given twice; give it once.")
        given.add((method, name))
        for target in [method] if dot else methods:
            if not dot and (target, name) in given:
                continue  # an earlier METHOD.KEY= for this method wins over KEY=
            options[target][name] = value
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
        from dexar_core.viz.comparison import save_figure
        from dexar_core.viz.figures import sequence_figure, tokens_figure
        from dexar_core.viz.picture import shown_picture

        written += 1
        stem = folder / f"item{item.index:04d}"
        save_figure(sequence_figure(explanation, item.image), f"{stem}_sequence.png")
        save_figure(tokens_figure(explanation, item.image), f"{stem}_tokens.png")
        shown_picture(item.image).save(f"{stem}_image.png")
        (folder / f"item{item.index:04d}.json").write_text(
            json.dumps(result.to_dict(), indent=2) + "\n"
        )

    return write
