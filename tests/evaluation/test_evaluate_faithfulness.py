"""Issue 21's numbers as evaluation outputs: wrong-object peaks, inverted maps, every-delta-0
items, paired differences, on hand-made results and end to end on the scenes set."""

from __future__ import annotations

import json
import math

import attrs
import numpy as np
import pytest
import torch

from dexar_core.api import explain
from dexar_core.cli.main import main
from dexar_core.datasets.scenes import ScenesDataset
from dexar_core.errors import InputError
from dexar_core.evaluation.records import ItemResult, TokenGrounding
from dexar_core.evaluation.run import score_item, summarise
from dexar_core.evaluation.summary import paired_differences
from dexar_core.metrics import object_contrast, uniform_pointing_chance, wrong_object_peak

torch.set_num_threads(2)


def _token(position: int, *, hit: bool, wrong: bool | None, contrast: float) -> TokenGrounding:
    return TokenGrounding(
        position=position,
        token="red",
        word="red",
        objects=(0,),
        delta=0.0,
        pointing_game=hit,
        iou=0.5,
        uniform_pointing_chance=0.1,
        uniform_iou=0.1,
        random_pointing_game=False,
        random_iou=0.1,
        wrong_object_peak=wrong,
        other_objects_area=math.nan if wrong is None else 0.2,
        random_wrong_object_peak=None if wrong is None else True,
        contrast=contrast,
        random_contrast=0.1,
    )


def _result(index: int, tokens: tuple[TokenGrounding, ...], weights: tuple[float, ...]):
    return ItemResult(
        index=index,
        kind="caption",
        question="describe the image.",
        expected="a red circle",
        answer="a red circle",
        correct=True,
        tokens=("a", "red", "circle")[: len(weights)],
        token_weights=weights,
        word_classes=("function", "object", "object")[: len(weights)],
        token_grounding=tokens,
    )


def _summary(results):
    return summarise(
        results, dataset="d", split="test", model_id="m", method="x", options={}, seed=0
    )


HAND_MADE = [
    _result(0, (_token(1, hit=True, wrong=False, contrast=0.4),), (0.0, 1.0, 0.0)),
    _result(1, (_token(1, hit=False, wrong=True, contrast=-0.3),), (0.0, 0.0, 0.0)),
    _result(2, (_token(1, hit=False, wrong=None, contrast=-0.1),), (0.0, 0.0, 0.0)),
    _result(3, (_token(1, hit=True, wrong=False, contrast=math.nan),), (2.0, 1.0, 0.5)),
]


def test_the_summary_counts_wrong_object_peaks_inversions_and_all_zero_answers():
    summary = _summary(HAND_MADE)
    grounding = summary.grounding
    # the single-object item (wrong=None) has no other object and is not counted
    assert grounding["wrong_object_tokens"] == 3
    assert grounding["wrong_object_peak"]["method"] == pytest.approx(1 / 3)
    assert grounding["wrong_object_peak"]["uniform"] == pytest.approx(0.2)
    assert grounding["wrong_object_peak"]["random_smooth"] == pytest.approx(1.0)
    # a NaN contrast is not counted; two of the three defined ones are below 0
    assert grounding["inverted"]["method"] == pytest.approx(2 / 3)
    assert grounding["inverted"]["random_smooth"] == 0.0
    assert summary.delta_auroc["all_zero_share"] == pytest.approx(0.5)
    low, high = summary.confidence["grounding"]["wrong_object_peak"]["method"]
    assert 0.0 <= low <= 1 / 3 <= high <= 1.0
    assert summary.confidence["delta_auroc"]["all_zero_share"][0] <= 0.5


def test_the_paired_difference_of_a_method_with_itself_is_zero_with_a_zero_width_interval():
    paired = paired_differences(HAND_MADE, list(reversed(HAND_MADE)), seed=3, resamples=200)
    assert paired["items"] == 4
    for section in ("grounding", "delta_auroc", "segmentation", "perturbation"):
        assert section in paired["difference"]
    assert "accuracy" not in paired["difference"]
    assert set(paired["difference"]["grounding"]["pointing_game"]) == {"method"}
    leaves = [
        (
            paired["difference"]["grounding"][score]["method"],
            paired["confidence"]["grounding"][score]["method"],
        )
        for score in ("pointing_game", "wrong_object_peak", "inverted", "iou")
    ]
    leaves.append(
        (
            paired["difference"]["delta_auroc"]["all_zero_share"],
            paired["confidence"]["delta_auroc"]["all_zero_share"],
        )
    )
    for difference, (low, high) in leaves:
        assert difference == 0.0 and low == 0.0 and high == 0.0


