"""``evaluate(batch_size=N)`` records what a batch of one records, but for the seconds.

A batch explains its items together (``explain_batch``); the scores are computed per
item from its explanation, which equals the unbatched one up to float32 rounding, so
every number of every record agrees within 1e-5 (relative) and every text, token and
count exactly.
"""

from __future__ import annotations

import json
import math

import pytest

from dexar_core.api import load
from dexar_core.cli.main import main
from dexar_core.errors import InputError
from dexar_core.evaluation.run import evaluate, open_dataset
from dexar_core.evaluation.run_log import ITEMS_FILE

RUN = {"seed": 0, "max_new_tokens": 12, "resamples": 20}


def assert_same_record(actual, expected, where="record"):
    """Equal texts, ids and flags; numbers within 1e-5 relative (float32 rounding)."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            if key != "seconds":
                assert_same_record(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for index, (one, other) in enumerate(zip(actual, expected)):
            assert_same_record(one, other, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert math.isclose(actual, expected, rel_tol=1e-5, abs_tol=1e-6) or (
            math.isnan(actual) and math.isnan(expected)
        ), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, where


def items_of(folder):
    return [json.loads(line) for line in (folder / ITEMS_FILE).read_text().splitlines()]


@pytest.mark.parametrize("name", ["shapes-llava", "shapes-qwen2vl"])
def test_batched_records_equal_one_at_a_time(name, tmp_path):
    loaded = load(name)
    shapes = open_dataset("shapes", "test")
    metrics = ("segmentation", "grounding", "perturbation")
    one = evaluate(loaded, shapes, limit=5, out=tmp_path / "one", metrics=metrics, **RUN)
    three = evaluate(
        loaded, shapes, limit=5, out=tmp_path / "three", metrics=metrics, batch_size=3, **RUN
    )
    assert_same_record(items_of(tmp_path / "three"), items_of(tmp_path / "one"))
    assert_same_record(three.to_dict(), one.to_dict(), "summary")


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_a_bad_batch_size_is_refused(size):
    loaded = load("shapes-llava")
    with pytest.raises(InputError, match="batch_size must be a whole number"):
        evaluate(loaded, open_dataset("shapes", "test"), limit=1, batch_size=size)


@pytest.mark.parametrize("size", ["0", "-3", "1.5", "two"])
def test_the_command_refuses_a_bad_batch_size(size, tmp_path, capsys):
    code = main(["evaluate", "--limit", "1", "--out", str(tmp_path), "--batch-size", size])
    assert code == 2
    assert "--batch-size" in capsys.readouterr().err
