"""Tables, linear fits, the chunking crossover and the issue's targets, for bench_explain.py."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
from typing import Any

TARGET = {"size": "mid", "image_tokens": 576, "answer_length": 32}
"""The cell the issue's targets are stated for (CPU, float32)."""


def summarise(row: dict[str, Any]) -> dict[str, Any]:
    timing, memory, naive = row["timing"], row["memory"], row["naive"]
    kinds = timing.get("kinds", {})
    summary: dict[str, Any] = {
        kind: kinds.get(kind, {}).get("seconds") for kind in ("generate", "explain", "free_run")
    }
    for kind in ("generate", "explain", "free_run"):
        summary[f"{kind}_peak_mb"] = memory[kind].get("peak_mb")
    for kind in ("generate", "explain", "free_run"):
        summary[f"{kind}_cpu_s"] = kinds.get(kind, {}).get("cpu_s")
    summary["naive"] = naive.get("seconds")
    summary["naive_cpu_s"] = naive.get("cpu_s")
    summary["naive_peak_mb"] = naive.get("peak_mb")
    summary["naive_relative_error"] = naive.get("relative_error")
    summary["explain_over_generate"] = _ratio(summary["explain"], summary["generate"])
    summary["naive_over_explain"] = _ratio(summary["naive"], summary["explain"])
    summary["explain_over_generate_cpu"] = _ratio(
        summary["explain_cpu_s"], summary["generate_cpu_s"]
    )
    summary["naive_over_explain_cpu"] = _ratio(summary["naive_cpu_s"], summary["explain_cpu_s"])
    # issue 22: a free run reuses generation's prefill, so it costs little over generate
    summary["free_run_over_generate"] = _ratio(summary["free_run"], summary["generate"])
    summary["free_run_over_generate_cpu"] = _ratio(
        summary["free_run_cpu_s"], summary["generate_cpu_s"]
    )
    summary["memory_explain_over_generate"] = _ratio(
        summary["explain_peak_mb"], summary["generate_peak_mb"]
    )
    parts = timing.get("parts_s", {})
    summary["engine_s"] = parts.get("explain:engine")
    summary["method_s"] = parts.get("explain:method")
    summary["baselines_s"] = {
        kind.removeprefix("method:"): value.get("seconds", value.get("error"))
        for kind, value in kinds.items()
        if kind.startswith("method:")
    }
    summary["naive_note"] = naive.get("skipped") or naive.get("note")
    errors = sorted(
        {part["error"] for part in (timing, naive, *memory.values()) if part.get("error")}
    )
    return dict(row, summary=summary, errors=errors)


def _ratio(a, b):
    return None if a is None or not b else a / b


def format_value(value, unit: str = "", width: int = 8) -> str:
    if value is None:
        return "-".rjust(width)
    text = f"{value:.3g}" if unit in ("s", "x") else f"{value:.0f}"
    return f"{text}{unit}".rjust(width)


HEADER = (
    f"{'model':<6}{'engine':>13}{'N':>6}{'T':>5} |{'gen':>8}{'explain':>8}{'free':>8}"
    f"{'naive':>8} |{'ex/gen':>8}{'fr/gen':>8}{'nv/ex':>8}{'cpu e/g':>8}{'cpu n/e':>8} |"
    f"{'gen MB':>8}{'ex MB':>8}{'ratio':>8}{'nv MB':>8}"
)


def table_line(row: dict[str, Any]) -> str:
    s = row["summary"]
    cells = [
        format_value(s[key], unit)
        for key, unit in (
            ("generate", "s"),
            ("explain", "s"),
            ("free_run", "s"),
            ("naive", "s"),
            ("explain_over_generate", "x"),
            ("free_run_over_generate", "x"),
            ("naive_over_explain", "x"),
            ("explain_over_generate_cpu", "x"),
            ("naive_over_explain_cpu", "x"),
            ("generate_peak_mb", ""),
            ("explain_peak_mb", ""),
            ("memory_explain_over_generate", "x"),
            ("naive_peak_mb", ""),
        )
    ]
    line = (
        f"{row['size']:<6}{row['engine']:>13}{row['image_tokens']:>6}{row['answer_length']:>5} |"
        + "".join(cells[:4])
        + " |"
        + "".join(cells[4:9])
        + " |"
        + "".join(cells[9:])
    )
    notes = [s["naive_note"]] if s["naive_note"] else []
    return line + ("  " + "; ".join(notes + row["errors"]) if notes or row["errors"] else "")


