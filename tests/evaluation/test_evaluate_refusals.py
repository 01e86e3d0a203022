"""``dexar evaluate`` never exits 0 on a run that measured nothing, and says how to resume."""

from __future__ import annotations

import torch

import dexar_core.evaluation.run
import dexar_core.explaining
from dexar_core.cli.main import main
from dexar_core.errors import InputError
from dexar_llava.tiny import build_tiny_llava

FAST = ["--limit", "2", "--resamples", "0", "--max-new-tokens", "4"]


def test_nan_weights_are_named_as_such(tmp_path, capsys):
    model, processor = build_tiny_llava(seed=0)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan")
    processor.save_pretrained(tmp_path / "nan")

    code = main(["evaluate", "--model", str(tmp_path / "nan"), "--out", str(tmp_path / "o"), *FAST])

    err = capsys.readouterr().err
    assert code == 2
    assert "hold NaN or infinity (first in" in err


def test_a_run_where_no_item_is_explained_is_an_error(tiny_dir, tmp_path, capsys, monkeypatch):
    def explanation_of(*args, **kwargs):
        raise InputError("the model's answer is empty (it stopped at once)")

    monkeypatch.setattr(dexar_core.explaining, "explanation_of", explanation_of)

    code = main(["evaluate", "--model", str(tiny_dir), "--out", str(tmp_path), *FAST])

    err = capsys.readouterr().err
    assert code == 2
    assert "no item could be explained by any method (dexar)" in err
    assert "the model's answer is empty (it stopped at once)" in err


def test_an_interrupt_says_that_rerunning_resumes(tiny_dir, tmp_path, capsys, monkeypatch):
    def evaluate(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dexar_core.evaluation.run, "evaluate", evaluate)

    code = main(["evaluate", "--model", str(tiny_dir), "--out", str(tmp_path), *FAST])

    err = capsys.readouterr().err
    assert code == 130
    assert "dexar: interrupted; rerun the same command to resume" in err
    assert f"the items finished so far are kept in {tmp_path}/" in err