def test_the_paired_difference_is_the_difference_of_the_two_summaries_with_its_interval():
    better = [
        attrs.evolve(r, token_grounding=(attrs.evolve(r.token_grounding[0], pointing_game=True),))
        for r in HAND_MADE
    ]
    paired = paired_differences(better, HAND_MADE, seed=0, resamples=300)
    expected = (
        _summary(better).grounding["pointing_game"]["method"]
        - _summary(HAND_MADE).grounding["pointing_game"]["method"]
    )
    difference = paired["difference"]["grounding"]["pointing_game"]["method"]
    assert difference == pytest.approx(expected) == pytest.approx(0.5)
    low, high = paired["confidence"]["grounding"]["pointing_game"]["method"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0  # never below 0: 'better' never hits less


def test_paired_differences_refuse_results_of_other_items():
    with pytest.raises(InputError, match="same items"):
        paired_differences(HAND_MADE, HAND_MADE[:3])
    with pytest.raises(InputError, match="same items"):
        paired_differences(HAND_MADE, [attrs.evolve(r, index=r.index + 1) for r in HAND_MADE])


def test_records_round_trip_and_older_records_read_the_new_fields_as_not_measured():
    record = HAND_MADE[1].to_dict()
    assert ItemResult.from_dict(record) == HAND_MADE[1]
    for name in (
        "wrong_object_peak",
        "other_objects_area",
        "random_wrong_object_peak",
        "contrast",
        "random_contrast",
    ):
        del record["token_grounding"][0][name]
    old = ItemResult.from_dict(record).token_grounding[0]
    assert old.wrong_object_peak is None and math.isnan(old.contrast)


@pytest.fixture(scope="module")
def scenes_item():
    dataset = ScenesDataset("test", 60)
    return next(item for item in dataset if item.kind == "caption" and len(item.objects) >= 2)


def test_scenes_object_words_get_wrong_object_and_contrast_scores(loaded, scenes_item):
    item = scenes_item
    explanation = explain(loaded, item.image, item.question, answer=item.caption)
    result = score_item(item, explanation, seed=1)
    token_maps, _ = explanation.upsample()
    assert result.token_grounding
    for record in result.token_grounding:
        named = [item.objects[obj].mask for obj in record.objects]
        mask = np.logical_or.reduce(named)
        others = [o.mask for n, o in enumerate(item.objects) if n not in record.objects]
        token_map = token_maps[record.position]
        assert record.contrast == pytest.approx(object_contrast(token_map, mask, ~item.union_mask))
        if not others:  # a word naming every object (two red shapes, both red)
            assert record.wrong_object_peak is None
            continue
        other = np.logical_or.reduce(others)
        assert record.wrong_object_peak == wrong_object_peak(token_map, other)
        assert record.other_objects_area == pytest.approx(uniform_pointing_chance(other))


def test_evaluate_on_scenes_runs_end_to_end_with_the_paired_table(tiny_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    arguments = ["evaluate", "--model", str(tiny_dir), "--dataset", "scenes", "--split", "val"]
    arguments += ["--methods", "dexar,attn_grad", "--limit", "2", "--max-new-tokens", "4"]
    arguments += ["--resamples", "50", "--out", str(out)]
    code = main(arguments)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for text in (
        "ScenesDataset(split='val'",
        "wrong-object peak",
        "inverted",
        "items with every delta 0",
        "paired difference over 2 items",
        "dexar - attn_grad",
    ):
        assert text in captured.out
    paired = json.loads((out / "paired.json").read_text())
    assert paired["reference"] == "dexar" and set(paired["against"]) == {"attn_grad"}
    summaries = json.loads((out / "summary.json").read_text())
    assert summaries["dexar"]["split"] == "val"
    assert "all_zero_share" in summaries["dexar"]["delta_auroc"]
    assert set(summaries["dexar"]["grounding"]["inverted"]) == {"method", "random_smooth"}
