"""What an explanation costs, next to generation and the straightforward method (issue 10).

Random-weight LLaVA models of the real transformers classes (CLIP vision tower, Llama
decoder), built from configs, are measured at several answer lengths T and image-token
counts N. For each (model, N, T) cell, side by side:

    generate   ``model.generate`` alone: KV cache, no grad, exactly T new tokens
    explain    dexar's explanation pass alone: teacher-forced forward + backward through
               the engine, the DEX-AR method and its token grids
    free_run   generate, then explain the generated tokens (what a free-run costs)
    naive      the straightforward reference (T forwards, T*L backwards), while it
               finishes within ``--naive-limit`` seconds
    baselines  docs/method.md §10 methods that are registered, at the target cell only

Wall time: one warm-up per kind, then ``--reps`` rounds that run the kinds in turn (so a
neighbour's load hits them alike); the median is reported. Peak memory: on CPU the growth
of the resident set (VmHWM, reset through /proc/self/clear_refs after the model is built)
during one run of one kind in a fresh subprocess; on CUDA the growth of
``max_memory_allocated``.

    python benchmarks/bench_explain.py                 # full CPU run: tiny and mid
    python benchmarks/bench_explain.py --smoke         # seconds: what the smoke test runs
    python benchmarks/bench_explain.py --device cuda --dtype bfloat16 --sizes 7b \
        --answer-lengths 8,32 --image-tokens 576      # see benchmarks/gpu_7b.sh

Prints a table and writes ``<out>/<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench_cells import (
    DRY_RUN_SHAPE,
    ENGINES,
    PRESETS,
    Cell,
    pin_mmap_threshold,
    profile,
    run_job,
)
from bench_report import (
    HEADER,
    TARGET,
    chunking_crossover,
    format_value,
    linear_fits,
    machine_facts,
    machine_slug,
    print_summary,
    summarise,
    table_line,
    targets,
)

RESULT_MARK = "DEXAR_BENCH_RESULT "
BASELINE_METHODS = ("attention", "rollout", "attn_grad", "gae", "legrad", "tam")


def run_in_subprocess(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return {"error": f"timed out after {timeout:.0f} s"}
        except BaseException:  # interrupted: leave no worker behind
            process.kill()
            raise
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line.removeprefix(RESULT_MARK))
    return {"error": f"worker exited {process.returncode}: {stderr.strip()[-2000:]}"}


class Runner:
    """Runs jobs in fresh subprocesses, or in this process with one model per cell."""

    def __init__(self, isolation: str) -> None:
        self.isolation = isolation
        self._cell: tuple[tuple[Any, ...], Cell] | None = None

    def __call__(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.isolation == "subprocess":
            return run_in_subprocess(job, timeout)
        key = (job["size"], job["image_tokens"], json.dumps(job["preset"], sort_keys=True))
        if self._cell is None or self._cell[0] != key:
            self._cell = None
            gc.collect()
            self._cell = (key, Cell(job))
        try:
            return run_job(job, self._cell[1])
        except Exception as error:  # one failed measurement must not lose the others
            return {"error": f"{type(error).__name__}: {error}"}


# --- the plan ----------------------------------------------------------------------------


def registered_baselines() -> tuple[list[str], str]:
    try:
        from dexar_plugins.manager import default_catalog

        methods = default_catalog().methods
    except Exception as error:  # the catalog needs the installed distribution and pluggy
        return [], f"method catalog unavailable ({type(error).__name__}: {error})"
    names = [name for name in methods if name != "dexar"]
    missing = [name for name in BASELINE_METHODS if name not in methods]
    return names, ", ".join(missing) + ": not implemented yet" if missing else ""


def predicted_naive_s(measured: dict[tuple[str, int, int], float], size: str, n: int, t: int):
    """Scale the nearest measured reference time: linear in T, linear in the prompt."""
    same_n = [(tt, s) for (sz, nn, tt), s in measured.items() if sz == size and nn == n]
    if same_n:
        tt, seconds = max(same_n)
        return seconds * t / tt
    same_t = [(nn, s) for (sz, nn, tt), s in measured.items() if sz == size and tt == t]
    if same_t:
        nn, seconds = max(same_t)
        return seconds * n / nn
    return None


def benchmark(args: argparse.Namespace, progress: Callable[[dict], None]) -> None:
    """Measure every cell (and engine variant), calling ``progress`` after each row."""
    runner = Runner(args.isolation)
    baselines, baseline_note = registered_baselines()
    if args.baselines is not None:
        unknown = sorted(set(args.baselines) - set(baselines))
        if unknown:
            raise SystemExit(f"--baselines {unknown} are not registered methods: {baselines}")
        baselines = args.baselines
    measured: dict[str, Any] = {
        "rows": [],
        "chunking": [],
        "baselines": {"registered": baselines, "note": baseline_note},
    }
    naive_s: dict[tuple[str, int, int], float] = {}
    forced_naive = {tuple(item.split(":")) for item in args.naive_always.split(",") if item}
    for size in args.sizes:
        preset = dict(PRESETS[size], **(DRY_RUN_SHAPE if args.dry_run else {}))
        for n in args.image_tokens:
            for t in args.answer_lengths:
                cell = {"size": size, "image_tokens": n, "answer_length": t}
                job = dict(
                    cell,
                    device=args.device,
                    dtype=args.dtype,
                    threads=args.threads,
                    seed=args.seed,
                    chunk_size=args.chunk_size,
                    preset=preset,
                )
                naive = None
                for engine in args.engines:
                    kinds = ["generate", "explain", "free_run"]
                    at_target = (size, n, t) == tuple(TARGET.values()) or args.smoke
                    if at_target and engine == args.engines[0]:
                        kinds += [f"method:{name}" for name in baselines]
                    engine_job = dict(job, engine=engine)
                    row: dict[str, Any] = dict(cell, engine=engine)
                    row["timing"] = runner(
                        dict(engine_job, mode="time", kinds=kinds, reps=args.reps, warmup=True),
                        args.timeout,
                    )
                    row["memory"] = measure_memory(runner, engine_job, kinds[:3], args)
                    if naive is None:
                        naive = naive_for(runner, engine_job, args, naive_s, forced_naive)
                    row["naive"] = naive
                    measured["rows"].append(summarise(row))
                    print(table_line(measured["rows"][-1]), flush=True)
                    progress(measured)
    if args.chunk_sweep:
        for engine in args.engines:
            measured["chunking"] += chunk_sweep(args, runner, engine)
            progress(measured)


def naive_for(runner: Runner, job: dict[str, Any], args, naive_s: dict, forced_naive: set):
    """The reference for one cell, unless it is predicted to exceed ``--naive-limit``."""
    size, n, t = job["size"], job["image_tokens"], job["answer_length"]
    guess = predicted_naive_s(naive_s, size, n, t)
    forced = (size, str(n), str(t)) in forced_naive
    if args.naive_limit <= 0 and not forced:
        return {"skipped": "--naive-limit 0: the reference runs in --naive-always cells only"}
    if guess is not None and guess > args.naive_limit and not forced:
        return {"skipped": f"predicted {guess:.0f} s > --naive-limit {args.naive_limit:.0f} s"}
    naive = measure_naive(runner, job, args, guess)
    if forced and guess is not None and guess > args.naive_limit:
        naive["note"] = f"predicted {guess:.0f} s: run beyond --naive-limit (--naive-always)"
    if naive.get("seconds") is not None:
        naive_s[(size, n, t)] = naive["seconds"]
    return naive


def measure_memory(runner: Runner, job: dict[str, Any], kinds: list[str], args) -> dict:
    """Peak memory per kind: each in a fresh process, or one after another in this one."""
    if args.isolation == "subprocess":
        results = {
            kind: runner(dict(job, mode="memory", kinds=[kind]), args.timeout) for kind in kinds
        }
    else:
        shared = runner(dict(job, mode="memory", kinds=kinds), args.timeout)
        results = {kind: shared for kind in kinds}
    return {
        kind: result.get("kinds", {}).get(kind, {"error": result.get("error")})
        for kind, result in results.items()
    }


def measure_naive(runner: Runner, job: dict[str, Any], args, guess: float | None) -> dict:
    """The reference: one run gives memory and time; a quick one is timed again properly."""
    timeout = max(args.timeout, 4 * args.naive_limit)
    first = runner(dict(job, mode="memory", kinds=["naive"], check_naive=True), timeout)
    if "error" in first:
        return {"error": first["error"], "seconds": None}
    measured = dict(first["kinds"]["naive"], relative_error=first.get("naive_relative_error"))
    measured["seconds"], measured["timing"] = measured["first_run_s"], "one run, no warm-up"
    measured["cpu_s"] = measured.get("first_run_cpu_s")
    if not args.smoke and measured["first_run_s"] * (args.reps + 1) < args.naive_limit:
        timed = runner(
            dict(job, mode="time", kinds=["naive"], reps=args.reps, warmup=True), timeout
        )
        if "error" not in timed:
            measured.update(timed["kinds"]["naive"], timing=f"median of {args.reps} after warm-up")
    return measured


def chunk_sweep(args, runner: Runner, engine: str) -> list[dict[str, Any]]:
    """Peak memory and time of one explain pass against T, per chunk size (one run each)."""
    size, n = args.chunk_sweep_cell.split(":")
    preset = dict(PRESETS[size], **(DRY_RUN_SHAPE if args.dry_run else {}))
    out = []
    for t in args.chunk_sweep_lengths:
        for chunk in args.chunk_sweep:
            job = dict(
                size=size,
                preset=preset,
                image_tokens=int(n),
                answer_length=t,
                chunk_size=chunk,
                engine=engine,
                device=args.device,
                dtype=args.dtype,
                threads=args.threads,
                seed=args.seed,
                mode="memory",
                kinds=["explain"],
            )
            result = runner(job, args.timeout)
            measured = result.get("kinds", {}).get("explain", {})
            entry = {
                "size": size,
                "image_tokens": int(n),
                "answer_length": t,
                "engine": engine,
                "chunk_size": chunk,
                "peak_mb": measured.get("peak_mb"),
                "seconds": measured.get("first_run_s"),
                "error": result.get("error"),
            }
            out.append(entry)
            print(
                f"chunking {engine} {size} N={n} T={t:<4} chunk={chunk!s:<5} "
                f"{format_value(entry['seconds'], 's')} {format_value(entry['peak_mb'], 'MB')}",
                flush=True,
            )
    return out


# --- command line ------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


def _chunks(text: str) -> list[int | None]:
    return [None if item == "none" else int(item) for item in text.split(",") if item]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny model, tiny sizes, one repetition, one process: seconds",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="shrink every preset to 2 narrow layers (same code path)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument(
        "--sizes",
        type=lambda s: s.split(","),
        default=["tiny", "mid"],
        help=f"comma list of {sorted(PRESETS)}",
    )
    parser.add_argument("--answer-lengths", type=_ints, default=[8, 32, 128])
    parser.add_argument("--image-tokens", type=_ints, default=[64, 576, 2304])
    parser.add_argument(
        "--chunk-size",
        type=lambda s: _chunks(s)[0],
        default=None,
        help="the engine's chunk_size for the explain measurements",
    )
    parser.add_argument(
        "--chunk-sweep",
        type=_chunks,
        default=[None, 8, 32],
        help="chunk sizes of the memory-vs-T study ('' to skip)",
    )
    parser.add_argument("--chunk-sweep-cell", default="mid:576")
    parser.add_argument("--chunk-sweep-lengths", type=_ints, default=[8, 32, 128, 512])
    parser.add_argument(
        "--engines",
        type=lambda s: s.split(","),
        default=[ENGINES[0]],
        help=f"comma list of {ENGINES}: the engine's default path (the prompt cached "
        "without grad, then the answer rows) and/or its one full pass over prompt + answer",
    )
    parser.add_argument(
        "--baselines",
        type=lambda s: [item for item in s.split(",") if item],
        default=None,
        help="comma list of registered methods timed at the target cell (default: all "
        "registered; '' for none)",
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--naive-limit",
        type=float,
        default=60.0,
        help="skip the reference where it is predicted to take longer (s); 0 runs it in "
        "the --naive-always cells only",
    )
    parser.add_argument(
        "--naive-always",
        default="mid:576:32",
        help="size:N:T cells where the reference runs whatever its time",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--isolation",
        choices=("subprocess", "inprocess"),
        default=None,
        help="default: subprocess on CPU, inprocess on CUDA and with --smoke",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per job (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    parser.add_argument("--tag", default="", help="appended to the JSON file name")
    parser.add_argument(
        "--profile",
        metavar="SIZE:N:T",
        help="profile one generate and one explain pass per --engines; no table",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.answer_lengths, args.image_tokens = ["tiny"], [2, 4], [16]
        args.reps, args.chunk_sweep_cell, args.chunk_sweep_lengths = 1, "tiny:16", [4]
        # one thread: a tiny model gains nothing from two, and loses much on a busy machine
        args.threads = 1
        args.chunk_sweep = [None, 2] if args.chunk_sweep else []
    if args.isolation is None:
        on_cpu = args.device == "cpu"
        args.isolation = "subprocess" if on_cpu and not args.smoke else "inprocess"
    unknown = [size for size in args.sizes if size not in PRESETS]
    if unknown:
        parser.error(f"unknown --sizes {unknown}; choose from {sorted(PRESETS)}")
    unknown = [engine for engine in args.engines if engine not in ENGINES]
    if unknown:
        parser.error(f"unknown --engines {unknown}; choose from {ENGINES}")
    return args


def main(argv: list[str] | None = None) -> int:
    pin_mmap_threshold()  # before any model is built: see its docstring
    args = parse_args(argv)
    if args.worker:
        print(RESULT_MARK + json.dumps(run_job(json.loads(args.worker))), flush=True)
        return 0
    if args.profile:
        profile(args)
        return 0
    import torch

    # a `timeout` or kill ends the run through SystemExit, which stops the current worker
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    torch.set_num_threads(args.threads)
    facts = machine_facts(args.device)
    print(
        f"# {facts}\n# isolation={args.isolation} threads={args.threads} reps={args.reps} "
        f"device={args.device} dtype={args.dtype}\n{HEADER}",
        flush=True,
    )
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    suffix = "-smoke" if args.smoke else "-dry-run" if args.dry_run else ""
    suffix += f"-{args.tag}" if args.tag else ""
    path = Path(args.out) / f"{machine_slug(facts, args.threads)}-{day}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def report(measured: dict[str, Any], complete: bool = False) -> dict[str, Any]:
        fits = linear_fits(measured["rows"])
        content = {
            "complete": complete,
            "machine": dict(facts, loadavg_now=os.getloadavg()),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "settings": {key: value for key, value in vars(args).items() if key != "worker"},
            "presets": {
                size: dict(PRESETS[size], **(DRY_RUN_SHAPE if args.dry_run else {}))
                for size in args.sizes
            },
            "results": measured["rows"],
            "fits": fits,
            "baselines": measured["baselines"],
            "chunking": measured["chunking"],
            "chunking_crossover": chunking_crossover(measured["chunking"]),
            "targets": targets(measured["rows"], fits),
            "wall_s": time.perf_counter() - started,
        }
        # written after every row, so a run cut short still leaves its measurements
        path.write_text(json.dumps(content, indent=1, default=str) + "\n")
        return content

    measured: dict[str, Any] = {}
    benchmark(args, lambda partial: measured.update(partial) or report(partial))
    print_summary(report(measured, complete=True))
    print(f"# wrote {path}")
    return 1 if any(row["errors"] for row in measured["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
