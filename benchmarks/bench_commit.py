"""Measure the explanation pass of an earlier commit: the "before" of a before/after.

The commit's ``dexar_core``, ``dexar_plugins``, ``adapters`` and ``benchmarks`` are
extracted (``git archive``) into a temporary folder put first on ``PYTHONPATH``, and
that tree's own ``bench_explain.py --worker`` measures each cell: one timing job
(``generate`` and ``explain`` interleaved, a warm-up then ``--reps`` rounds) and one
fresh process per kind for the peak memory, exactly as ``bench_explain.py`` does.

    python benchmarks/bench_commit.py 1b6e103 --engine tree --size mid \
        --image-tokens 576 --answer-lengths 8,32 --threads 1 --tag before

Writes ``benchmarks/results/<commit>-<size>-<tag>.json`` after every cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench_cells import MMAP_THRESHOLD, PRESETS

ROOT = Path(__file__).resolve().parents[1]
RESULT_MARK = "DEXAR_BENCH_RESULT "


def worker(tree: Path, job: dict, timeout: float) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=f"{tree}{os.pathsep}{tree / 'adapters'}",
        # an older tree's worker may not pin the allocator itself (bench_cells)
        MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD),
    )
    script = tree / "benchmarks" / "bench_explain.py"
    try:
        done = subprocess.run(
            [sys.executable, str(script), "--worker", json.dumps(job)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line.removeprefix(RESULT_MARK))
    return {"error": f"worker exited {done.returncode}: {done.stderr.strip()[-2000:]}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit")
    parser.add_argument("--engine", default="tree", help="that tree's engine name")
    parser.add_argument("--size", default="mid", choices=sorted(PRESETS))
    parser.add_argument("--image-tokens", type=int, default=576)
    parser.add_argument("--answer-lengths", default="8,32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--tag", default="before")
    parser.add_argument(
        "--memory-only", action="store_true", help="peak memory only, no timing job"
    )
    args = parser.parse_args()
    out = ROOT / "benchmarks" / "results" / f"{args.commit}-{args.size}-{args.tag}.json"
    report: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", args.commit],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
        "cells": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder)
        folders = ["dexar_core", "dexar_plugins", "adapters", "benchmarks"]
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.commit, *folders],
            capture_output=True,
            check=True,
        ).stdout
        archive_path = tree / "tree.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(tree, filter="data")
        for length in [int(item) for item in args.answer_lengths.split(",") if item]:
            job = {
                "engine": args.engine,
                "device": "cpu",
                "dtype": "float32",
                "threads": args.threads,
                "seed": 0,
                "chunk_size": None,
                "size": args.size,
                "preset": PRESETS[args.size],
                "image_tokens": args.image_tokens,
                "answer_length": length,
            }
            cell = {"answer_length": length, "job": job}
            cell["time"] = (
                {}
                if args.memory_only
                else worker(
                    tree,
                    dict(
                        job, mode="time", kinds=["generate", "explain"], reps=args.reps, warmup=True
                    ),
                    args.timeout,
                )
            )
            for kind in ("generate", "explain"):
                cell[f"memory_{kind}"] = worker(
                    tree, dict(job, mode="memory", kinds=[kind]), args.timeout
                )
            report["cells"].append(cell)
            times = cell["time"].get("kinds", {})
            peaks = {
                k: cell[f"memory_{k}"].get("kinds", {}).get(k, {}) for k in ("generate", "explain")
            }
            print(
                f"{args.commit} {args.engine} {args.size} N={args.image_tokens} T={length}: "
                f"generate {times.get('generate', {}).get('seconds')} s, "
                f"explain {times.get('explain', {}).get('seconds')} s, "
                f"peak generate {peaks['generate'].get('peak_mb')} MB, "
                f"explain {peaks['explain'].get('peak_mb')} MB",
                flush=True,
            )
            report["loadavg_end"] = os.getloadavg()
            out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"# wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
