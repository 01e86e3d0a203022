"""The grounded benchmark on a tiny random LLaVA: records, chance lines, the command, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from command_errors import command_error

from dexar_core import errors
from dexar_core.api import explain
from dexar_core.cli.main import main
from dexar_core.evaluation.run import (
    CHANCE_LINES,
    ITEMS_FILE,
    SEGMENTATION_METRICS,
    SUMMARY_FILE,
    chance_seed,
    evaluate,
    open_dataset,
    score_item,
    token_word,
    word_class,
)
from dexar_core.metrics import chance_scores, pointing_game, uniform_pointing_chance

torch.set_num_threads(2)

ITEMS = 3
SEED = 5


@pytest.fixture(scope="module")
def run(loaded, shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-out")
    seen = []
    summary = evaluate(
        loaded,
        shapes,
        limit=ITEMS,
        out=out,
        seed=SEED,
        max_new_tokens=5,
        on_item=lambda item, explanation, result: seen.append(result.index),
    )
    return summary, out, seen


def test_evaluate_writes_one_jsonl_line_per_item_and_the_summary(run, shapes):
    summary, out, seen = run
    lines = (out / ITEMS_FILE).read_text().splitlines()
    assert len(lines) == ITEMS and seen == [0, 1, 2]
    for line, index in zip(lines, range(ITEMS), strict=True):
        record = json.loads(line)
        item = shapes[index]
        assert record["index"] == index and record["kind"] == item.kind
        assert record["question"] == item.question and record["expected"] == item.answer
        assert set(record["segmentation"]) == set(SEGMENTATION_METRICS)
        assert set(record["chance"]) == set(CHANCE_LINES)
        assert len(record["tokens"]) == len(record["token_weights"]) == len(record["word_classes"])
        assert record["error"] is None
    written = json.loads((out / SUMMARY_FILE).read_text())
    assert written == summary.to_dict()
    assert set(written) >= {
        "segmentation",
        "undefined",
        "grounding",
        "delta_auroc",
        "accuracy",
        "kind_counts",
    }
    assert set(written["segmentation"]) == {"method", *CHANCE_LINES}


def test_summary_values_lie_in_their_ranges(run):
    summary, _, _ = run
    assert summary.items == ITEMS and summary.skipped == 0
    for line in summary.segmentation.values():
        for metric in ("soft_iou", "best_iou", "epg"):
            assert 0.0 <= line[metric] <= 1.0
        assert math.isfinite(line["snr"])
    assert all(0.0 <= value <= 1.0 for value in summary.accuracy.values())
    assert summary.kind_counts["all"] == ITEMS
    assert sum(n for kind, n in summary.kind_counts.items() if kind != "all") == ITEMS


def test_summary_chance_lines_are_the_metric_functions_chance_lines(run, shapes):
    summary, _, _ = run
    per_item = [
        chance_scores(shapes[index].union_mask, chance_seed(SEED, index)) for index in range(ITEMS)
    ]
    for line in CHANCE_LINES:
        for metric in SEGMENTATION_METRICS:
            expected = np.mean([scores[line][metric] for scores in per_item])
            assert summary.segmentation[line][metric] == pytest.approx(expected, abs=1e-12)
    # The uniform map scores the mask's area fraction on the three overlap metrics.
    area = np.mean([shapes[index].union_mask.mean() for index in range(ITEMS)])
    assert summary.segmentation["uniform"]["epg"] == pytest.approx(area)


def test_object_words_are_scored_against_the_objects_they_name(loaded, shapes):
    item = next(item for item in shapes if item.kind == "caption" and len(item.objects) >= 2)
    explanation = explain(loaded, item.image, item.question, answer=item.caption)
    result = score_item(item, explanation, seed=SEED)
    classes = dict(zip(explanation.tokens, result.word_classes, strict=True))
    assert classes[item.objects[0].color] == "object" and classes["a"] == "function"
    assert classes["at"] == "function"
    grounded = {g.position: g for g in result.token_grounding}
    token_maps, _ = explanation.upsample()
    for position, word in enumerate(explanation.tokens):
        if word not in (item.objects[0].color, item.objects[0].shape):
            continue
        named = [obj for obj in item.objects if word in (obj.color, obj.shape)]
        mask = np.any([obj.mask for obj in named], axis=0)  # several objects: their union
        record = grounded[position]
        assert record.pointing_game == pointing_game(token_maps[position], mask)
        assert record.uniform_pointing_chance == pytest.approx(uniform_pointing_chance(mask))
        assert 0.0 <= record.iou <= 1.0
        assert record.delta == pytest.approx(float(explanation.token_weights[position]))


def test_word_classes(shapes):
    item = shapes[0]
    present = item.objects[0]
    assert token_word("\u2581Red,") == "red"
    assert word_class(present.color, item) == "object"
    assert word_class(present.shape, item) == "object"
    absent = [
        shape
        for shape in ("circle", "square", "triangle")
        if shape not in {obj.shape for obj in item.objects}
    ]
    for shape in absent:
        assert word_class(shape, item) == "absent"
    assert word_class("the", item) == "function"
    assert word_class("left", item) == "other"


def test_bad_library_inputs(loaded, shapes):
    with pytest.raises(errors.InputError, match="positive number"):
        evaluate(loaded, shapes, limit=0)
    with pytest.raises(errors.InputError, match="No method named"):
        evaluate(loaded, shapes, limit=1, method="gradcam")
    with pytest.raises(errors.DatasetError, match="no dataset named 'voc'"):
        open_dataset("voc")
    with pytest.raises(errors.DatasetError, match="no split 'dev'"):
        open_dataset("shapes", "dev")


def test_command_prints_the_table_with_chance_lines(tiny_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_dir),
            "--limit",
            "1",
            "--max-new-tokens",
            "3",
            "--out",
            str(out),
            "--pictures",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for line in ("dexar", "uniform", "random smooth", "pointing", "AUROC", "answer accuracy"):
        assert line in captured.out
    assert (out / "dexar" / ITEMS_FILE).is_file() and (out / "dexar" / SUMMARY_FILE).is_file()
    assert (out / SUMMARY_FILE).is_file()
    assert (out / "dexar" / "pictures" / "item0000_sequence.png").is_file()
    assert "1/1" in captured.err  # progress on stderr


@pytest.mark.parametrize("damage", ["truncated", "missing", "config"])
def test_command_corrupt_checkpoint_exits_2(tiny_dir, tmp_path, capsys, damage):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    weights = broken / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "missing":
        weights.unlink()
    else:
        (broken / "config.json").write_text("{ not json")
    err = command_error(
        capsys, "evaluate", "--model", str(broken), "--limit", "1", "--out", str(tmp_path)
    )
    assert "dexar: error:" in err
