"""How closely bfloat16 and float16 maps agree with float32 ones, and what each costs on CPU.

For every embedded model and shapes test item: the float32 model answers the item's
question (greedy free run) and explains it; the same checkpoint loaded in a lower dtype
answers too (is the answer the same?) and explains the float32 answer teacher-forced, so
the maps of the same tokens are compared:

    answer    share of items whose free-run answer equals the float32 one
    token r   median Pearson correlation of a token's map with its float32 map
    seq r     median Pearson correlation of the sequence maps
    top-1     share of items whose sequence map peaks on the same patch
    max |d|   largest absolute difference of the sequence maps (maps lie in [0, 1])
    time      median explanation time against float32 in the same run (free run included)

Contrastive models (shapes-clip) have no answer: their caption's map is compared.

    python benchmarks/bench_dtype.py                   # 16 items, 2 threads, bf16 and fp16
    python benchmarks/bench_dtype.py --items 4 --models shapes-llava

Prints a Markdown table (the one in docs/models.md) and, with ``--out``, writes the figures
as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("shapes-llava", "shapes-qwen2vl", "shapes-florence2", "shapes-blip2", "shapes-clip")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two maps; 1.0 when both are constant and equal."""
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def timed_explain(
    loaded: Any, item: Any, contrastive: bool, answer: str | None
) -> tuple[Any, float]:
    """The explanation of ``item`` and its wall time in seconds."""
    import dexar_core

    start = time.perf_counter()
    if contrastive:
        explanation = dexar_core.explain(loaded, item.image, item.description)
    else:
        explanation = dexar_core.explain(loaded, item.image, item.question, answer=answer)
    return explanation, time.perf_counter() - start


def measure(model: str, dtype: str, items: list[Any]) -> dict[str, Any]:
    """The agreement and time figures of ``model`` in ``dtype`` against float32."""
    import dexar_core
    from dexar_core.compare.on_image import is_contrastive

    reference = dexar_core.load(model, dtype="float32")
    lower = dexar_core.load(model, dtype=dtype)
    contrastive = is_contrastive(reference)
    same_answer, token_r, sequence_r, same_peak, max_diff = [], [], [], [], []
    times: dict[str, list[float]] = {"float32": [], dtype: []}
    for item in items:
        exact, exact_seconds = timed_explain(reference, item, contrastive, None)
        free, free_seconds = timed_explain(lower, item, contrastive, None)
        times["float32"].append(exact_seconds)
        times[dtype].append(free_seconds)
        if contrastive:
            forced = free
        else:
            same_answer.append(free.answer == exact.answer)
            forced, _ = timed_explain(lower, item, contrastive, exact.answer)
            if len(forced.token_ids) != len(exact.token_ids):
                continue  # the answer re-encodes differently: no token-for-token comparison
            token_r.extend(
                correlation(a, b) for a, b in zip(exact.token_maps[0], forced.token_maps[0])
            )
        a, b = exact.sequence_maps[0], forced.sequence_maps[0]
        sequence_r.append(correlation(a, b))
        same_peak.append(int(np.argmax(a)) == int(np.argmax(b)))
        max_diff.append(float(np.max(np.abs(a - b))))
    return {
        "model": model,
        "dtype": dtype,
        "items": len(items),
        "answer": float(np.mean(same_answer)) if same_answer else None,
        "token_r": statistics.median(token_r) if token_r else None,
        "sequence_r": statistics.median(sequence_r),
        "top1": float(np.mean(same_peak)),
        "max_diff": max(max_diff),
        "time_ratio": statistics.median(times[dtype]) / statistics.median(times["float32"]),
    }


def items_for(model: str, count: int) -> list[Any]:
    """The first ``count`` shapes test items at the size ``model`` was trained at."""
    import dexar_core
    from dexar_core.datasets.benchmark import open_benchmark
    from dexar_core.zoo import training_image_size

    size = training_image_size(dexar_core.load(model, dtype="float32"))
    benchmark = open_benchmark("shapes", "test", image_size=size)
    return [benchmark[index] for index in range(min(count, len(benchmark)))]


def cell(value: float | None, form: str) -> str:
    """A table cell: the value in ``form``, or a dash."""
    return "-" if value is None else format(value, form)


def main() -> None:
    """Measure every model in every lower dtype and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dtypes", default="bfloat16,float16")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    import torch

    from dexar_core.hf.load_options import cpu_runs_bfloat16_fast

    torch.set_num_threads(args.threads)
    rows = []
    for model in args.models.split(","):
        items = items_for(model, args.items)
        for dtype in args.dtypes.split(","):
            rows.append(measure(model, dtype, items))
    native = "native" if cpu_runs_bfloat16_fast() else "no native"
    print(
        f"CPU: {platform.processor() or platform.machine()} ({native} bfloat16), "
        f"{args.threads} threads, {args.items} shapes test items\n"
    )
    print("| model | dtype | answer | token r | seq r | top-1 | max abs d | time |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['dtype']} | {cell(row['answer'], '.0%')} | "
            f"{cell(row['token_r'], '.4f')} | {row['sequence_r']:.4f} | {row['top1']:.0%} | "
            f"{row['max_diff']:.3f} | {row['time_ratio']:.2f}x |"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
