"""``dexar evaluate`` on a contrastive model (shapes-clip); methods a model cannot run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dexar_core import errors
from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.compare.on_dataset import compare_on_dataset
from dexar_core.datasets.benchmark import as_benchmark_item
from dexar_core.evaluation.perturbation import explained_units, unit_score_curve
from dexar_core.evaluation.records import NOT_APPLICABLE_TO_PROMPTS as NOT_APPLICABLE
from dexar_core.evaluation.run import evaluate, explained_prompt, open_dataset
from dexar_core.metrics.perturbation import mask_to_grid

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clip():
    return load("shapes-clip")


def similarity_prompt(item):
    return explained_prompt(item, "prompts")


@pytest.fixture(scope="module")
def items():
    dataset = open_dataset("shapes", "test")
    return [as_benchmark_item(dataset[index]) for index in range(3)]


def test_the_prompt_is_the_caption_of_every_object(items):
    for item in items:
        prompt = similarity_prompt(item)
        assert prompt == item.description and prompt.startswith("a ")
        named = {word for word, objects in item.object_words.items() if objects}
        assert named <= set(prompt.replace(",", " ").split())
        assert explained_prompt(item, "answer tokens") == item.question


def test_an_item_without_text_is_refused(items):
    import attrs

    blank = attrs.evolve(items[0], description="", references=())
    with pytest.raises(errors.InputError, match="no caption or reference text"):
        similarity_prompt(blank)


def test_the_true_mask_drops_the_similarity_more_than_its_inverse(clip, items):
    """Removing the objects first lowers the caption's similarity faster than removing
    the background first: the oracle's positive AUC is below its inverse's, on every item."""
    for item in items:
        explanation = explain(clip, item.image, similarity_prompt(item), method="legrad")
        grid = explanation.grids[0]
        oracle = mask_to_grid(item.mask, grid)
        units = explained_units(explanation)
        curves = [
            unit_score_curve(clip, item.image, explanation.prompt, units, [map2d], [grid])
            for map2d in (oracle, 1.0 - oracle)
        ]
        for curve in curves:
            assert curve.measure == "similarity"
            assert curve.normalised[0] == 1.0  # r = 0 is the clean image, exactly
            assert curve.scores[0] == pytest.approx(explanation.metadata["similarities"][0])
        assert curves[0].auc < curves[1].auc, (item.index, curves[0].auc, curves[1].auc)


def test_a_non_positive_clean_similarity_leaves_the_curve_undefined(clip, items, monkeypatch):
    item = items[0]
    explanation = explain(clip, item.image, similarity_prompt(item))
    grid = explanation.grids[0]
    monkeypatch.setattr(
        type(clip.adapter),
        "similarities",
        lambda self, loaded, images, prompt: -np.ones(len(images)),
    )
    units = explained_units(explanation)
    curve = unit_score_curve(clip, item.image, "x", units, [np.zeros(grid.shape)], [grid])
    assert all(math.isnan(value) for value in curve.normalised) and math.isnan(curve.auc)


def test_evaluate_scores_segmentation_and_the_similarity_drop(clip, items):
    seen = []
    summary = evaluate(
        clip,
        open_dataset("shapes", "test"),
        method="dexar",
        metrics=["segmentation", "grounding", "perturbation"],
        limit=2,
        resamples=20,
        on_item=lambda item, explanation, result: seen.append(result),
    )
    assert summary.metrics == ("segmentation", "perturbation")
    assert summary.not_applicable == NOT_APPLICABLE
    assert summary.perturbation_measure == "similarity"
    assert summary.grounding["tokens"] == 0
    auroc = summary.delta_auroc["auroc"]
    assert auroc is None or math.isnan(auroc)
    assert math.isnan(summary.accuracy["all"])  # no answer, no accuracy
    for result, item in zip(seen, items, strict=False):
        assert result.question == item.description and result.correct is None
        assert result.error is None and result.tokens == (item.description,)
        assert result.perturbation_curves["positive"][0] == 1.0
        assert result.perturbation_curves["negative"][0] == 1.0
        assert set(result.segmentation) == {"soft_iou", "best_iou", "epg", "snr"}
    # a good map beats the random smooth map at removing what the caption describes
    assert (
        summary.perturbation["method"]["positive"]
        < summary.perturbation["random_smooth"]["positive"]
    )


def test_grounding_alone_is_refused_for_a_contrastive_model(clip):
    with pytest.raises(errors.InputError, match="grounding is not applicable"):
        evaluate(clip, open_dataset("shapes", "test"), metrics=["grounding"], limit=1)


def test_a_method_a_contrastive_model_cannot_run_is_a_method_error(clip):
    with pytest.raises(errors.MethodError, match="contrastive models"):
        evaluate(clip, open_dataset("shapes", "test"), method="rollout", limit=1)


def test_a_row_method_beyond_dexar_and_legrad_is_evaluated_on_the_caption(clip):
    summary = evaluate(
        clip, open_dataset("shapes", "test"), method="attention", metrics=["segmentation"], limit=1
    )
    assert summary.items == 1 and summary.skipped == 0


def test_command_runs_on_shapes_clip_with_two_methods(tmp_path, capsys):
    args = ["evaluate", "--model", "shapes-clip", "--limit", "3", "--methods", "legrad,dexar"]
    args += ["--metrics", "segmentation,grounding,perturbation", "--resamples", "20"]
    code = main([*args, "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((tmp_path / "summary.json").read_text())
    assert list(record) == ["legrad", "dexar"]
    for summary in record.values():
        assert summary["items"] == 3 and summary["skipped"] == 0
        assert summary["perturbation_measure"] == "similarity"
        assert "grounding" in summary["not_applicable"]
    assert "sim_r/sim_0 AUC" in captured.out and "positive (lower better)" in captured.out
    assert f"grounding: {NOT_APPLICABLE['grounding']}" in captured.out
    assert "pointing game" not in captured.out and "nPPL" not in captured.out


def test_compare_on_a_dataset_includes_a_contrastive_model():
    table = compare_on_dataset(["shapes-clip"], ["dexar", "rollout"], limit=1)
    summary = table.summaries["shapes-clip"]["dexar"]
    assert summary["items"] == 1 and summary["perturbation_measure"] == "similarity"
    assert table.value("shapes-clip", "dexar", "soft_iou") is not None
    assert table.value("shapes-clip", "dexar", "pointing_game") is None  # shown as n/a
    assert "contrastive models" in table.reasons["shapes-clip"]["rollout"]


FLORENCE = "shapes-florence2"  # embedded and trained: it answers, so rollout gets to run


def test_a_method_the_architecture_cannot_run_does_not_stop_the_others(tmp_path, capsys):
    args = ["evaluate", "--model", FLORENCE, "--methods", "dexar,rollout"]
    code = main([*args, "--limit", "2", "--resamples", "10", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["dexar"]["items"] == 2 and record["dexar"]["skipped"] == 0
    assert record["rollout"].startswith("not supported: ")
    assert "decoder self-attention" in record["rollout"]
    assert "rollout: not supported: " in captured.out


def test_when_no_method_can_run_the_command_fails(tmp_path, capsys):
    args = ["evaluate", "--model", FLORENCE, "--methods", "rollout"]
    code = main([*args, "--limit", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0
    assert "decoder self-attention" in err and "Traceback" not in err
