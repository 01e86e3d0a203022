"""Any ``dexar explain`` / ``dexar evaluate`` command line: a result or a one-line exit 2.

Two targets. The argument space (options, output paths, devices, lengths) is fuzzed up
to the model load, which is where validation must have caught every mistake: reaching
the load ends the call (:class:`ReachedLoad`). Prompts and answers of any length and
script run the embedded shapes-llava end to end (its real load, done once).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from conftest import model_examples, record, timed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dexar_core.api
from dexar_core.cli.main import main

DEXAR_OPTIONS = (
    "layers", "head_agg", "topk", "text_set", "normalize_tokens", "head_weighting",
    "token_weighting", "token_score", "official_compat",
)  # fmt: skip
METHODS = ("dexar", "attention", "attn_grad", "legrad", "rollout", "gae", "tam", "nope", "")
DEVICES = ("cpu", "cuda", "cuda:7", "mps", "tpu", "meta", "cpu:0", "", "gpu", "xla")
WORDS = ("circle", "red", "what", "ñandú", "猫", "🙂", "the")
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
VALUES = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["true", "false", "all", "last2", "0,1", "1,,", "max", "mean", "x"]),
    TEXT.filter(lambda text: len(text) < 12),
)


class ReachedLoad(BaseException):
    """Validation let the command through to the model load (not an Exception: the CLI
    must not turn it into an exit code)."""


@pytest.fixture
def stop_at_load(monkeypatch):
    def reached(*args, **kwargs):
        raise ReachedLoad

    monkeypatch.setattr(dexar_core.api, "load", reached)


def outcome(target: str, argv: list[str], capsys) -> str:
    """Run the command; check it ended in a result, a one-line exit 2, or the load."""
    with timed(target):
        try:
            code = main(argv)
        except ReachedLoad:
            record(target, "validated, reached the load")
            return "loaded"
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit {code} for {argv}:\n{err}"
    if code == 2:
        assert "dexar: error: " in err or "usage:" in err, err
        assert "Traceback" not in err and "internal error" not in err, err
        record(target, "exit 2")
    else:
        record(target, "exit 0")
    return "error" if code else "result"


@st.composite
def out_paths(draw, root: Path) -> str:
    kind = draw(st.sampled_from(["new", "nested", "existing file", "under a file", "folder"]))
    existing = root / "a-file.txt"
    existing.write_text("x")
    return {
        "new": str(root / "out"),
        "nested": str(root / "a" / "b" / "c"),
        "existing file": str(existing),
        "under a file": str(existing / "out"),
        "folder": str(root),
    }[kind]


def option_arguments(draw) -> list[str]:
    keys = st.sampled_from(DEXAR_OPTIONS) | TEXT.filter(lambda text: 0 < len(text) < 10)
    pairs = draw(st.lists(st.tuples(keys, VALUES), max_size=3))
    return [part for key, value in pairs for part in ("--option", f"{key}={value}")]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_explain_arguments(stop_at_load, tmp_path_factory, capsys, data):
    draw = data.draw
    root = tmp_path_factory.mktemp("explain")
    argv = ["explain", "--example", "--out", draw(out_paths(root))]
    argv += option_arguments(draw)
    if draw(st.booleans()):
        argv += ["--method", draw(st.sampled_from(METHODS))]
    if draw(st.booleans()):
        argv += ["--layers", draw(VALUES)]
    if draw(st.booleans()):
        argv += ["--device", draw(st.sampled_from(DEVICES) | TEXT)]
    if draw(st.booleans()):
        argv += ["--max-new-tokens", draw(st.integers(-2, 5).map(str) | VALUES)]
    if draw(st.booleans()):
        argv += ["--chunk-size", draw(st.integers(-1, 3).map(str))]
    outcome("explain arguments", argv, capsys)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_evaluate_arguments(stop_at_load, tmp_path_factory, capsys, data):
    draw = data.draw
    root = tmp_path_factory.mktemp("evaluate")
    methods = draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=3))
    argv = ["evaluate", "--methods", ",".join(methods), "--out", draw(out_paths(root))]
    argv += option_arguments(draw)
    if draw(st.booleans()):
        prefixed = draw(st.sampled_from(methods))
        argv += ["--option", f"{prefixed}.{draw(st.sampled_from(DEXAR_OPTIONS))}={draw(VALUES)}"]
    for flag, values in (
        ("--limit", st.integers(-1, 3).map(str)),
        ("--max-new-tokens", st.integers(-1, 3).map(str)),
        ("--device", st.sampled_from(DEVICES)),
        ("--resamples", st.integers(-1, 3).map(str)),
        ("--pictures", st.integers(-1, 2).map(str)),
        ("--split", st.sampled_from(["test", "train", "nope", ""])),
        ("--image-size", st.sampled_from(["64", "0", "80x112", "x", "-3"])),
    ):
        if draw(st.booleans()):
            argv += [flag, draw(values)]
    outcome("evaluate arguments", argv, capsys)


REAL_LOAD = dexar_core.api.load


@functools.cache
def shapes_llava():
    return REAL_LOAD("shapes-llava")


@settings(
    max_examples=model_examples(),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    prompt=st.one_of(
        TEXT.filter(lambda text: len(text) < 80),
        st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join),
        # past shapes-llava's 256 positions: refused with the limit, before generating
        st.tuples(st.sampled_from(WORDS), st.integers(200, 3000)).map(
            lambda pair: " ".join([pair[0]] * pair[1])
        ),
    ),
    answer=st.none()
    | TEXT.filter(lambda text: len(text) < 30)
    | st.integers(150, 400).map(lambda count: " ".join(["red"] * count)),
)
def test_prompts_and_answers_on_the_embedded_model(
    tmp_path_factory, capsys, monkeypatch, prompt, answer
):
    monkeypatch.setattr(dexar_core.api, "load", lambda *args, **kwargs: shapes_llava())
    out = tmp_path_factory.mktemp("model")
    argv = ["explain", "--example", "--prompt", prompt, "--out", str(out), "--max-new-tokens", "3"]
    if answer is not None:
        argv += ["--answer", answer]
    if outcome("explain on shapes-llava", argv, capsys) == "result":
        assert (out / "explanation.json").is_file(), "exit 0 without the explanation written"
