"""Free runs are greedy unless the checkpoint's generation config is asked for."""

from __future__ import annotations

import pytest
import torch
from llava_fixtures import noise_image

import dexar_core
from dexar_blip2.tiny import build_tiny_blip2
from dexar_core.errors import InputError
from dexar_core.hf.generation import apply_generation, check_generation
from dexar_llava.tiny import build_tiny_llava

PROMPT = "what color is the circle?"
LENGTH = 12


@pytest.fixture(scope="module")
def beam_checkpoint(tmp_path_factory):
    """A tiny LLaVA whose generation config asks for beams, a penalty and no repeats."""
    model, processor = build_tiny_llava(seed=0)
    config = model.generation_config
    config.num_beams, config.repetition_penalty, config.no_repeat_ngram_size = 3, 5.0, 1
    folder = tmp_path_factory.mktemp("beam-llava")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _free_run(loaded):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image()], PROMPT)
    return prepared, adapter.generate(loaded, prepared, LENGTH)


def test_the_default_free_run_is_the_argmax_chain(beam_checkpoint):
    loaded = dexar_core.load(beam_checkpoint)
    prepared, answer = _free_run(loaded)
    assert answer
    forced = loaded.adapter.teacher_forced(loaded, prepared, answer)
    inputs = {key: value for key, value in forced.inputs.items() if key != "logits_to_keep"}
    with torch.no_grad():
        logits = loaded.model(**inputs).logits[0]
    image_tokens = sorted(prepared.facts.image_token_ids)
    for row, token in zip(forced.query_rows, answer):
        scores = logits[row].clone()
        scores[image_tokens] = -torch.inf  # never generated (see HFDecoderOnlyAdapter)
        assert int(scores.argmax()) == token
    assert len(set(answer)) < len(answer)  # this model repeats itself when greedy


def test_the_checkpoint_config_is_used_when_asked_and_its_answer_explained(beam_checkpoint):
    loaded = dexar_core.load(beam_checkpoint, generation="checkpoint")
    _, answer = _free_run(loaded)
    assert len(set(answer)) == len(answer)  # no_repeat_ngram_size=1 was applied
    explanation = dexar_core.explain(loaded, noise_image(), PROMPT, max_new_tokens=LENGTH)
    assert list(explanation.token_ids) == answer
    assert explanation.metadata["decoding"] == {
        "num_beams": 3,
        "do_sample": None,
        "repetition_penalty": 5.0,
        "no_repeat_ngram_size": 1,
    }


def test_a_greedy_run_records_its_decoding(beam_checkpoint):
    loaded = dexar_core.load(beam_checkpoint)
    explanation = dexar_core.explain(loaded, noise_image(), PROMPT, max_new_tokens=4)
    assert explanation.metadata["decoding"]["num_beams"] == 1
    assert explanation.metadata["decoding"]["do_sample"] is False
    assert explanation.metadata["decoding"]["repetition_penalty"] in (None, 1.0)


def test_every_generating_sub_model_becomes_greedy():
    model, _ = build_tiny_blip2()
    model.language_model.generation_config.num_beams = 4
    model.generation_config.repetition_penalty = 2.0
    apply_generation(model, "greedy")
    assert model.language_model.generation_config.num_beams == 1
    assert model.generation_config.repetition_penalty is None
    assert model.language_model.generation_config.eos_token_id is not None


def test_an_unknown_generation_mode_is_an_input_error():
    with pytest.raises(InputError, match="'greedy'"):
        check_generation("beam")
