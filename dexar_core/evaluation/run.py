"""The grounded benchmark: explain a model's answers and score the maps (docs/method.md §11).

For every item of a dataset (:mod:`dexar_core.datasets.benchmark`: the shapes
benchmark, VOC-style masks, ImageNet-style folders, VQA jsonl), :func:`evaluate` asks
the model the item's question (free-run: the model generates its own answer, a caption
for ``caption`` items), explains that answer, and scores it with the chosen metric
families:

- **segmentation** (datasets with masks): the sequence map against the union of all
  objects' masks (``soft_iou``, ``best_iou``, ``epg``, ``snr``) over the valid pixels
  the model saw (a processor's crop is in no denominator: :mod:`dexar_core.seen`),
  with the uniform and the random smooth chance lines of
  :func:`dexar_core.metrics.chance_scores` computed on the same mask.
- **grounding** (datasets whose words name objects): every answer token that names an
  object of the item (:attr:`BenchmarkItem.object_words`) is scored against the mask of
  the object(s) it names: the pointing game and the IoU (``object_iou``) of its token
  map, beside the uniform pointing chance (the mask's area fraction) and the random
  smooth map's hit and IoU. A word that several objects share ("red" with two red
  shapes) names them all: its mask is the union of their masks. An object word that
  names no object of the item (the model's mistake) is counted as ``absent`` and not
  scored. Also the AUROC of ``delta^t`` with object words as positives and function
  words (:data:`FUNCTION_WORDS`) as negatives, pooled over every token of every item.
- **perturbation** (any dataset): the positive and negative normalised-perplexity AUCs
  of :mod:`dexar_core.metrics.perturbation`, for the sequence map and for a random
  smooth map on the same grids (the chance line).

Contrastive models (open_clip: their units are prompts, there is no answer) are
explained through the same path on a text instead, the item's caption
(:func:`explained_prompt`): segmentation as above, no grounding (the map explains one
whole text, so no word has a map of its own; ``Summary.not_applicable`` says why), no
accuracy (``correct`` is None), and perturbation by the image-text similarity's drop
(:mod:`dexar_core.evaluation.perturbation`: the adapter's ``unit_scores``).

Answers are judged against the references where the dataset has them. Means leave out
undefined values (NaN, and an infinite SNR when a map is zero on one side of the mask)
and count them in ``undefined``; every number comes with a 95% bootstrap interval.

With ``out``, a run is resumable and data-parallel (:mod:`dexar_core.evaluation.run_log`,
:mod:`dexar_core.evaluation.distributed`): each finished item is appended to the process's log at
once, a rerun skips the logged items, and under ``accelerate launch`` each process takes
every ``world``-th item; rank 0 merges ``items.jsonl`` and writes ``summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.datasets.benchmark import (
    GENERATED,
    Benchmark,
    BenchmarkItem,
    as_benchmark_item,
    open_benchmark,
)
from dexar_core.datasets.scenes import ScenesDataset
from dexar_core.datasets.shapes import COLORS, SHAPES, ShapesDataset
from dexar_core.errors import DatasetError, DexarError, InputError
from dexar_core.evaluation.distributed import Processes, current_processes
from dexar_core.evaluation.fingerprint import weights_fingerprint
from dexar_core.evaluation.items import evaluate_items, explained_prompt, score_item
from dexar_core.evaluation.perturbation import chance_seed, perturbation_scores
from dexar_core.evaluation.records import (
    CHANCE_LINES,
    FUNCTION_WORDS,
    METRICS,
    NOT_APPLICABLE_TO_PROMPTS,
    PERTURBATION_ORDERS,
    SEGMENTATION_METRICS,
    ItemResult,
    Summary,
    TokenGrounding,
    token_word,
    word_class,
)
from dexar_core.evaluation.run_log import (
    ITEMS_FILE,
    SUMMARY_FILE,
    append_record,
    finished_records,
    open_log,
    prepare_run,
    run_lock,
    write_atomically,
    write_items,
)
from dexar_core.evaluation.summary import summarise
from dexar_core.explaining import check_batch_size
from dexar_core.interfaces import PROMPTS
from dexar_core.metrics.bootstrap import RESAMPLES
from dexar_core.validation import check_method_options

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation
    from dexar_core.records import LoadedModel
    from dexar_plugins.manager import Catalog

__all__ = [
    "CHANCE_LINES",
    "DATASETS",
    "FUNCTION_WORDS",
    "ITEMS_FILE",
    "METRICS",
    "OBJECT_WORDS",
    "PERTURBATION_ORDERS",
    "SEGMENTATION_METRICS",
    "SUMMARY_FILE",
    "ItemResult",
    "Summary",
    "TokenGrounding",
    "chance_seed",
    "check_metrics",
    "evaluate",
    "explained_prompt",
    "open_dataset",
    "perturbation_scores",
    "score_item",
    "summarise",
    "token_word",
    "word_class",
]

DATASETS = GENERATED
"""Datasets :func:`open_dataset` opens by name (folder datasets: ``open_benchmark``)."""

OBJECT_WORDS: frozenset[str] = frozenset((*COLORS, *SHAPES))
"""Words that name an object of the shapes benchmark: its colour or its shape."""

NEEDS = {"segmentation": "has_masks", "grounding": "has_object_words"}

ANSWERS = ("generated", "reference")
"""Which answer :func:`evaluate` explains: the model's own, or the item's reference."""


def open_dataset(
    name: str, split: str = "test", *, seed: int = 0, image_size: int = 64
) -> ShapesDataset | ScenesDataset:
    """Open a split of a generated image set (``shapes``, ``scenes``) by name.

    Other datasets open with ``open_benchmark``.

    Raises:
        DatasetError: for an unknown dataset or split.
    """
    if name not in DATASETS:
        raise DatasetError(
            f"evaluate: no dataset named {name!r}; the built-in datasets are "
            f"{sorted(DATASETS)}. Folders open with open_benchmark('voc:PATH'), ..."
        )
    opened: ShapesDataset | ScenesDataset = open_benchmark(
        name, split, seed=seed, image_size=image_size
    ).dataset
    return opened


def check_metrics(metrics: Sequence[str] | None, benchmark: Benchmark) -> tuple[str, ...]:
    """The metric families to measure: the given ones checked, or the dataset's default.

    The default is segmentation and grounding where the dataset has what they need, and
    perturbation only where it has neither: perturbation costs 40 forwards per item.

    Raises:
        InputError: an unknown family, or one the dataset cannot score (no masks...).
    """
    if metrics is None:
        cheap = tuple(metric for metric, needs in NEEDS.items() if getattr(benchmark, needs))
        return cheap or ("perturbation",)
    chosen = tuple(dict.fromkeys(metrics))
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise InputError(
            f"evaluate: unknown metric {unknown[0] if unknown else '(none)'!r}; choose from "
            f"{', '.join(METRICS)} (e.g. --metrics segmentation,perturbation)."
        )
    for metric in chosen:
        if metric in NEEDS and not getattr(benchmark, NEEDS[metric]):
            missing = "object masks" if metric == "segmentation" else "words that name objects"
            raise InputError(
                f"evaluate: {benchmark.name} has no {missing}, so {metric} cannot be scored "
                "on it; use --metrics perturbation, or a dataset with masks (shapes, voc:PATH)."
            )
    return chosen


def check_answers(answers: str, benchmark: Any) -> None:
    """Refuse an unknown ``answers`` mode, or reference answers a dataset does not have.

    ``benchmark`` is a :class:`Benchmark` or a reader's dataset.

    Raises:
        InputError: ``answers`` is not one of :data:`ANSWERS`, or it is ``"reference"``
            and the dataset's first item has no reference answer (VOC).
    """
    if answers not in ANSWERS:
        raise InputError(
            f"evaluate: answers must be one of {', '.join(ANSWERS)}, got {answers!r}: "
            "generated explains the model's own answer, reference the item's."
        )
    if answers == "reference" and len(benchmark):
        if as_benchmark_item(benchmark[0], 0).references:
            return
        name = getattr(benchmark, "name", repr(benchmark))
        raise InputError(
            f"evaluate: {name} has no reference answers to teacher-force; use "
            "--answers generated (the default) on it."
        )


def evaluate(
    loaded: LoadedModel,
    dataset: Any,
    *,
    method: str = "dexar",
    metrics: Sequence[str] | None = None,
    limit: int | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    max_new_tokens: int = 40,
    replacement: str = "mean",
    resamples: int = RESAMPLES,
    on_item: Callable[[BenchmarkItem, Explanation | None, ItemResult], None] | None = None,
    catalog: Catalog | None = None,
    processes: Processes | None = None,
    batch_size: int = 1,
    answers: str = "generated",
    **options: Any,
) -> Summary:
    """Explain the model's answer on each item and score the maps.

    Args:
        loaded: what :func:`dexar_core.api.load` returned.
        dataset: a :class:`Benchmark` (``open_benchmark``) or a dataset of reader items
            (e.g. :func:`open_dataset`'s split), taken in order.
        method: the explanation method (``dexar`` or a registered baseline).
        metrics: families of :data:`METRICS`; None: segmentation and grounding where
            the dataset allows them, else perturbation (:func:`check_metrics`).
        limit: evaluate only the first ``limit`` items; all of them when None.
        out: the run folder (see :mod:`dexar_core.evaluation.run_log`); a rerun with the same
            arguments resumes it. Nothing is written when None.
        seed: seeds the random smooth chance maps (:func:`chance_seed`) and the bootstrap.
        max_new_tokens: the longest generated answer (a three-object caption takes 25).
        replacement: how perturbation removes patches: ``mean`` or ``blur``.
        resamples: bootstrap resamples of the confidence intervals.
        on_item: called after each item this process evaluates, with the item, its
            explanation (None when it could not be explained) and its result.
        catalog: the plugin catalog; the process-wide one by default.
        processes: this process's place in a data-parallel run; found from the
            environment (``accelerate launch``) by default.
        batch_size: how many of this process's items are explained together
            (:func:`dexar_core.api.explain_batch`); the records are those of a batch of
            one, but for their ``seconds``.
        answers: ``"generated"`` (default): explain the model's own greedy answer and
            judge it; ``"reference"``: explain the item's first reference answer,
            teacher-forced, so every method maps the same, correct words (the
            protocol of docs/evaluation.md); no answer is judged then (``correct`` is
            None, the summary has no accuracy).
        **options: the method's options, as for :func:`dexar_core.api.explain`.

    Returns:
        The :class:`Summary` over the first ``limit`` items, those of earlier runs in
        ``out`` included; also written to ``out/summary.json``.

    Raises:
        InputError: a bad ``limit`` or ``batch_size``, an empty dataset, metrics the
            dataset cannot score, a several-process run without ``out``, or an ``out``
            holding another run.
        MethodError: an unknown method or bad method options (before the first item).
        UnsupportedModelError: a method the model's architecture cannot run.

    A contrastive model (its adapter's units are prompts) is explained on each item's
    caption instead of an answer (:func:`explained_prompt`), without grounding, and
    ``max_new_tokens`` does not apply.
    """
    from dexar_plugins import default_catalog

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(
            f"evaluate: limit must be a positive number of items, got {limit!r}; leave it "
            "out (no --limit) to evaluate the whole split."
        )
    check_batch_size(batch_size)
    benchmark = dataset if isinstance(dataset, Benchmark) else _as_benchmark(dataset)
    chosen = check_metrics(metrics, benchmark)
    count = len(benchmark) if limit is None else min(limit, len(benchmark))
    if count == 0:
        raise InputError("evaluate: the dataset has no item; give a non-empty split.")
    check_answers(answers, benchmark)
    units = loaded.adapter.units
    if answers == "reference" and units == PROMPTS:
        raise InputError(
            f"evaluate: {loaded.model_id} is contrastive: it explains prompts and gives no "
            "answer to teacher-force; leave out --answers reference for it."
        )
    if units == PROMPTS:  # no answer: no word has a map of its own to point with
        chosen = tuple(metric for metric in chosen if metric != "grounding")
        if not chosen:
            raise InputError(
                f"evaluate: grounding is {NOT_APPLICABLE_TO_PROMPTS['grounding']}; use "
                f"--metrics segmentation,perturbation for {loaded.model_id}."
            )
    plugins = default_catalog() if catalog is None else catalog
    check_method_options(method, options, plugins)  # here, not on every item
    team = current_processes() if processes is None else processes
    if out is None and team.world > 1:
        raise InputError(
            "evaluate: a several-process run needs an out folder to merge the processes' "
            "items in; give --out."
        )
    config = {
        "model": loaded.model_id,
        "weights": weights_fingerprint(loaded.model),
        "dataset": repr(benchmark),
        "split": benchmark.split,
        "method": method,
        "options": options,
        "metrics": chosen,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "replacement": replacement,
        "answers": answers,
    }
    if loaded.adapter_options:  # absent when empty, so older run folders still resume
        config["adapter_options"] = dict(loaded.adapter_options)
    with nullcontext() if out is None else run_lock(out, team):
        records: dict[int, dict[str, Any]] = {}
        if out is not None:
            prepare_run(out, config, team)
            records = finished_records(out)
            team.barrier()  # every process has read the logs before any appends to them
        log = None if out is None else open_log(out, team.rank)
        try:
            pending = [
                position
                for position in range(count)
                if position not in records and team.owns(position)
            ]
            for first in range(0, len(pending), batch_size):
                positions = pending[first : first + batch_size]
                items = [benchmark[position] for position in positions]
                evaluated = evaluate_items(
                    loaded,
                    items,
                    units=units,
                    method=method,
                    metrics=chosen,
                    seed=seed,
                    max_new_tokens=max_new_tokens,
                    replacement=replacement,
                    catalog=plugins,
                    options=options,
                    answers=answers,
                )
                for position, item, (explanation, result) in zip(
                    positions, items, evaluated, strict=True
                ):
                    records[position] = result.to_dict()
                    if log is not None:
                        append_record(log, records[position])
                    if on_item is not None:
                        on_item(item, explanation, result)
        finally:
            if log is not None:
                log.close()
        if out is not None:
            team.barrier()  # every process has logged its items
            records = finished_records(out)
        missing = [position for position in range(count) if position not in records]
        if missing:
            raise DexarError(
                f"evaluate: items {missing[:5]} have no record after every process finished; "
                "rerun the same command to evaluate them."
            )
        ordered = [records[position] for position in range(count)]
        summary = summarise(
            [ItemResult.from_dict(record) for record in ordered],
            dataset=repr(benchmark),
            split=benchmark.split,
            model_id=loaded.model_id,
            method=method,
            options=options,
            seed=seed,
            metrics=chosen,
            resamples=resamples,
            perturbation_measure=loaded.adapter.perturbation_measure,
        )
        summary = attrs.evolve(
            summary,
            not_applicable=NOT_APPLICABLE_TO_PROMPTS if units == PROMPTS else {},
        )
        if out is not None and team.is_main:
            write_items(out, ordered)
            write_atomically(
                Path(out) / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2) + "\n"
            )
        if out is not None:
            team.barrier()  # nobody reads the merged files before rank 0 has written them
        return summary


def _as_benchmark(dataset: Any) -> Benchmark:
    """A reader's dataset seen as a :class:`Benchmark`; what it holds read off item 0."""
    if len(dataset) == 0:
        raise InputError("evaluate: the dataset has no item; give a non-empty split.")
    first = as_benchmark_item(dataset[0], 0)
    return Benchmark(
        repr(dataset),
        str(getattr(dataset, "split", "")),
        dataset,
        has_masks=first.mask is not None,
        has_object_words=bool(first.object_words),
    )
