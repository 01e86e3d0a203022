"""``dexar compare`` and ``dexar_core.compare``: models x methods on one image or a dataset."""

from __future__ import annotations

import json

import pytest
from command_errors import command_error
from PIL import Image
from voc_folders import write_voc

from dexar_core.cli.main import main
from dexar_core.compare.on_dataset import MetricsTable
from dexar_core.compare.on_image import Comparison, compare, split_names
from dexar_core.errors import DexarError, InputError
from dexar_core.viz.comparison import comparison_figure, row_caption, token_figure

MODELS = ("shapes-llava", "shapes-clip")
METHODS = ("dexar", "rollout")
"""rollout runs on shapes-llava; shapes-clip's pooled pass has no whole attention matrices."""


def prompt_flags(prompts: list[str]) -> list[str]:
    """``--prompt`` and the prompt, for each prompt."""
    return [item for prompt in prompts for item in ("--prompt", prompt)]


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return compare(list(MODELS), list(METHODS), max_new_tokens=5)


def test_every_method_explains_the_one_generated_answer(comparison):
    llava = comparison.rows[0]
    assert llava.model_id == "shapes-llava" and not llava.contrastive
    assert llava.answer.strip()
    explanations = [comparison.explanation("shapes-llava", method) for method in METHODS]
    assert all(explanation is not None for explanation in explanations)
    assert {explanation.answer for explanation in explanations} == {llava.answer}
    assert len({explanation.token_ids for explanation in explanations}) == 1
    assert not any(explanation.generated for explanation in explanations)  # teacher-forced
    assert [explanation.method for explanation in explanations] == list(METHODS)


def test_a_method_that_cannot_run_is_a_cell_with_its_reason(comparison):
    clip = comparison.rows[1]
    assert clip.contrastive and clip.answer == ""
    assert comparison.cell("shapes-clip", "dexar").supported
    rollout = comparison.cell("shapes-clip", "rollout")
    assert not rollout.supported and "whole attention matrices" in rollout.reason
    assert [(model, cell.method) for model, cell in comparison.unsupported()] == [
        ("shapes-clip", "rollout")
    ]
    explanation = comparison.explanation("shapes-clip", "dexar")
    assert list(clip.similarities) == pytest.approx(explanation.metadata["similarities"])
    with pytest.raises(InputError, match="no cell for model 'nope'"):
        comparison.cell("nope", "dexar")


def test_the_figure_has_a_cell_per_pair_and_says_what_is_not_supported(comparison):
    figure = comparison_figure(comparison)
    rows = figure.subfigs
    assert len(rows) == len(MODELS)
    assert [len(row.axes) for row in rows] == [len(METHODS)] * len(MODELS)
    assert [ax.get_title() for ax in rows[0].axes] == list(METHODS)
    assert [row.axes[0].get_ylabel() for row in rows] == list(MODELS)
    assert [len(ax.images) for row in rows for ax in row.axes] == [1, 1, 1, 0]
    unsupported_text = " ".join(text.get_text() for text in rows[1].axes[1].texts)
    assert unsupported_text.startswith("not supported:")
    assert row_caption(comparison.rows[0]) == f"answer: {comparison.rows[0].answer!r}"
    assert row_caption(comparison.rows[1]).startswith("similarity: 'describe the image' 0.")
    strips = token_figure(comparison.rows[1], comparison.image)
    assert [ax.get_title(loc="left") for ax in strips.axes] == list(METHODS)
    assert [len(ax.images) for ax in strips.axes] == [1, 0]


def compare_argv(out, *extra):
    """``dexar compare`` of every model of MODELS by every method of METHODS into ``out``."""
    return [
        "compare",
        "--models",
        ",".join(MODELS),
        "--methods",
        ",".join(METHODS),
        *extra,
        "--out",
        str(out),
    ]


