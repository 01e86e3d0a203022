"""Items per second of ``explain_batch`` at batch size 1 against 2, 4 and 8, side by side.

For each model, the same items are explained at every batch size in turn, in rounds
(batch sizes interleaved, every other round in reverse order, so the machine's
load moves them alike), twice: as free runs
(the model generates its answer, as ``dexar evaluate`` does) and with given answers
(teacher-forced). Prints, per model, mode and batch size, the median over rounds of the
CPU seconds (``time.process_time``: this process's compute, which a neighbour's load
does not stretch at one thread) and of the wall seconds, items per second from each,
and the speed-up over batch size 1. Checks that every batch size gives batch size 1's
answers and token weights (relative 1e-5), and says which adapters cannot batch.

Models: the embedded ones (shapes-llava, shapes-qwen2vl, shapes-blip2, shapes-florence2;
those whose adapter does not batch run one at a time, so their ratio is about 1) and
``mid``, the random-weight mid-size LLaVA of bench_explain.py (12 layers, hidden 768,
N = 576 image tokens), whose free runs generate ``--mid-tokens`` tokens.

    python benchmarks/bench_batches.py --rounds 3 --items 8 --json benchmarks/results/batches.json
    python benchmarks/bench_batches.py --models mid --sizes 1,2,4 --items 4 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from dexar_core.api import explain_batch, load
from dexar_core.datasets.shapes import ShapesDataset

EMBEDDED = ("shapes-llava", "shapes-qwen2vl", "shapes-blip2", "shapes-florence2")


def mid_model(seed: int = 0) -> Any:
    """The mid-size random-weight LLaVA cell of bench_explain.py, as a loaded model."""
    from bench_cells import PRESETS, build_llava

    from dexar_core.records import LoadedModel
    from dexar_llava.adapter import LlavaAdapter

    model, processor, _ = build_llava(PRESETS["mid"], 576, "cpu", "float32", seed)
    return LoadedModel(model=model, processor=processor, adapter=LlavaAdapter(), model_id="mid")


def shapes_items(count: int) -> list[tuple[Any, str, str]]:
    """The first ``count`` test items: image, question, reference answer."""
    split = ShapesDataset("test", seed=0, image_size=64)
    return [(split[i].image, split[i].question, split[i].answer) for i in range(count)]


def mid_items(count: int, answer_words: int) -> list[tuple[Any, str, str]]:
    """Random images, the cell's prompt, and answers of filler words."""
    from bench_cells import PROMPT
    from PIL import Image

    rng = np.random.default_rng(0)
    side = 24 * 14
    return [
        (
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)),
            PROMPT,
            " ".join(f"w{int(word)}" for word in rng.integers(0, 1000, answer_words)),
        )
        for _ in range(count)
    ]


def measure(loaded: Any, items: list[tuple[Any, ...]], size: int, max_new_tokens: int):
    """CPU and wall seconds of one ``explain_batch`` over ``items``; its explanations."""
    wall, cpu = time.perf_counter(), time.process_time()
    explanations = explain_batch(loaded, items, batch_size=size, max_new_tokens=max_new_tokens)
    return time.process_time() - cpu, time.perf_counter() - wall, explanations


def same(explanations: list[Any], reference: list[Any]) -> bool:
    """Same answers, and token weights within 1e-5 of the largest."""
    for one, other in zip(explanations, reference, strict=True):
        if one.answer != other.answer:
            return False
        scale = max(float(np.abs(other.token_weights).max()), 1e-12)
        if float(np.abs(one.token_weights - other.token_weights).max()) > 1e-5 * scale:
            return False
    return True


def run_model(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    loaded = mid_model() if name == "mid" else load(name)
    count = args.mid_items if name == "mid" else args.items
    base = mid_items(count, args.mid_tokens) if name == "mid" else shapes_items(count)
    max_new_tokens = args.mid_tokens if name == "mid" else args.max_new_tokens
    rows = []
    for mode in args.modes:
        items = [
            (image, prompt, answer if mode == "given" else None) for image, prompt, answer in base
        ]
        measure(loaded, items[:2], 2, max_new_tokens)  # warm-up: first-call costs
        times: dict[int, list[tuple[float, float]]] = {size: [] for size in args.sizes}
        reference: list[Any] = []
        agrees = {size: True for size in args.sizes}
        for round_index in range(args.rounds):
            # every other round backwards, so a trend in the machine's load moves all alike
            for size in args.sizes if round_index % 2 == 0 else args.sizes[::-1]:
                cpu, wall, explanations = measure(loaded, items, size, max_new_tokens)
                times[size].append((cpu, wall))
                if size == args.sizes[0]:
                    reference = reference or explanations
                    agrees[size] = agrees[size] and same(explanations, reference)
                elif reference:
                    agrees[size] = agrees[size] and same(explanations, reference)
        first = args.sizes[0]
        base_cpu = statistics.median(cpu for cpu, _ in times[first])
        base_wall = statistics.median(wall for _, wall in times[first])
        for size in args.sizes:
            cpu = statistics.median(c for c, _ in times[size])
            wall = statistics.median(w for _, w in times[size])
            rows.append(
                {
                    "model": name,
                    "mode": mode,
                    "batch_size": size,
                    "items": count,
                    "batches": bool(loaded.adapter.batches),
                    "cpu_s": cpu,
                    "wall_s": wall,
                    "items_per_cpu_s": count / cpu,
                    "items_per_wall_s": count / wall,
                    "speedup_cpu": base_cpu / cpu,
                    "speedup_wall": base_wall / wall,
                    "same_as_batch_size_1": agrees[size],
                    "rounds_cpu_s": [c for c, _ in times[size]],
                    "rounds_wall_s": [w for _, w in times[size]],
                }
            )
            print(
                f"{name:17} {mode:5} batch {size}: {count / cpu:7.2f} items/s CPU "
                f"({base_cpu / cpu:4.2f}x), {count / wall:7.2f} items/s wall "
                f"({base_wall / wall:4.2f}x); same as batch 1: {agrees[size]}"
                + ("" if loaded.adapter.batches else "  [adapter does not batch]"),
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join((*EMBEDDED, "mid")))
    parser.add_argument("--sizes", default="1,2,4,8", help="batch sizes; the first is the base")
    parser.add_argument("--modes", default="free,given", help="free, given or both")
    parser.add_argument("--items", type=int, default=8, help="items per embedded model")
    parser.add_argument("--mid-items", type=int, default=4, help="items of the mid model")
    parser.add_argument("--mid-tokens", type=int, default=8, help="mid answers' length")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()
    args.sizes = [int(size) for size in args.sizes.split(",")]
    args.modes = args.modes.split(",")
    torch.set_num_threads(args.threads)
    start, load_start = time.perf_counter(), os.getloadavg()
    rows = []
    for name in args.models.split(","):
        rows += run_model(name, args)
    if args.json:
        report = {
            "command": "python benchmarks/bench_batches.py " + " ".join(sys.argv[1:]),
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_s": time.perf_counter() - start,
            "loadavg_start_end": [load_start, os.getloadavg()],
            "results": rows,
        }
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
