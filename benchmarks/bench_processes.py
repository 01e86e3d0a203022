"""``dexar evaluate`` under ``accelerate launch`` with 1 and 2 processes on the same items.

Runs the same evaluation (an embedded model, the first ``--limit`` shapes test items)
once per process count in a fresh folder, on the CPU (gloo; ``CUDA_VISIBLE_DEVICES=``,
one thread per process), and prints for each: the command's wall seconds (process start
and model load included), the evaluation's items per second (the items over the
slowest rank's summed per-item ``seconds``: the data-parallel part), and whether its
``items.jsonl`` and ``summary.json`` equal those of one process (but for seconds).

    python benchmarks/bench_processes.py --model shapes-llava --limit 32 --processes 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def without_seconds(value):
    if isinstance(value, dict):
        return {key: without_seconds(item) for key, item in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [without_seconds(item) for item in value]
    return value


def run(processes: int, args: argparse.Namespace, out: Path) -> dict:
    # the launcher as a module of this interpreter: its processes import this tree's dexar
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    launch += ["--num_processes", str(processes), "--num_machines", "1"]
    launch += ["--multi_gpu"] if processes > 1 else ["--cpu"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dexar_core"]
    command = [*launch, "evaluate", "--model", args.model, "--out", str(out)]
    command += ["--limit", str(args.limit), "--metrics", args.metrics, "--resamples", "50"]
    command += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    folder = out / "dexar"
    per_rank = {}
    for log in sorted((folder / "log").glob("rank*.jsonl")):
        records = [json.loads(line) for line in log.read_text().splitlines()]
        per_rank[log.stem] = sum(record["seconds"] for record in records)
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    return {
        "processes": processes,
        "command": " ".join(command),
        "wall_s": wall,
        "rank_seconds": per_rank,
        "items_per_s": len(items) / max(per_rank.values()),
        "items_per_wall_s": len(items) / wall,
        "items": without_seconds(items),
        "summary": without_seconds(json.loads((folder / "summary.json").read_text())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-llava")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--metrics", default="segmentation,grounding")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for processes in [int(count) for count in args.processes.split(",")]:
            runs.append(run(processes, args, Path(folder) / f"p{processes}"))
    first = runs[0]
    for entry in runs:
        entry["same_as_first"] = (
            entry["items"] == first["items"] and entry["summary"] == first["summary"]
        )
        print(
            f"{entry['processes']} process(es): command {entry['wall_s']:.1f} s wall "
            f"({entry['items_per_wall_s']:.2f} items/s), evaluation {entry['items_per_s']:.2f} "
            f"items/s (slowest rank {max(entry['rank_seconds'].values()):.1f} s); same items and "
            f"summary as {first['processes']} process(es): {entry['same_as_first']}",
            flush=True,
        )
    if args.json:
        report = [
            {k: v for k, v in entry.items() if k not in ("items", "summary")} for entry in runs
        ]
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
