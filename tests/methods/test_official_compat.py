"""official_compat: the authors' released code's quirks, on request (docs/method.md §9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from llava_fixtures import noise_image, tiny_llava
from synthetic_records import record_of

import dexar_core as dexar
from dexar_core.engine import attention_gradients
from dexar_core.errors import MethodError
from dexar_core.methods.dexar import DexarMethod, after_image_blocks
from dexar_core.values import Grid, VisualLayout
from dexar_plugins.testing.strategies import gradient_tensors, visual_layouts
from dexar_plugins.testing.tolerance import assert_float32_close


def layout_of(length: int, grids: list[list[int]]) -> VisualLayout:
    visual = np.zeros(length, dtype=bool)
    for positions in grids:
        visual[positions] = True
    return VisualLayout(
        visual_mask=visual,
        text_mask=~visual,
        template_mask=np.zeros(length, dtype=bool),
        grids=tuple(
            Grid(
                name=f"image {i}",
                height=1,
                width=len(p),
                positions=np.array(p),
                pixel_box=(0, 0, len(p), 1),
                image_index=i,
            )
            for i, p in enumerate(grids)
        ),
    )


@pytest.mark.parametrize(
    ("length", "grids", "marked"),
    [
        (8, [[2, 3, 4, 5]], [6]),
        (6, [[2, 3, 4, 5]], []),  # the image ends the sequence
        (7, [[1, 2, 4, 5]], [6]),  # a row separator at 3 is inside the block
        (7, [[1, 2], [3, 4]], [5]),  # frames back to back: one block
        (9, [[1, 2], [4, 5]], [3, 6]),  # two images with text between
    ],
)
def test_after_image_blocks_marks_the_text_position_after_each_block(length, grids, marked):
    assert np.flatnonzero(after_image_blocks(layout_of(length, grids))).tolist() == marked


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_compat_ignores_the_gradients_right_after_the_image(data):
    layout = data.draw(visual_layouts())
    gradients = data.draw(gradient_tensors(layout))
    after = after_image_blocks(layout)
    noise = data.draw(st.floats(0.0, 100.0))
    changed = gradients.copy()
    changed[..., after] += noise
    method = DexarMethod(official_compat=True)
    first, second = (
        method.explain(record_of(layout, gradients)),
        method.explain(record_of(layout, changed)),
    )
    for name in ("token_relevance", "sequence_relevance", "token_weights", "head_weights"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)


def test_the_text_position_after_the_image_can_decide_delta_by_default_but_not_in_compat():
    layout = layout_of(6, [[1, 2]])  # text 0, image 1-2, text 3 (after), 4, 5
    gradients = np.zeros((1, 1, 1, 6), np.float32)
    gradients[..., 1] = 1.0
    gradients[..., 3] = 2.0
    default = DexarMethod().explain(record_of(layout, gradients))
    compat = DexarMethod(official_compat=True).explain(record_of(layout, gradients))
    assert default.token_weights.tolist() == [0.0]
    assert compat.token_weights.tolist() == [1.0]


def test_when_every_delta_is_zero_compat_gives_a_zero_sequence_map_without_fallback():
    layout = layout_of(5, [[1, 2]])
    gradients = np.zeros((2, 1, 2, 5), np.float32)
    gradients[:, 0, 0, 1] = 1.0  # head 0 sees the image only: weight 1
    gradients[:, 0, 1, 4] = 5.0  # head 1 sees text more strongly than any head sees image
    default = DexarMethod().explain(record_of(layout, gradients))
    compat = DexarMethod(official_compat=True).explain(record_of(layout, gradients))
    assert (default.token_weights == 0).all() and (compat.token_weights == 0).all()
    assert default.sequence_fallback and default.sequence_relevance.max() > 0
    assert not compat.sequence_fallback
    assert (compat.sequence_relevance == 0).all()
    np.testing.assert_array_equal(compat.token_relevance, default.token_relevance)


def _forced(loaded):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(7)], "what color is the circle?")
    answer_ids = adapter.encode_answer(loaded, prepared, "red circle")
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    return forced, layout, answer_ids


def test_doubled_final_norm_changes_only_the_last_layers_target_and_gradients():
    loaded = tiny_llava(seed=7, layers=3)
    forced, layout, answer_ids = _forced(loaded)
    plain = attention_gradients(loaded, forced, layout, (0, 2))
    doubled = attention_gradients(loaded, forced, layout, (0, 2), needs={"doubled_final_norm"})
    parts = loaded.adapter.decoder_parts(loaded.model)
    with torch.no_grad():
        normed_last = loaded.model(**forced.inputs, output_hidden_states=True).hidden_states[-1]
        logits = loaded.model.lm_head(parts.final_norm(normed_last))[0]
    expected = [float(logits[row, token]) for row, token in zip(forced.query_rows, answer_ids)]
    width = loaded.model.config.text_config.hidden_size
    assert_float32_close(doubled.targets[-1], expected, terms=width)
    assert not np.allclose(doubled.targets[-1], plain.targets[-1])
    # Bitwise: layer 0's target and gradients come from the same code on the same inputs.
    np.testing.assert_array_equal(doubled.targets[0], plain.targets[0])
    np.testing.assert_array_equal(doubled.gradients[:, 0], plain.gradients[:, 0])
    assert not np.allclose(doubled.gradients[:, 1], plain.gradients[:, 1])


def test_doubled_final_norm_leaves_earlier_layers_alone_when_the_last_is_not_explained():
    loaded = tiny_llava(seed=7, layers=3)
    forced, layout, _ = _forced(loaded)
    plain = attention_gradients(loaded, forced, layout, (0, 1))
    doubled = attention_gradients(loaded, forced, layout, (0, 1), needs={"doubled_final_norm"})
    # bitwise: without the last layer the need changes nothing, the same code runs
    np.testing.assert_array_equal(doubled.gradients, plain.gradients)


def test_explain_takes_official_compat_and_records_it():
    loaded = tiny_llava(seed=7)
    image = noise_image(7)
    compat = dexar.explain(loaded, image, "what color is the circle?", "red", official_compat=True)
    default = dexar.explain(loaded, image, "what color is the circle?", "red")
    assert compat.options["official_compat"] is True
    assert default.options["official_compat"] is False
    assert not np.allclose(compat.token_maps[0], default.token_maps[0])


@pytest.mark.parametrize("name", ["official_compat", "normalize_tokens", "head_weighting"])
def test_a_yes_no_option_that_is_not_a_bool_is_refused(name):
    with pytest.raises(MethodError, match=f"{name} must be True or False"):
        DexarMethod(**{name: "false"})
