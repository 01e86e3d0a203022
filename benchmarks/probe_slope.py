"""Generate and explain times at several answer lengths, interleaved, and their linear fits.

    python benchmarks/probe_slope.py 8,32,128 3     # mid LLaVA, N = 576, one thread

Every round runs generate and explain at each T in turn (so a neighbour's load hits all
lengths alike); the first round is a warm-up, the medians of the others are fitted with
a least-squares line in T, for the wall time and for the process's CPU time (at one
thread the compute, which a neighbour's load cannot stretch).
"""

from __future__ import annotations

import statistics
import sys
import time

import bench_cells as b


def main() -> None:
    lengths, reps = [int(t) for t in sys.argv[1].split(",")], int(sys.argv[2])
    cell = b.probe_cell(max(lengths))
    ids = {t: cell.answer_ids(t) for t in lengths}
    runs: dict[tuple[str, str, int], list[float]] = {
        (clock, kind, t): []
        for t in lengths
        for kind in ("generate", "explain")
        for clock in ("wall", "cpu")
    }
    for rep in range(reps + 1):
        for t in lengths:
            for kind in ("generate", "explain"):
                start, cpu_start = time.perf_counter(), time.process_time()
                if kind == "generate":
                    cell.generate(t)
                else:
                    cell.explain(ids[t], None)
                if rep:
                    runs[("wall", kind, t)].append(time.perf_counter() - start)
                    runs[("cpu", kind, t)].append(time.process_time() - cpu_start)
    for clock in ("wall", "cpu"):
        for kind in ("generate", "explain"):
            ys = [statistics.median(runs[(clock, kind, t)]) for t in lengths]
            slope, intercept, r2 = fit_line(lengths, ys)
            print(
                f"{kind} ({clock}): "
                + ", ".join(f"T={x} {y:.2f} s" for x, y in zip(lengths, ys))
                + f"; fit {slope * 1000:.1f} ms/token + {intercept:.2f} s, r2={r2:.4f}",
                flush=True,
            )


def fit_line(xs: list[int], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares slope, intercept and r² of ``ys`` against ``xs``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    intercept = my - slope * mx
    total = sum((y - my) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, 1 - residual / total if total else 1.0


if __name__ == "__main__":
    main()
