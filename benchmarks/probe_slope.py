"""Generate and explain times at several answer lengths, interleaved, and their linear fits.

    python benchmarks/probe_slope.py 8,32,128 3     # mid LLaVA, N = 576, one thread

Every round runs generate and explain at each T in turn (so a neighbour's load hits all
lengths alike); the first round is a warm-up, the medians of the others are fitted with
a least-squares line in T.
"""

from __future__ import annotations

import statistics
import sys
import time

import bench_cells as b
import torch


def main() -> None:
    torch.set_num_threads(1)
    lengths, reps = [int(t) for t in sys.argv[1].split(",")], int(sys.argv[2])
    job = dict(
        device="cpu",
        dtype="float32",
        threads=1,
        seed=0,
        chunk_size=None,
        size="mid",
        preset=b.PRESETS["mid"],
        image_tokens=576,
        answer_length=max(lengths),
    )
    cell = b.Cell(job)
    ids = {t: cell.answer_ids(t) for t in lengths}
    runs: dict[tuple[str, int], list[float]] = {
        (kind, t): [] for t in lengths for kind in ("generate", "explain")
    }
    for rep in range(reps + 1):
        for t in lengths:
            for kind in ("generate", "explain"):
                start = time.perf_counter()
                if kind == "generate":
                    cell.generate(t)
                else:
                    cell.explain(ids[t], None)
                if rep:
                    runs[(kind, t)].append(time.perf_counter() - start)
    for kind in ("generate", "explain"):
        ys = [statistics.median(runs[(kind, t)]) for t in lengths]
        mx, my = statistics.fmean(lengths), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(lengths, ys)) / sum(
            (x - mx) ** 2 for x in lengths
        )
        intercept = my - slope * mx
        total = sum((y - my) ** 2 for y in ys)
        residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(lengths, ys))
        r2 = 1 - residual / total if total else 1.0
        print(
            f"{kind}: "
            + ", ".join(f"T={x} {y:.2f} s" for x, y in zip(lengths, ys))
            + f"; fit {slope * 1000:.1f} ms/token + {intercept:.2f} s, r2={r2:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
