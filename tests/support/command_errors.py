"""A ``dexar`` command that must fail on its input: exit 2 and one line, no traceback."""

from __future__ import annotations

import pytest

import dexar_core.api
from dexar_core.cli.main import main


def command_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``dexar *argv``; check that it exits 2 with no traceback; return its stderr."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


def refuse_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any model load fail the test: the mistake must be reported before one."""

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("the model was loaded before the mistake was reported")

    monkeypatch.setattr(dexar_core.api, "load", refuse)