def test_cli_writes_the_grid_the_token_figures_and_the_explanations(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(compare_argv(out, "--max-new-tokens", "5"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "shapes-clip: similarity: 'describe the image'" in captured.out
    assert "  rollout: not supported: " in captured.out
    for name in ("comparison.png", "tokens_shapes-llava.png", "tokens_shapes-clip.png"):
        with Image.open(out / name) as picture:
            assert picture.width > 200 and picture.height > 200
    record = json.loads((out / "comparison.json").read_text())
    llava, clip = record["models"]
    assert clip["cells"]["rollout"]["supported"] is False
    assert "whole attention matrices" in clip["cells"]["rollout"]["reason"]
    for method in METHODS:
        saved = json.loads((out / "explanations" / "shapes-llava" / f"{method}.json").read_text())
        assert saved["answer"] == llava["answer"] and saved["method"] == method
    assert not (out / "explanations" / "shapes-clip" / "rollout.json").exists()


def test_cli_compares_several_prompts_of_a_contrastive_model(tmp_path, capsys):
    prompts = ["a red circle", "a blue square"]
    args = ["compare", "--models", "shapes-clip", "--methods", "dexar,legrad"]
    args += prompt_flags(prompts)
    code = main([*args, "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "similarity: 'a red circle' " in captured.out and "'a blue square' " in captured.out
    saved = json.loads((tmp_path / "explanations" / "shapes-clip" / "legrad.json").read_text())
    assert saved["tokens"] == prompts


def test_several_prompts_for_a_generative_model_are_refused(tmp_path, capsys):
    prompts = ["what color is the circle?", "where is the circle?"]
    args = ["compare", "--models", "shapes-llava"]
    args += prompt_flags(prompts)
    err = command_error(capsys, *args, "--out", str(tmp_path))
    assert "'shapes-llava' is a generative model" in err and "got 2" in err


def test_several_prompts_with_a_generative_model_fail_before_any_model_loads(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the prompts were checked")

    monkeypatch.setattr("dexar_core.api.load", no_loading)
    with pytest.raises(InputError, match=r"'shapes-llava' is a generative model.*got 2"):
        compare(["shapes-clip", "shapes-llava"], ["dexar"], prompt=["a red circle", "a cube"])


@pytest.mark.parametrize(
    ("models", "methods", "named"),
    [
        ("shapes-llava,no-such-model", "dexar", "no model named 'no-such-model'"),
        ("shapes-llava", "dexar,no_such_method", "No method named 'no_such_method'"),
    ],
)
def test_bad_model_or_method_names_fail_before_any_work(models, methods, named, tmp_path, capsys):
    code = main(["compare", "--models", models, "--methods", methods, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and named in err
    assert "comparing" in err and not (tmp_path / "comparison.png").exists()
    with pytest.raises(DexarError, match=named):
        compare(models.split(","), methods.split(","))


def test_repeated_names_and_bad_lengths_are_refused():
    with pytest.raises(InputError, match=r"methods \['dexar'\] are given more than once"):
        compare(["shapes-llava"], ["dexar", "dexar"])
    with pytest.raises(InputError, match="max_new_tokens must be an int of at least 1, got 0"):
        compare(["shapes-llava"], ["dexar"], max_new_tokens=0)


def test_name_lists_are_checked():
    assert split_names(" a, b ,", "models") == ["a", "b"]
    with pytest.raises(InputError, match="--methods is empty"):
        split_names(" , ", "methods")
    with pytest.raises(InputError, match=r"names \['a'\] more than once"):
        split_names("a,b,a", "models")


def test_dataset_gives_a_models_by_methods_table(tmp_path, capsys):
    out = tmp_path / "table"
    code = main(compare_argv(out, "--dataset", "shapes", "--limit", "2"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| model | dexar | rollout | uniform chance |" in captured.out
    assert (out / "metrics.md").read_text().strip() == captured.out.strip()
    record = json.loads((out / "metrics.json").read_text())
    assert record["limit"] == 2 and record["models"] == list(MODELS)
    assert "rollout" in record["reasons"]["shapes-clip"]
    table = MetricsTable(
        **{**record, "models": tuple(record["models"]), "methods": tuple(record["methods"])}
    )
    for method in METHODS:
        summary = json.loads((out / "shapes-llava" / method / "summary.json").read_text())
        assert summary["items"] == 2
        expected = summary["segmentation"]["method"]["soft_iou"]
        assert table.value("shapes-llava", method, "soft_iou") == pytest.approx(expected)
        shown = f"{expected:.3f}"
        row = next(line for line in captured.out.splitlines() if line.startswith("| shapes-llava"))
        assert shown in row
    clip_row = next(line for line in captured.out.splitlines() if line.startswith("| shapes-clip"))
    assert "not supported" in clip_row  # rollout cannot explain a contrastive model
    assert table.value("shapes-clip", "dexar", "soft_iou") is not None  # its caption's map
    assert table.value("shapes-clip", "dexar", "pointing_game") is None  # not applicable


def test_a_voc_folder_with_a_question_and_chosen_metrics(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", size=(32, 24))
    out = tmp_path / "table"
    args = ["compare", "--models", "shapes-llava", "--methods", "dexar,attention"]
    args += ["--dataset", f"voc:{root}", "--prompt", "describe the image", "--limit", "1"]
    code = main([*args, "--metrics", "segmentation,grounding", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith(f"voc:{root}, split val, first 1 items, seed 0")
    record = json.loads((out / "metrics.json").read_text())
    summary = record["summaries"]["shapes-llava"]["dexar"]
    assert summary["items"] == 1 and summary["metrics"] == ["segmentation", "grounding"]
    soft_iou = next(
        line
        for line in captured.out.split("**soft_iou**")[1].splitlines()
        if "|" in line and "shapes-llava" in line
    )
    assert f"{summary['segmentation']['method']['soft_iou']:.3f}" in soft_iou
    perturbation = captured.out.split("**perturbation_positive**")[1]
    assert "| shapes-llava | n/a | n/a | n/a |" in perturbation  # not asked for


def test_metrics_table_reads_numbers_intervals_and_gaps():
    summary = {
        "segmentation": {"method": {"soft_iou": 0.5}, "uniform": {"soft_iou": 0.1}},
        "accuracy": {"all": float("nan")},
        "confidence": {"segmentation": {"method": {"soft_iou": [0.25, 0.75]}}},
    }
    table = MetricsTable(
        dataset="shapes",
        split="test",
        limit=3,
        seed=0,
        models=("m1", "m2"),
        methods=("x",),
        summaries={"m1": {"x": summary}},
        reasons={"m2": {"x": "cannot run"}},
    )
    assert table.value("m1", "x", "soft_iou") == 0.5
    assert table.value("m1", "x", "soft_iou", "uniform") == 0.1
    assert table.interval("m1", "x", "soft_iou") == (0.25, 0.75)
    assert table.interval("m1", "x", "soft_iou", "uniform") is None
    assert table.value("m1", "x", "accuracy") is None  # NaN is undefined, not a number
    assert table.value("m2", "x", "soft_iou") is None
    markdown = table.to_markdown()
    assert "| m1 | 0.500 [0.250, 0.750] | 0.100 |" in markdown
    assert "| m2 | not supported | n/a |" in markdown
    assert "- m2 / x: not supported: cannot run" in markdown


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "shapes", "--image", "x.png"], "leave out --image"),
        (["--dataset", "shapes", "--prompt", "a", "--prompt", "b"], "at most one --prompt"),
        (["--limit", "2"], "--limit applies to --dataset only"),
        (["--metrics", "segmentation"], "--metrics applies to --dataset only"),
        (["--dataset", "shapes", "--metrics", "colour"], "unknown metric 'colour'"),
        (["--dataset", "no-such-set", "--limit", "2"], "cannot read dataset 'no-such-set'"),
    ],
)
def test_dataset_and_image_options_do_not_mix(extra, message, tmp_path, capsys):
    code = main(["compare", "--models", "shapes-llava", "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err


def test_models_named_by_folder_and_by_adapter_prefix():
    from dexar_plugins import default_catalog

    catalog = default_catalog()
    clip = f"open_clip:{catalog.embedded_model('shapes-clip').path}"
    llava = str(catalog.embedded_model("shapes-llava").path)
    image = catalog.embedded_model("shapes-clip").example_image
    result = compare([clip, llava], ["legrad"], image, "a red circle", max_new_tokens=4)
    assert [row.model_id for row in result.rows] == [clip, llava]
    assert [row.contrastive for row in result.rows] == [True, False]
    assert all(cell.supported for row in result.rows for cell in row.cells)
    same = compare(["shapes-clip"], ["legrad"], image, "a red circle")
    assert result.rows[0].similarities == pytest.approx(same.rows[0].similarities)
