"""What the faithfulness protocol needs of ``dexar evaluate``: teacher-forced reference
answers, a method run twice under labels with its own options, and the paired table
against a chosen label."""

from __future__ import annotations

import json

import pytest
import torch
from voc_folders import write_voc

from dexar_core.api import explain
from dexar_core.cli.evaluate import method_labels
from dexar_core.cli.main import main
from dexar_core.datasets.benchmark import open_benchmark
from dexar_core.errors import InputError
from dexar_core.evaluation.run import check_answers, evaluate, score_item

torch.set_num_threads(2)


def _records(folder):
    return [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]


def test_reference_answers_are_explained_teacher_forced_and_not_judged(loaded, shapes, tmp_path):
    summary = evaluate(
        loaded, shapes, limit=3, answers="reference", resamples=20, out=tmp_path / "forced"
    )
    evaluate(loaded, shapes, limit=3, resamples=20, out=tmp_path / "free")
    forced, free = _records(tmp_path / "forced"), _records(tmp_path / "free")
    for position, recorded in enumerate(forced):
        item = shapes[position]
        explanation = explain(loaded, item.image, item.question, answer=item.answer)
        expected = json.loads(json.dumps(score_item(item, explanation).to_dict()))
        assert expected["answer"] == item.answer
        del expected["seconds"], expected["correct"]
        assert recorded["correct"] is None
        # the same engine on the same machine: the same numbers, to the bit
        assert {key: recorded[key] for key in expected} == expected
    assert all(value is None for value in summary.to_dict()["accuracy"].values())
    # the tiny random model does not answer the reference: the default explains its own
    assert [r["answer"] for r in free] != [r["answer"] for r in forced]
    assert all(r["correct"] is not None for r in free)


def test_a_folder_of_generated_answers_refuses_to_resume_with_reference_ones(
    loaded, shapes, tmp_path
):
    evaluate(loaded, shapes, limit=1, out=tmp_path, resamples=0)
    with pytest.raises(InputError, match="answers: 'generated' before, 'reference' now"):
        evaluate(loaded, shapes, limit=1, out=tmp_path, answers="reference", resamples=0)


def test_answers_refuse_an_unknown_mode_and_datasets_without_references(tmp_path, shapes):
    with pytest.raises(InputError, match="answers must be one of generated, reference"):
        check_answers("gold", shapes)
    voc = open_benchmark(f"voc:{write_voc(tmp_path / 'voc')}")
    with pytest.raises(InputError, match="no reference answers to teacher-force"):
        check_answers("reference", voc)
    check_answers("reference", shapes)


def test_reference_answers_on_voc_are_refused_before_the_model_loads(tmp_path, capsys):
    root = write_voc(tmp_path / "voc")
    arguments = ["evaluate", "--model", str(tmp_path / "no-such-model"), "--dataset"]
    code = main([*arguments, f"voc:{root}", "--prompt", "what?", "--answers", "reference"])
    assert code == 2
    assert "no reference answers to teacher-force" in capsys.readouterr().err


def test_labels_run_a_method_again_with_its_own_options(tiny_dir, shapes, loaded, tmp_path, capsys):
    out = tmp_path / "eval"
    arguments = ["evaluate", "--model", str(tiny_dir), "--limit", "2", "--resamples", "20"]
    arguments += ["--methods", "dexar,scores=dexar,attn_grad", "--answers", "reference"]
    arguments += ["--option", "scores.relevance=score_gradient", "--paired-with", "scores"]
    code = main([*arguments, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summaries = json.loads((out / "summary.json").read_text())
    assert list(summaries) == ["dexar", "scores", "attn_grad"]
    assert summaries["scores"]["method"] == "dexar"
    assert summaries["scores"]["options"] == {"relevance": "score_gradient"}
    assert summaries["dexar"]["options"] == {}
    alone = tmp_path / "alone"
    evaluate(loaded, shapes, limit=2, answers="reference", out=alone, relevance="score_gradient")
    logged = _records(out / "scores")
    for record, expected in zip(logged, _records(alone), strict=True):
        assert record["token_weights"] == pytest.approx(expected["token_weights"], abs=1e-6)
        assert record["segmentation"] == pytest.approx(expected["segmentation"], abs=1e-6)
    paper = _records(out / "dexar")
    assert [r["segmentation"] for r in paper] != [r["segmentation"] for r in logged]
    paired = json.loads((out / "paired.json").read_text())
    assert paired["reference"] == "scores" and set(paired["against"]) == {"dexar", "attn_grad"}
    assert "scores - dexar" in captured.out and "scores - attn_grad" in captured.out


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ("dexar,dexar=attention", "names 'dexar' twice"),
        ("a-b=dexar", "is not METHOD or LABEL=METHOD"),
        ("x=", "is not METHOD or LABEL=METHOD"),
        ("=dexar", "is not METHOD or LABEL=METHOD"),
        ("a/b=dexar", "is not METHOD or LABEL=METHOD"),
    ],
)
def test_bad_labels_are_refused_with_the_form_to_use(methods, message):
    with pytest.raises(InputError, match=message):
        method_labels(methods)


def test_labels_read_as_methods_where_none_is_given():
    assert method_labels("dexar, gae ,s2=dexar") == {"dexar": "dexar", "gae": "gae", "s2": "dexar"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "dexar,s=nosuch"], "nosuch"),
        (["--methods", "dexar,s=dexar", "--option", "s.relevance=bad"], "relevance must be"),
        (["--methods", "dexar,gae", "--paired-with", "tam"], "--paired-with 'tam' is not in"),
    ],
)
def test_label_mistakes_are_refused_before_the_model_loads(tmp_path, capsys, extra, message):
    code = main(["evaluate", "--model", str(tmp_path / "no-such-model"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
