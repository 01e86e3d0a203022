"""``api.explain`` / ``api.load`` from Python: each mistake named before model work.

Run on the embedded shapes-llava (256 positions, a word tokenizer with ``<unk>``) and
shapes-clip (a 77-token text tower whose tokenizer cuts longer prompts silently).
"""

from __future__ import annotations

import functools
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from dexar_core import api
from dexar_core.compare.on_image import example_inputs
from dexar_core.errors import CheckpointError, DexarWarning, InputError, MethodError
from dexar_plugins import default_catalog


@functools.cache
def llava():
    return api.load("shapes-llava")


@functools.cache
def clip():
    return api.load("shapes-clip")


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if the model generates or is explained."""
    adapter = llava().adapter

    def refuse(*args, **kwargs):
        pytest.fail("the model ran before the mistake was reported")

    monkeypatch.setattr(type(adapter), "generate", refuse)
    monkeypatch.setattr(type(adapter.gradients), "attention_gradients", refuse)


@pytest.mark.parametrize(
    ("prompt", "answer", "options", "message"),
    [
        ("", None, {}, "prompt '' is blank"),
        ("   \n", None, {}, "is blank; give a question"),
        (["a", "b"], None, {}, "must be one text for a generative model"),
        (3, None, {}, "prompt must be text, got int"),
        ("what?", "  ", {}, "leave answer out to have the model generate"),
        ("what?", 7, {}, "answer must be text, got int"),
        ("what?", None, {"max_new_tokens": 0}, "at least 1, got 0"),
        ("what?", "red", {"chunk_size": 0}, "chunk_size must be a whole number"),
        ("what?", "red", {"topk": "x"}, "topk must be a whole number"),
    ],
)
def test_refused_before_model_work(no_model_work, prompt, answer, options, message):
    image, _ = example_inputs("shapes-llava")
    with pytest.raises(InputError if "topk" not in options else MethodError, match=message):
        api.explain(llava(), image, prompt, answer, **options)


def test_a_prompt_past_the_context_names_the_limit(no_model_work):
    image, _ = example_inputs("shapes-llava")
    with pytest.raises(InputError, match=r"reads at most 256 positions.*shorten the prompt"):
        api.explain(llava(), image, " ".join(["circle"] * 3000))


def test_a_given_answer_past_the_context_names_the_limit(no_model_work):
    image, prompt = example_inputs("shapes-llava")
    with pytest.raises(InputError, match=r"answer is 300 tokens.*at most 256 positions"):
        api.explain(llava(), image, prompt, " ".join(["red"] * 300))


@pytest.mark.parametrize("what", ["prompt", "answer"])
def test_mostly_unknown_tokens_are_warned_about(what):
    image, prompt = example_inputs("shapes-llava")
    unknown = "猫 ñandú 🙂 猫"
    texts = (
        {"prompt": unknown, "answer": "red circle"}
        if what == "prompt"
        else {"prompt": prompt, "answer": unknown + " red"}
    )
    with pytest.warns(DexarWarning, match=rf"of the {what}'s \d+ tokens are unknown"):
        api.explain(llava(), image, texts["prompt"], texts["answer"])


def test_known_words_are_not_warned_about():
    image, prompt = example_inputs("shapes-llava")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DexarWarning)
        api.explain(llava(), image, prompt, "red circle")


def test_a_long_clip_prompt_is_refused_not_cut():
    image, _ = example_inputs("shapes-clip")
    with pytest.raises(
        InputError, match=r"is \d+ tokens but the text tower reads at most \d+ \(its context"
    ):
        api.explain(clip(), image, ["a red circle", " ".join(["circle"] * 3000)])


def test_nan_logits_while_explaining_are_named(monkeypatch):
    image, prompt = example_inputs("shapes-llava")
    loaded = api.load("shapes-llava")  # its own copy: the head is broken after load
    with torch.no_grad():
        loaded.model.lm_head.weight[:, 0] = float("nan")
    with pytest.raises(MethodError, match=r"targets .* hold NaN or infinity while explaining"):
        api.explain(loaded, image, prompt, "red circle")


@pytest.fixture
def nan_checkpoint(tmp_path):
    folder = tmp_path / "nan-llava"
    shutil.copytree(default_catalog().embedded_model("shapes-llava").path, folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    name = sorted(state)[-1]
    state[name][..., 0] = float("nan")
    save_file(state, weights, metadata={"format": "pt"})
    return folder


def test_nan_weights_are_named_at_load(nan_checkpoint):
    with pytest.raises(CheckpointError, match="hold NaN or infinity"):
        api.load(nan_checkpoint)


def test_an_open_clip_folder_without_its_prefix_is_told_the_prefix():
    folder = default_catalog().embedded_model("shapes-clip").path
    with pytest.raises(CheckpointError, match=f"give it as open_clip:{folder}"):
        api.load(folder)


def test_a_device_absent_here_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA GPU"):
        api.load("shapes-llava", device="cuda")
