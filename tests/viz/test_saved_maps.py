"""Raw maps and pictures are saved beside the normalised maps; older files still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from llava_fixtures import noise_image, tiny_llava
from viz_fixtures import known_explanation

from dexar_core.api import explain
from dexar_core.errors import InputError
from dexar_core.explanation import Explanation
from dexar_core.heatmap import minmax


def test_raw_maps_and_the_picture_survive_save_and_load(tmp_path: Path) -> None:
    explanation = known_explanation()

    loaded = Explanation.load(explanation.save(tmp_path / "explanation"))

    assert loaded == explanation
    assert loaded.has_raw_maps
    np.testing.assert_array_equal(loaded.raw_token_maps[0], explanation.raw_token_maps[0])
    np.testing.assert_array_equal(loaded.raw_sequence_maps[0], explanation.raw_sequence_maps[0])
    np.testing.assert_array_equal(np.asarray(loaded.images[0]), np.asarray(explanation.images[0]))


def test_the_normalised_maps_are_the_raw_ones_min_max_normalised() -> None:
    explanation = known_explanation()

    for raw, normalised in zip(explanation.raw_token_maps[0], explanation.token_maps[0]):
        np.testing.assert_allclose(minmax(raw), normalised, atol=1e-6)


def test_a_file_saved_before_raw_maps_were_kept_still_loads(tmp_path: Path) -> None:
    sidecar = known_explanation().save(tmp_path / "old")
    arrays = dict(np.load(sidecar.with_suffix(".npz")))
    before = {
        name: array for name, array in arrays.items() if not name.startswith(("raw_", "image_"))
    }
    np.savez(sidecar.with_suffix(".npz"), **before)
    record = json.loads(sidecar.read_text())
    assert "raw_token_maps" not in record and "images" not in record

    loaded = Explanation.load(sidecar)

    assert not loaded.has_raw_maps and loaded.raw_token_maps == () and loaded.images == ()
    np.testing.assert_array_equal(loaded.token_maps[0], known_explanation().token_maps[0])


def test_raw_maps_of_another_shape_are_refused() -> None:
    explanation = known_explanation()

    with pytest.raises(InputError, match="raw maps"):
        Explanation(
            **{
                **{f: getattr(explanation, f) for f in ("method", "options", "model_id")},
                "adapter": explanation.adapter,
                "prompt": explanation.prompt,
                "answer": explanation.answer,
                "token_ids": explanation.token_ids,
                "tokens": explanation.tokens,
                "grids": explanation.grids,
                "image_sizes": explanation.image_sizes,
                "token_maps": explanation.token_maps,
                "sequence_maps": explanation.sequence_maps,
                "raw_token_maps": [explanation.raw_token_maps[0][:2]],
                "raw_sequence_maps": explanation.raw_sequence_maps,
                "token_weights": explanation.token_weights,
                "head_weights": explanation.head_weights,
                "layers": explanation.layers,
            }
        )


def test_explain_keeps_the_raw_maps_of_a_real_model() -> None:
    explanation = explain(tiny_llava(), noise_image(1), "what color?", answer="red circle")

    assert explanation.has_raw_maps
    for raw, normalised in zip(explanation.raw_token_maps[0], explanation.token_maps[0]):
        np.testing.assert_allclose(minmax(raw), normalised, atol=1e-6)
    np.testing.assert_allclose(
        minmax(explanation.raw_sequence_maps[0]), explanation.sequence_maps[0], atol=1e-6
    )
    assert explanation.metadata["dtype"] == "float32" and explanation.metadata["device"] == "cpu"
    assert explanation.images[0].size == explanation.image_sizes[0]
