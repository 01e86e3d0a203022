"""Items per second of the perturbation metric: one set a call, the previous batches, now.

For each embedded model, explains a few shapes items once, then scores the perturbation
metric of each item (the sequence map and the random smooth chance map, positive and
negative orders, r = 0, 0.1, ..., 0.9: 40 image sets an item) three ways, interleaved
in rounds so the machine's load moves them alike:

- ``one_by_one``: every set in a ``unit_scores`` call of its own (a full ``prepare`` and
  a forward of one);
- ``previous``: the code before batched perturbation (commit ``fe3fe21``): each curve's
  10 sets in forwards of 4, each set fully prepared;
- ``batched``: :func:`dexar_core.evaluation.perturbation.perturbation_scores` now (the
  clean image once, the item's 37 sets in forwards of ``PERPLEXITY_BATCH``, perturbed
  copies only re-read by the processor); also at other batch sizes with ``--sweep``.

Prints CPU seconds (``time.process_time``; one thread) and wall seconds per item, items
per second and the ratios to ``one_by_one`` and ``previous``, and checks that every way
gives the same AUCs (relative 1e-5).

    python benchmarks/bench_perturbation.py --items 4 --rounds 3 --sweep 4,8,40
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

from dexar_core.api import explain, load
from dexar_core.datasets.benchmark import as_benchmark_item
from dexar_core.evaluation.perturbation import (
    _chance_maps,
    explained_units,
    perturbation_scores,
)
from dexar_core.evaluation.records import PERTURBATION_ORDERS
from dexar_core.evaluation.run import explained_prompt, open_dataset
from dexar_core.metrics import perturbation as metric_perturbation
from dexar_core.metrics.perturbation import FRACTIONS, level_images, trapezoid_auc

MODELS = ("shapes-llava", "shapes-qwen2vl", "shapes-blip2", "shapes-florence2", "shapes-clip")


def rankings(item: Any, explanation: Any) -> list[tuple[str, list[Any], str]]:
    lines = (
        ("method", list(explanation.sequence_maps)),
        ("random_smooth", _chance_maps(item, explanation, 0)),
    )
    return [(line, maps, order) for line, maps in lines for order in PERTURBATION_ORDERS]


def aucs_of(curves: list[list[float]], drawn: list[tuple[str, list[Any], str]]) -> dict[str, float]:
    out = {}
    for (line, _, order), scores in zip(drawn, curves, strict=True):
        normalised = (
            [value / scores[0] for value in scores]
            if scores[0] > 0
            else [float("nan")] * len(scores)
        )
        out[f"{line}:{order}"] = trapezoid_auc(FRACTIONS, normalised)
    return out


def level_sets(loaded: Any, item: Any, explanation: Any, maps: list[Any], order: str) -> list[Any]:
    return level_images(
        loaded,
        [item.image.convert("RGB")],
        maps,
        explanation.grids,
        FRACTIONS,
        order=order,
        replacement="mean",
        blur_radius=8.0,
    )


def one_by_one(loaded: Any, item: Any, explanation: Any) -> dict[str, float]:
    units, drawn = explained_units(explanation), rankings(item, explanation)
    curves = []
    for _, maps, order in drawn:
        sets = level_sets(loaded, item, explanation, maps, order)
        curves.append(
            [loaded.adapter.unit_scores(loaded, [s], explanation.prompt, units)[0] for s in sets]
        )
    return aucs_of(curves, drawn)


def previous_perplexities(loaded: Any, sets: list[Any], prompt: str, ids: list[int]) -> list[float]:
    """answer_perplexities as it was: forwards of 4 sets, every set fully prepared."""
    adapter, results = loaded.adapter, []
    for start in range(0, len(sets), 4):
        passes = [
            adapter.teacher_forced(loaded, adapter.prepare(loaded, list(s), prompt), ids)
            for s in sets[start : start + 4]
        ]
        rows = torch.tensor(passes[0].query_rows, dtype=torch.long)
        inputs = metric_perturbation._batched([forced.inputs for forced in passes])
        if "logits_to_keep" in inputs:
            inputs["logits_to_keep"] = rows
        with torch.no_grad():
            logits = loaded.model(**inputs).logits.float()
        if logits.shape[1] != rows.numel():
            logits = logits[:, rows]
        log_probs = torch.log_softmax(logits, dim=-1)[:, torch.arange(len(ids)), torch.tensor(ids)]
        results.extend(torch.exp(-log_probs.mean(dim=-1)).tolist())
    return results


def previous(loaded: Any, item: Any, explanation: Any) -> dict[str, float]:
    units, drawn = explained_units(explanation), rankings(item, explanation)
    curves = []
    for _, maps, order in drawn:
        sets = level_sets(loaded, item, explanation, maps, order)
        if loaded.adapter.perturbation_measure == "perplexity":
            curves.append(previous_perplexities(loaded, sets, explanation.prompt, list(units.ids)))
        else:  # open_clip batched its images by 16 already: one call per curve
            curves.append(list(loaded.adapter.unit_scores(loaded, sets, explanation.prompt, units)))
    return aucs_of(curves, drawn)


def batched(loaded: Any, item: Any, explanation: Any) -> dict[str, float]:
    scores = perturbation_scores(loaded, item, explanation, 0)["perturbation"]
    return {
        f"{line}:{order}": value
        for line, by_order in scores.items()
        for order, value in by_order.items()
    }


def at_batch_size(size: int) -> Any:
    """The batched way with ``size`` sets a forward instead of ``PERPLEXITY_BATCH``."""

    def way(loaded: Any, item: Any, explanation: Any) -> dict[str, float]:
        def unit_scores(loaded: Any, image_sets: Any, prompt: str, units: Any) -> list[float]:
            return metric_perturbation.answer_perplexities(
                loaded, image_sets, prompt, units.ids, batch_size=size
            )

        loaded.adapter.unit_scores = unit_scores  # this instance only, until the finally
        try:
            return batched(loaded, item, explanation)
        finally:
            del loaded.adapter.unit_scores

    return way


def timed(
    way: Any, loaded: Any, pairs: list[tuple[Any, Any]]
) -> tuple[float, float, list[dict[str, float]]]:
    wall, cpu = time.perf_counter(), time.process_time()
    results = [way(loaded, item, explanation) for item, explanation in pairs]
    return time.perf_counter() - wall, time.process_time() - cpu, results


def measure(name: str, items: int, rounds: int, sweep: list[int]) -> dict[str, Any]:
    loaded = load(name)
    dataset = open_dataset("shapes")
    pairs = []
    for index in range(items):
        item = as_benchmark_item(dataset[index], index)
        prompt = explained_prompt(item, loaded.adapter.units)
        pairs.append((item, explain(loaded, item.image, prompt, max_new_tokens=40)))
    ways: dict[str, Any] = {"one_by_one": one_by_one, "previous": previous, "batched": batched}
    for size in sweep if loaded.adapter.perturbation_measure == "perplexity" else []:
        ways[f"batched@{size}"] = at_batch_size(size)
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    reference = None
    for _ in range(rounds + 1):  # the first round warms up and is not counted
        for way, function in ways.items():
            wall, cpu, results = timed(function, loaded, pairs)
            times[way].append((wall, cpu))
            if reference is None:
                reference = results
            for got, want in zip(results, reference, strict=True):
                np.testing.assert_allclose(
                    [got[k] for k in want], list(want.values()), rtol=1e-5, err_msg=way
                )
    row: dict[str, Any] = {"model": name, "items": items, "rounds": rounds, "ways": {}}
    for way, samples in times.items():
        wall = statistics.median(s[0] for s in samples[1:]) / items
        cpu = statistics.median(s[1] for s in samples[1:]) / items
        row["ways"][way] = {
            "wall_s_per_item": wall,
            "cpu_s_per_item": cpu,
            "items_per_cpu_s": 1 / cpu,
        }
    for way in ways:
        for base in ("one_by_one", "previous"):
            row["ways"][way][f"speedup_cpu_vs_{base}"] = (
                row["ways"][base]["cpu_s_per_item"] / row["ways"][way]["cpu_s_per_item"]
            )
            row["ways"][way][f"speedup_wall_vs_{base}"] = (
                row["ways"][base]["wall_s_per_item"] / row["ways"][way]["wall_s_per_item"]
            )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sweep", default="", help="other batch sizes of the batched way, e.g. 4,8,40"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="", help="write every measurement here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sweep = [int(size) for size in args.sweep.split(",") if size]
    rows = []
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), "
        f"{args.items} items, median of {args.rounds} rounds"
    )
    print(
        f"{'model':18} {'way':12} {'CPU s/item':>10} {'wall s/item':>11} "
        f"{'items/CPU s':>11} {'x one-by-one':>12} {'x previous':>10}"
    )
    for name in args.models.split(","):
        row = measure(name, args.items, args.rounds, sweep)
        rows.append(row)
        for way, value in row["ways"].items():
            print(
                f"{name:18} {way:12} {value['cpu_s_per_item']:10.3f} "
                f"{value['wall_s_per_item']:11.3f} "
                f"{value['items_per_cpu_s']:11.2f} {value['speedup_cpu_vs_one_by_one']:11.2f}x "
                f"{value['speedup_cpu_vs_previous']:9.2f}x",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"command": "bench_perturbation.py", "args": vars(args), "rows": rows},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
