"""dexar evaluate as a run: resuming, several processes, folder datasets, perturbation, intervals.

Everything runs on a tiny random LLaVA: the numbers mean nothing, what is tested is that
they are the same however the run was cut up, and that bad input is named.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.cli.main import main
from dexar_core.datasets.benchmark import open_benchmark
from dexar_core.errors import InputError
from dexar_core.evaluation.fingerprint import weights_fingerprint
from dexar_core.evaluation.run import check_metrics, evaluate
from dexar_core.evaluation.run_log import ITEMS_FILE, LOG_FOLDER, SUMMARY_FILE
from dexar_core.metrics.bootstrap import percentile_interval, resample_indices
from dexar_core.metrics.perturbation import FRACTIONS, trapezoid_auc

torch.set_num_threads(1)

RUN = {"seed": 0, "max_new_tokens": 4, "resamples": 50, "metrics": ("segmentation", "grounding")}
PERTURBATION = {**RUN, "metrics": ("perturbation",)}


@pytest.fixture(scope="module")
def uninterrupted(loaded, shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    summary = evaluate(loaded, shapes, limit=4, out=out, **RUN)
    return summary, out


def without_seconds(record):
    return {key: value for key, value in record.items() if key != "seconds"}


def items_of(folder):
    lines = (folder / ITEMS_FILE).read_text().splitlines()
    return [without_seconds(json.loads(line)) for line in lines]


def log_lines(folder):
    return sum(len(path.read_text().splitlines()) for path in (folder / LOG_FOLDER).glob("*.jsonl"))


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    loaded, shapes, uninterrupted, tmp_path
):
    whole, whole_out = uninterrupted
    seen = []

    def stop_after_two(item, explanation, result):
        seen.append(item.index)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(loaded, shapes, limit=4, out=tmp_path, on_item=stop_after_two, **RUN)
    assert log_lines(tmp_path) == 2  # both finished items were on disk before the stop
    redone = []
    resumed = evaluate(
        loaded,
        shapes,
        limit=4,
        out=tmp_path,
        on_item=lambda item, *_: redone.append(item.index),
        **RUN,
    )
    assert redone == [2, 3]
    assert items_of(tmp_path) == items_of(whole_out)
    assert without_seconds(resumed.to_dict()) == without_seconds(whole.to_dict())
    written = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert without_seconds(written) == without_seconds(whole.to_dict())


def test_a_killed_command_loses_no_finished_item(tiny_dir, loaded, shapes, uninterrupted, tmp_path):
    whole, whole_out = uninterrupted
    out = tmp_path / "run"
    command = [sys.executable, "-m", "dexar_core", "evaluate", "--model", str(tiny_dir)]
    command += ["--limit", "4", "--out", str(out), "--seed", "0", "--max-new-tokens", "4"]
    command += ["--resamples", "50", "--metrics", "segmentation,grounding"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    log = out / "dexar" / LOG_FOLDER / "rank0.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = log.read_text().count("\n")  # a line cut by the kill does not count
    assert 1 <= done <= 4
    redone = []
    resumed = evaluate(
        loaded,
        shapes,
        limit=4,
        out=out / "dexar",
        on_item=lambda item, *_: redone.append(item.index),
        **RUN,
    )
    assert redone == list(range(done, 4))
    assert items_of(out / "dexar") == items_of(whole_out)
    assert without_seconds(resumed.to_dict()) == without_seconds(whole.to_dict())


def test_a_half_written_line_is_cut_off_and_its_item_redone(
    loaded, shapes, uninterrupted, tmp_path
):
    whole, whole_out = uninterrupted
    out = tmp_path / "run"
    evaluate(loaded, shapes, limit=3, out=out, **RUN)
    log = out / LOG_FOLDER / "rank0.jsonl"
    text = log.read_text()
    last_line_start = text.rstrip("\n").rfind("\n") + 1
    log.write_text(text[: last_line_start + 40])  # killed while writing item 2
    redone = []
    resumed = evaluate(
        loaded, shapes, limit=4, out=out, on_item=lambda item, *_: redone.append(item.index), **RUN
    )
    assert redone == [2, 3]
    assert all(json.loads(line) for line in log.read_text().splitlines())
    assert items_of(out) == items_of(whole_out)
    assert without_seconds(resumed.to_dict()) == without_seconds(whole.to_dict())


def test_a_run_folder_refuses_a_run_that_measures_something_else(loaded, shapes, uninterrupted):
    _, out = uninterrupted
    with pytest.raises(InputError, match=r"measured something else \(options: \{\} before"):
        evaluate(loaded, shapes, limit=4, out=out, head_agg="mean", **RUN)
    with pytest.raises(InputError, match="seed: 0 before, 4 now"):
        evaluate(loaded, shapes, limit=4, out=out, **{**RUN, "seed": 4})


def test_a_run_folder_refuses_items_made_by_other_weights_under_the_same_name(
    loaded, shapes, uninterrupted
):
    # A checkpoint retrained in place keeps its name: only its weights tell the runs apart.
    _, out = uninterrupted
    parameter = next(loaded.model.parameters())
    kept = parameter.detach().clone()
    try:
        with torch.no_grad():
            parameter.mul_(1.0 + 1e-6)
        with pytest.raises(InputError, match=r"weights: '[0-9a-f]{16}' before, '[0-9a-f]{16}' now"):
            evaluate(loaded, shapes, limit=4, out=out, **RUN)
    finally:
        with torch.no_grad():
            parameter.copy_(kept)
    assert evaluate(loaded, shapes, limit=4, out=out, **RUN).items == 4  # resumes again


def test_the_weights_fingerprint_is_the_same_for_the_same_weights_loaded_twice(tiny_dir, loaded):
    from dexar_core.api import load

    assert weights_fingerprint(load(str(tiny_dir)).model) == weights_fingerprint(loaded.model)
    assert weights_fingerprint(object()) is None  # nothing to read: no digest, no error


def test_every_interval_brackets_its_number(uninterrupted):
    summary, _ = uninterrupted
    numbers, bounds = summary.to_dict(), summary.to_dict()["confidence"]

    def walk(values, intervals, path):
        for key, interval in intervals.items():
            value = values[key]
            if isinstance(interval, dict):
                walk(value, interval, (*path, key))
            elif value is not None and interval[0] is not None:
                assert interval[0] - 1e-12 <= value <= interval[1] + 1e-12, (*path, key)

    walk(numbers, bounds, ())
    perturbation = {"perturbation_log_ratio", "perturbation_median", "perturbation_win_rate"}
    assert set(bounds) == {
        "segmentation",
        "grounding",
        "delta_auroc",
        "perturbation",
        "accuracy",
        *perturbation,
    }
    assert bounds["segmentation"]["uniform"]["epg"][0] < bounds["segmentation"]["uniform"]["epg"][1]


def test_bootstrap_helpers():
    draws = resample_indices(5, 20, seed=1)
    assert draws.shape == (20, 5) and np.array_equal(draws, resample_indices(5, 20, seed=1))
    assert percentile_interval([0.5] * 10) == (0.5, 0.5)
    low, high = percentile_interval(np.arange(101.0))
    assert (low, high) == pytest.approx((2.5, 97.5))
    assert all(math.isnan(end) for end in percentile_interval([1.0, math.nan, math.nan]))
    with pytest.raises(InputError, match="at least one item"):
        resample_indices(0)


def test_perturbation_scores_the_map_and_a_random_chance_map(loaded, shapes):
    summary = evaluate(loaded, shapes, limit=2, **PERTURBATION)
    assert summary.metrics == ("perturbation",)
    for line in ("method", "random_smooth"):
        for order in ("positive", "negative"):
            assert math.isfinite(summary.perturbation[line][order])
    assert math.isnan(summary.segmentation["method"]["epg"])  # not measured


def test_perturbation_curves_start_at_exactly_one(loaded, shapes, tmp_path):
    evaluate(loaded, shapes, limit=1, out=tmp_path, **PERTURBATION)
    record = json.loads((tmp_path / ITEMS_FILE).read_text())
    for order in ("positive", "negative"):
        assert record["perturbation_curves"][order][0] == 1.0
        assert len(record["perturbation_curves"][order]) == 10
        log_ratio = np.log(record["perturbation_curves"][order])
        area = record["perturbation_log_ratio"]["method"][order]
        assert area == pytest.approx(trapezoid_auc(FRACTIONS, log_ratio), rel=1e-9, abs=1e-12)
        assert math.isfinite(record["perturbation_log_ratio"]["random_smooth"][order])
    assert record["segmentation"] == {} and record["token_grounding"] == []


def write_voc(root, size=(24, 20), mask_size=None):
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    width, height = mask_size or size
    for image_id in ("a", "b"):
        Image.new("RGB", size, (200, 30, 30)).save(root / "JPEGImages" / f"{image_id}.jpg")
        classes = np.zeros((height, width), np.uint8)
        classes[4:12, 4:12] = 15  # a person
        classes[0, :] = 255  # void border
        Image.fromarray(classes, mode="L").save(root / "SegmentationClass" / f"{image_id}.png")
    return root


def test_voc_items_score_segmentation_over_valid_pixels_and_name_classes(tmp_path):
    benchmark = open_benchmark(f"voc:{write_voc(tmp_path)}")
    item = benchmark[0]
    assert (
        benchmark.split == "val" and item.item_id == "a" and item.question == "describe the image."
    )
    assert item.mask.sum() == 64 and not item.valid[0].any()
    assert item.object_words["person"] == (15,) and item.object_words["people"] == (15,)
    assert item.object_words["dogs"] == () and item.is_correct("a person") is None
    assert item.union_of((15,)).sum() == 64


def test_evaluate_on_voc(loaded, tmp_path):
    benchmark = open_benchmark(f"voc:{write_voc(tmp_path / 'voc')}")
    assert check_metrics(None, benchmark) == ("segmentation", "grounding")
    every = ("segmentation", "grounding", "perturbation")
    summary = evaluate(loaded, benchmark, out=tmp_path / "out", **{**RUN, "metrics": every})
    assert summary.items == 2 and summary.metrics == every
    assert math.isfinite(summary.perturbation["method"]["positive"])
    assert math.isfinite(summary.segmentation["method"]["soft_iou"])
    assert math.isnan(summary.accuracy["all"])  # VOC has no reference answers
    # The uniform map's EPG is the object's share of the valid (non-void) pixels.
    assert summary.segmentation["uniform"]["epg"] == pytest.approx(64 / (24 * 19))


def test_imagenet_and_vqa_are_scored_by_perturbation_and_answers(loaded, tmp_path):
    for name in ("tench", "goldfish"):
        (tmp_path / "imagenet" / name).mkdir(parents=True)
        Image.new("RGB", (20, 20), (0, 90, 0)).save(tmp_path / "imagenet" / name / "0.png")
    imagenet = open_benchmark(f"imagenet:{tmp_path / 'imagenet'}")
    tench = imagenet[1]  # class folders in sorted order: goldfish, tench
    assert tench.references == ("tench",) and tench.is_correct("A tench.") is True
    summary = evaluate(loaded, imagenet, **{**RUN, "metrics": None})
    assert summary.metrics == ("perturbation",) and summary.kind_counts == {"class": 2, "all": 2}
    (tmp_path / "vqa.jsonl").write_text(
        json.dumps({"image": "imagenet/tench/0.png", "question": "what?", "answers": ["Fish"]})
        + "\n"
    )
    vqa = open_benchmark(f"vqa:{tmp_path / 'vqa.jsonl'}")
    assert vqa[0].is_correct("fish.") is True and vqa[0].is_correct("a fish") is False
    with pytest.raises(InputError, match="has no object masks, so segmentation cannot"):
        evaluate(loaded, vqa, **{**RUN, "metrics": ("segmentation",)})
    with pytest.raises(InputError, match="vqa datasets have no split"):
        open_benchmark(f"vqa:{tmp_path / 'vqa.jsonl'}", "val")


def command(tiny_dir, out, *arguments):
    return main(
        [
            *("evaluate", "--model", str(tiny_dir), "--out", str(out)),
            *("--max-new-tokens", "4"),
            *(() if "--resamples" in arguments else ("--resamples", "20")),
            *arguments,
        ]
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing_mask", r"have no a mask <id>\.png in '.*SegmentationClass'"),
        ("mask_size", r"VOC mask '.*b\.png' is 30x20 but its image '.*b\.jpg' is 24x20"),
        ("vqa_image", r"vqa\.jsonl:2: no image"),
    ],
)
def test_command_names_the_bad_file_or_line(tiny_dir, tmp_path, capsys, damage, message):
    if damage == "vqa_image":
        Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
        lines = [{"image": "x.png", "question": "q?"}, {"question": "where is it?"}]
        (tmp_path / "vqa.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        dataset = f"vqa:{tmp_path / 'vqa.jsonl'}"
    else:
        root = write_voc(tmp_path / "voc")
        if damage == "missing_mask":
            (root / "SegmentationClass" / "b.png").unlink()
        else:
            Image.new("L", (30, 20)).save(root / "SegmentationClass" / "b.png")
        dataset = f"voc:{root}"
    code = command(tiny_dir, tmp_path / "out", "--dataset", dataset)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "dexar: error:" in err and "Traceback" not in err
    assert re.search(message, err), err


def test_command_runs_several_methods_each_with_its_options(tiny_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = command(
        tiny_dir,
        out,
        "--limit",
        "2",
        "--methods",
        "dexar,attention",
        "--metrics",
        "segmentation",
        "--option",
        "dexar.head_agg=mean",
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = [line.split()[0] for line in captured.out.splitlines() if line.strip()]
    assert {"dexar", "attention", "uniform", "random"} <= set(rows)
    assert "[" in captured.out and "pointing" not in captured.out  # grounding not asked
    assert json.loads((out / "dexar" / "run.json").read_text())["options"] == {"head_agg": "mean"}
    assert json.loads((out / "attention" / "run.json").read_text())["options"] == {}
    assert set(json.loads((out / SUMMARY_FILE).read_text())) == {"dexar", "attention"}
    code = command(tiny_dir, out, "--limit", "2", "--methods", "dexar", "--option", "rollout.x=1")
    assert code == 2 and "not in --methods" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_under_accelerate_equal_one_and_resume(tiny_dir, tmp_path, uninterrupted):
    pytest.importorskip("accelerate")
    whole, whole_out = uninterrupted
    # the launcher as a module of this interpreter (a venv may have no accelerate script)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dexar_core"]
    arguments = ["evaluate", "--model", str(tiny_dir), "--out", str(tmp_path), "--limit", "4"]
    arguments += ["--seed", "0", "--max-new-tokens", "4", "--resamples", "50"]
    arguments += ["--metrics", "segmentation,grounding"]
    # No GPU: accelerate's multi-process launch then runs torch.distributed on gloo.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    finished = subprocess.run(launch + arguments, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    folder = tmp_path / "dexar"
    logs = sorted(path.name for path in (folder / LOG_FOLDER).iterdir())
    assert logs == ["rank0.jsonl", "rank1.jsonl"]
    assert [len((folder / LOG_FOLDER / log).read_text().splitlines()) for log in logs] == [2, 2]
    assert items_of(folder) == items_of(whole_out)
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    assert without_seconds(summary) == without_seconds(whole.to_dict())
    again = subprocess.run(launch + arguments, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert log_lines(folder) == 4  # the resumed run found every item done
    assert without_seconds(json.loads((folder / SUMMARY_FILE).read_text())) == without_seconds(
        whole.to_dict()
    )


def test_command_json_holds_every_method_and_resamples_0_leaves_out_intervals(
    tiny_dir, tmp_path, capsys
):
    code = command(tiny_dir, tmp_path / "out", "--limit", "1", "--json", "--resamples", "0")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summaries = json.loads(captured.out)
    assert list(summaries) == ["dexar"] and summaries["dexar"]["resamples"] == 0
    assert summaries["dexar"]["metrics"] == ["segmentation", "grounding"]
    assert summaries["dexar"]["confidence"]["segmentation"]["method"]["epg"] == [None, None]
    assert command(tiny_dir, tmp_path / "out", "--resamples", "-1") == 2
    assert "--resamples must be 0" in capsys.readouterr().err
