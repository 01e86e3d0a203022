"""The registered preset ``dexar_weighted``: DEX-AR with the protocol's chosen options.

It must be exactly ``dexar`` with those options (so every derivation and reference test
of the options holds for it), record its name and options, let an explicit option
override its own, and refuse what ``dexar`` refuses with them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llava_fixtures import noise_image

from dexar_core.api import explain
from dexar_core.errors import MethodError
from dexar_core.methods.plugin import PRESETS
from dexar_plugins import default_catalog

torch.set_num_threads(2)

PROMPT = "what color is the circle?"
ANSWER = "a red circle at the left"


def _arrays(explanation):
    return {
        "token_weights": np.asarray(explanation.token_weights),
        "head_weights": np.asarray(explanation.head_weights),
        "raw_sequence": np.asarray(explanation.raw_sequence_maps[0]),
        "raw_tokens": np.asarray(explanation.raw_token_maps[0]),
    }


def test_the_preset_is_dexar_with_its_options(loaded):
    image = noise_image(5)
    preset = explain(loaded, image, PROMPT, answer=ANSWER, method="dexar_weighted")
    same = explain(loaded, image, PROMPT, answer=ANSWER, **PRESETS["dexar_weighted"])
    paper = explain(loaded, image, PROMPT, answer=ANSWER)
    assert preset.method == "dexar_weighted"
    assert preset.options["relevance"] == "weighted_gradient"
    assert preset.options["text_set"] == "prompt_only"
    for name, array in _arrays(preset).items():
        np.testing.assert_array_equal(array, _arrays(same)[name], err_msg=name)
    # and it is not the paper's default under another name
    assert not np.array_equal(_arrays(preset)["raw_tokens"], _arrays(paper)["raw_tokens"])


def test_an_explicit_option_overrides_the_presets_own(loaded):
    image = noise_image(6)
    overridden = explain(
        loaded, image, PROMPT, answer=ANSWER, method="dexar_weighted", text_set="all_non_visual"
    )
    plain = explain(loaded, image, PROMPT, answer=ANSWER, relevance="weighted_gradient")
    assert overridden.options["text_set"] == "all_non_visual"
    for name, array in _arrays(overridden).items():
        np.testing.assert_array_equal(array, _arrays(plain)[name], err_msg=name)


def test_the_preset_refuses_the_released_codes_mode_naming_why(loaded):
    with pytest.raises(MethodError, match="official_compat=True reproduces the authors"):
        explain(
            loaded,
            noise_image(1),
            PROMPT,
            answer=ANSWER,
            method="dexar_weighted",
            official_compat=True,
        )


def test_the_preset_is_listed_with_what_it_is():
    spec = default_catalog().methods["dexar_weighted"].spec
    assert "A*G" in spec.description and "prompt-only" in spec.description
    assert spec.needs_gradients