def linear_fits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Least-squares line of time and memory against T, per engine, model and N."""
    fits = []
    for engine, size, n in sorted({(r["engine"], r["size"], r["image_tokens"]) for r in rows}):
        cells = [
            r for r in rows if (r["engine"], r["size"], r["image_tokens"]) == (engine, size, n)
        ]
        for quantity in (
            "explain",
            "generate",
            "explain_cpu_s",
            "generate_cpu_s",
            "explain_peak_mb",
            "generate_peak_mb",
        ):
            points = [
                (r["answer_length"], r["summary"][quantity])
                for r in cells
                if r["summary"][quantity] is not None
            ]
            if len(points) < 2:
                continue
            xs, ys = zip(*points)
            mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
                (x - mean_x) ** 2 for x in xs
            )
            intercept = mean_y - slope * mean_x
            total = sum((y - mean_y) ** 2 for y in ys)
            residual = sum((y - intercept - slope * x) ** 2 for x, y in points)
            fits.append(
                {
                    "engine": engine,
                    "size": size,
                    "image_tokens": n,
                    "quantity": quantity,
                    "slope_per_token": slope,
                    "intercept": intercept,
                    "r2": 1.0 - residual / total if total else 1.0,
                    "points": points,
                }
            )
    return fits


def chunking_crossover(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per engine and chunk size: the first T where chunking lowers the peak by 5 % or more."""
    out = []
    for engine, chunk in sorted(
        {(e["engine"], e["chunk_size"]) for e in entries if e["chunk_size"] is not None}
    ):
        whole = {
            e["answer_length"]: e["peak_mb"]
            for e in entries
            if e["engine"] == engine and e["chunk_size"] is None
        }
        lower = [
            e["answer_length"]
            for e in entries
            if (e["engine"], e["chunk_size"]) == (engine, chunk)
            and e["peak_mb"] is not None
            and whole.get(e["answer_length"]) is not None
            and e["answer_length"] > chunk  # shorter answers run the same single pass
            and e["peak_mb"] < 0.95 * whole[e["answer_length"]]
        ]
        out.append(
            {
                "engine": engine,
                "chunk_size": chunk,
                "first_answer_length_with_lower_peak": min(lower) if lower else None,
            }
        )
    return out


def targets(rows: list[dict[str, Any]], fits: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets at the target cell, per engine variant."""

    def check(value, limit, at_most=True):
        met = None if value is None else (value <= limit if at_most else value >= limit)
        return {"value": value, "limit": limit, "met": met}

    out: dict[str, Any] = {"cell": TARGET}
    for engine in sorted({r["engine"] for r in rows}):
        cell = next(
            (
                r["summary"]
                for r in rows
                if r["engine"] == engine
                and (r["size"], r["image_tokens"], r["answer_length"]) == tuple(TARGET.values())
            ),
            None,
        )
        fit = next(
            (
                f
                for f in fits
                if (f["engine"], f["size"], f["image_tokens"], f["quantity"])
                == (engine, TARGET["size"], TARGET["image_tokens"], "explain")
            ),
            None,
        )
        out[engine] = {
            "explain_over_generate_at_most_1": check(cell and cell["explain_over_generate"], 1.0),
            "naive_over_explain_at_least_10": check(
                cell and cell["naive_over_explain"], 10.0, at_most=False
            ),
            "memory_explain_over_generate_at_most_1.5": check(
                cell and cell["memory_explain_over_generate"], 1.5
            ),
            "explain_linear_in_T_r2_at_least_0.99": check(fit and fit["r2"], 0.99, at_most=False),
            "free_run_over_generate_at_most_1.15": check(
                cell and cell["free_run_over_generate"], 1.15
            ),
        }
    return out


def machine_facts(device: str) -> dict[str, Any]:
    import torch
    import transformers

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        cpu = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), cpu
        )
    facts = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "loadavg_start": os.getloadavg(),
    }
    if device.startswith("cuda"):
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def machine_slug(facts: dict[str, Any], threads: int) -> str:
    name = facts.get("gpu") or f"{facts['cpu']}-{threads}threads"
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def print_summary(report: dict[str, Any]) -> None:
    baselines = report["baselines"]
    print(f"\n# baselines registered: {baselines['registered'] or 'none'}; {baselines['note']}")
    for row in report["results"]:
        if row["summary"]["baselines_s"]:
            print(
                f"#   at {row['size']} N={row['image_tokens']} T={row['answer_length']}: "
                + ", ".join(
                    f"{k} {v:.3g}s" if isinstance(v, float) else f"{k} failed: {v}"
                    for k, v in row["summary"]["baselines_s"].items()
                )
            )
    for fit in report["fits"]:
        print(
            f"# fit {fit['engine']} {fit['size']} N={fit['image_tokens']} {fit['quantity']}: "
            f"{fit['slope_per_token']:.4g}/token + {fit['intercept']:.4g}, r2={fit['r2']:.4f}"
        )
    for crossing in report["chunking_crossover"]:
        print(f"# chunking {crossing}")
    for engine, checks in report["targets"].items():
        if engine != "cell":
            for name, check in checks.items():
                print(f"# target {engine} {name}: {check}")
