"""``dexar explain --batch``: each image an item of its own, each item's files in its folder.

A batch is distinct from several images in one prompt: a repeated ``--image`` stays
refused, naming ``--batch``; the items' explanations are those of one ``dexar explain``
per image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dexar_core.cli.main import main
from dexar_plugins.testing.tolerance import assert_float32_close

EXAMPLES = Path(__file__).resolve().parents[2] / "adapters"
IMAGES = [
    str(EXAMPLES / "dexar_llava" / "example.png"),
    str(EXAMPLES / "dexar_qwen_vl" / "example.png"),
]
COMMON = ["--model", "shapes-llava", "--no-html", "--max-new-tokens", "8"]


def test_each_item_writes_its_own_folder_with_its_single_explanation(tmp_path, capsys):
    out = tmp_path / "batch"
    code = main(
        [
            "explain",
            *COMMON,
            "--batch",
            *IMAGES,
            "--prompt",
            "describe the image.",
            "--prompt",
            "what shape is the red object?",
            "--batch-size",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [item["image"] for item in report["items"]] == IMAGES
    folders = sorted(path.name for path in out.iterdir())
    assert folders == ["000-example", "001-example"]
    for index, (image, prompt) in enumerate(
        zip(IMAGES, ["describe the image.", "what shape is the red object?"])
    ):
        alone = tmp_path / f"alone{index}"
        assert (
            main(["explain", *COMMON, "--image", image, "--prompt", prompt, "--out", str(alone)])
            == 0
        )
        batched = np.load(out / folders[index] / "explanation.npz")
        single = np.load(alone / "explanation.npz")
        assert sorted(batched.files) == sorted(single.files)
        for name in single.files:
            if np.issubdtype(single[name].dtype, np.floating):
                assert_float32_close(batched[name], single[name], terms=64, err_msg=name)
            else:
                assert np.array_equal(batched[name], single[name]), name
        assert (
            report["items"][index]["answer"]
            == json.loads((alone / "explanation.json").read_text())["answer"]
        )


def test_several_images_without_batch_are_refused_naming_batch(capsys):
    assert main(["explain", *COMMON, "--image", IMAGES[0], "--image", IMAGES[1]]) == 2
    assert "--batch" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch-size", "0"], "--batch-size must be a whole number"),
        (["--batch-size", "-2"], "--batch-size must be a whole number"),
        (["--batch-size", "1.5"], "invalid int value"),
        (["--image", IMAGES[0]], "leave out --image"),
        (["--prompt", "a?", "--prompt", "b?", "--prompt", "c?"], "one --prompt for every image"),
    ],
)
def test_bad_batches_are_refused(extra, message, tmp_path, capsys):
    code = main(["explain", *COMMON, "--out", str(tmp_path), "--batch", *IMAGES, *extra])
    assert code == 2
    assert message in capsys.readouterr().err
