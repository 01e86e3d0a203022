"""The Florence-2 runs of docs/encoder_decoder.md, one per ``through_encoder`` value.

Usage::

    python docs/results/through_encoder.py run OUT [--limit 50] [--teacher-forced]
    python docs/results/through_encoder.py paired OUT

``run``: ``dexar evaluate`` has no flag for adapter options, so this evaluates
``shapes-florence2`` with ``Florence2Adapter(through_encoder=ROUTE)`` for every route and
method into ``OUT/ROUTE/METHOD``, on one thread, on the first items of the shapes test
split at the model's training size, seed 0, as ``dexar evaluate --limit N`` does. By
default the model answers freely (:func:`dexar_core.evaluation.evaluate`); with
``--teacher-forced`` each item's reference answer is explained instead
(``answers="reference"``, as ``dexar evaluate --answers reference``).
``python docs/results/tables.py OUT/ROUTE`` prints a route's table.

``paired``: the paired differences, on the same items, of each route against ``none``
for every method, and of ``dexar`` through each route against every baseline read
directly: sequence best IoU (mean over items) and per-token pointing (hits over object
words), with 95% percentile intervals of a bootstrap over items.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import attrs
import numpy as np
import torch

import dexar_core as dexar
from dexar_core.datasets.benchmark import open_benchmark
from dexar_core.evaluation import evaluate
from dexar_core.metrics.bootstrap import percentile_interval, resample_indices
from dexar_core.zoo import training_image_size
from dexar_florence2.adapter import Florence2Adapter

ROUTES = ("none", "rollout", "gradient")
METHODS = ("dexar", "dexar_nohead", "attention", "attn_grad", "legrad")


def run(out: Path, limit: int, forced: bool) -> None:
    """Evaluate every route and method into ``out``."""
    torch.set_num_threads(1)
    loaded = dexar.load("shapes-florence2")
    benchmark = open_benchmark("shapes", "test", seed=0, image_size=training_image_size(loaded))
    for route in ROUTES:
        routed = attrs.evolve(loaded, adapter=Florence2Adapter(through_encoder=route))
        for method in METHODS:
            folder = out / route / method
            answers = "reference" if forced else "generated"
            evaluate(routed, benchmark, method=method, limit=limit, out=folder, answers=answers)
            print(route, method, flush=True)


def per_item(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best IoU, pointing hits and object-word counts of each item of one run."""
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    rows.sort(key=lambda row: row["index"])
    best = np.array([row["segmentation"]["best_iou"] for row in rows], dtype=float)
    grounded = [row.get("token_grounding") or [] for row in rows]
    hits = np.array([sum(bool(t["pointing_game"]) for t in tokens) for tokens in grounded])
    return best, hits, np.array([len(tokens) for tokens in grounded])


def difference(first: Path, second: Path) -> str:
    """``first - second``: best IoU and pointing, with their 95% intervals."""
    best_a, hits_a, words = per_item(first)
    best_b, hits_b, words_b = per_item(second)
    if not np.array_equal(words, words_b):
        raise SystemExit(f"{first} and {second} do not score the same object words")
    draws = resample_indices(len(best_a))
    best = best_a - best_b
    low, high = percentile_interval(best[draws].mean(axis=1))
    pointing = (hits_a - hits_b) / words.sum()
    counts = np.maximum(words[draws].sum(axis=1), 1)
    p_low, p_high = percentile_interval((hits_a - hits_b)[draws].sum(axis=1) / counts)
    return (
        f"{best.mean():+.3f} [{low:+.2f}, {high:+.2f}] | "
        f"{pointing.sum():+.3f} [{p_low:+.2f}, {p_high:+.2f}]"
    )


def paired(out: Path) -> None:
    """Print the paired differences as a Markdown table."""
    print("| comparison | best IoU difference | pointing difference |")
    print("|---|---|---|")
    for route in ROUTES[1:]:
        for method in METHODS:
            line = difference(out / route / method, out / "none" / method)
            print(f"| {method}: {route} - none | {line} |")
    for route in ROUTES[1:]:
        for baseline in METHODS[1:]:
            line = difference(out / route / "dexar", out / "none" / baseline)
            print(f"| dexar {route} - {baseline} none | {line} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "paired"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--teacher-forced", action="store_true")
    arguments = parser.parse_args()
    if arguments.command == "run":
        run(arguments.out, arguments.limit, arguments.teacher_forced)
    else:
        paired(arguments.out)
