"""A hub id in the local cache loads with no network, in seconds, and is explained."""

from __future__ import annotations

import json
import time

import pytest
from conftest import COMMIT, REPO_ID
from llava_fixtures import noise_image

import dexar_core
from dexar_core.cli.main import main


def test_a_cached_hub_id_loads_without_any_connection(in_cache, no_network):
    start = time.perf_counter()
    loaded = dexar_core.load(REPO_ID)
    seconds = time.perf_counter() - start
    assert no_network == []  # not one connection, so no retry either
    assert seconds < 30
    assert loaded.model_id == REPO_ID
    explanation = dexar_core.explain(loaded, noise_image(), "what color?", answer="red circle")
    assert explanation.metadata["checkpoint"].endswith(COMMIT)  # the commit that was read


def test_the_cli_explains_a_cached_hub_id_offline(in_cache, no_network, tmp_path, capsys):
    image = tmp_path / "image.png"
    noise_image().save(image)
    code = main(
        [
            "explain",
            "--model",
            REPO_ID,
            "--image",
            str(image),
            "--prompt",
            "what color?",
            "--answer",
            "red",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert no_network == []
    record = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert record["metadata"]["dtype"] == "float32"
    assert record["metadata"]["device"] == "cpu"
    assert record["metadata"]["attn_implementation"] == "sdpa"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("./no-such-llava", "no such folder"),
        ("shapes-lava", "Did you mean the embedded model 'shapes-llava'"),
        ("someone/not-cached", "nothing was downloaded"),
    ],
)
def test_user_mistakes_fail_fast_with_exit_2(
    in_cache, no_network, capsys, tmp_path, model, expected
):
    image = tmp_path / "x.png"
    noise_image(1).save(image)  # a real image: the image is checked before the model
    start = time.perf_counter()
    code = main(["explain", "--model", model, "--image", str(image), "--prompt", "what?"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err
    assert time.perf_counter() - start < 10
    assert no_network == []
