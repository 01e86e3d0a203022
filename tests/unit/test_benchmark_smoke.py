"""The explanation benchmark still runs: ``bench_explain.py --smoke`` in a subprocess.

The benchmark is a script, never a CI gate on its numbers; this only keeps it from
rotting as the engine and the adapters change (docs/performance.md).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_explain.py"
GPU_CHECKS = SCRIPT.with_name("gpu_checks.py")
REPORT_KEYS = {
    "machine",
    "command",
    "date",
    "settings",
    "presets",
    "results",
    "fits",
    "baselines",
    "chunking",
    "chunking_crossover",
    "targets",
    "wall_s",
    "complete",
}
SUMMARY_KEYS = {
    "generate",
    "explain",
    "free_run",
    "naive",
    "generate_peak_mb",
    "explain_peak_mb",
    "free_run_peak_mb",
    "naive_peak_mb",
    "explain_over_generate",
    "naive_over_explain",
    "explain_cpu_s",
    "generate_cpu_s",
    "naive_cpu_s",
    "explain_over_generate_cpu",
    "naive_over_explain_cpu",
    "free_run_over_generate",
    "free_run_over_generate_cpu",
    "memory_explain_over_generate",
    "naive_relative_error",
    "engine_s",
    "method_s",
    "baselines_s",
}


def test_smoke_run_exits_cleanly_and_writes_the_report(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = tmp_path.glob("*-smoke.json")
    assert f"wrote {path}" in done.stdout
    report = json.loads(path.read_text())
    assert set(report) >= REPORT_KEYS
    assert report["settings"]["smoke"] is True
    assert report["complete"] is True
    assert {(row["answer_length"], row["image_tokens"]) for row in report["results"]} == {
        (2, 16),
        (4, 16),
    }
    for row in report["results"]:
        assert row["errors"] == []
        summary = row["summary"]
        assert set(summary) >= SUMMARY_KEYS
        for kind in ("generate", "explain", "free_run", "naive"):
            assert summary[kind] > 0, kind
            assert summary[f"{kind}_cpu_s"] > 0, kind
            assert summary[f"{kind}_peak_mb"] is not None, kind
        # the reference and the engine explain the same thing, so the ratio means something
        assert summary["naive_relative_error"] <= 1e-5
    assert {fit["quantity"] for fit in report["fits"]} >= {"explain", "generate", "explain_cpu_s"}
    assert {entry["chunk_size"] for entry in report["chunking"]} == {None, 2}
    assert all(entry["error"] is None for entry in report["chunking"])
    assert set(report["targets"]) == {"cell", "prompt-cache"}
    assert "explain_over_generate_at_most_1" in report["targets"]["prompt-cache"]
    assert "not implemented yet" in report["baselines"]["note"] or report["baselines"]["registered"]


def test_gpu_checks_dry_run_passes_on_the_cpu():
    """gpu_checks.py --dry-run: the GPU's checks on the CPU, bf16 maps against float32."""
    done = subprocess.run(
        [sys.executable, str(GPU_CHECKS), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1] / "adapters")])},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("PASS") for line in lines), done.stdout
    assert "bf16 vs float32: relative difference" in lines[-1]


@pytest.mark.slow
def test_gpu_7b_dry_run_runs_end_to_end_and_prints_its_figures(tmp_path):
    """``gpu_7b.sh --dry-run``: every step on the CPU with 2-layer shapes, its JSON written."""
    script = SCRIPT.with_name("gpu_7b.sh")
    done = subprocess.run(
        ["bash", str(script), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "step exited with" not in done.stdout, done.stdout[-3000:]
    assert "a correctness check failed" not in done.stdout, done.stdout[-3000:]
    checks = (tmp_path / "gpu_checks.txt").read_text().splitlines()
    assert len(checks) == 5 and all(line.startswith("PASS") for line in checks), checks
    for tag, size in (("7b", "7b"), ("mid", "mid")):
        [report_file] = tmp_path.glob(f"*-dry-run-{tag}.json")
        report = json.loads(report_file.read_text())
        assert report["complete"] and report["settings"]["dry_run"]
        rows = report["results"]
        assert {row["engine"] for row in rows} == {"prompt-cache", "full-pass"}
        assert {row["size"] for row in rows} == {size}
        for row in rows:
            assert not row["errors"], row["errors"]
            summary = row["summary"]
            for figure in ("explain_over_generate", "free_run_over_generate"):
                assert math.isfinite(summary[figure]) and summary[figure] > 0, (figure, summary)
        # the figures it would record are printed as its table's rows
        for engine in ("prompt-cache", "full-pass"):
            assert re.search(rf"^{size}\s+{engine}\s+64\s", done.stdout, re.MULTILINE), engine
