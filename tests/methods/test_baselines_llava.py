"""The baselines end to end on a tiny LLaVA, and the engine's extra records they need."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llava_fixtures import noise_image, tiny_llava

from dexar_core.api import explain
from dexar_core.engine import RECORD_NEEDS, attention_gradients
from dexar_core.errors import MethodError
from dexar_core.interfaces import AttentionCapture
from dexar_core.records import LoadedModel
from dexar_plugins.testing.tolerance import assert_float32_close

BASELINES = ("attention", "attn_grad", "legrad", "rollout", "gae", "tam")
PROMPT = "what color is the circle?"
WIDTH = 128  # the tiny LLaVA's hidden size: the longest float32 sum behind a value


@pytest.fixture(scope="module")
def loaded():
    return tiny_llava(seed=0)


@pytest.fixture(scope="module")
def explained(loaded):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(2)], PROMPT)
    answer = adapter.encode_answer(loaded, prepared, "red circle")
    forced = adapter.teacher_forced(loaded, prepared, answer)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    layers = tuple(range(adapter.decoder_parts(loaded.model).num_layers))
    plain = attention_gradients(loaded, forced, layout, layers)
    full = attention_gradients(loaded, forced, layout, layers, needs=RECORD_NEEDS)
    return forced, plain, full


@pytest.mark.parametrize("method", BASELINES)
def test_each_baseline_runs_through_explain(loaded, method):
    explanation = explain(loaded, noise_image(1), PROMPT, answer="red circle", method=method)
    tokens = len(explanation.token_ids)
    assert explanation.method == method
    assert explanation.token_map_stack.shape == (tokens, 8, 8)
    for values in (explanation.token_map_stack, explanation.sequence_maps[0]):
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    np.testing.assert_array_equal(explanation.token_weights, np.ones(tokens))


def test_extra_needs_leave_dexar_records_identical(explained):
    _, plain, full = explained
    for name in ("gradients", "attentions", "targets", "visible"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(full, name))
    assert plain.raw_gradients is None and plain.full_attentions is None
    np.testing.assert_array_equal(full.gradients, np.maximum(full.raw_gradients, 0))


def test_full_attention_rows_at_the_queries_are_the_captured_answer_rows(explained):
    forced, _, full = explained
    rows = full.full_attentions[:, :, list(forced.query_rows), :]  # [L, H, T, K]
    assert_float32_close(rows.transpose(2, 0, 1, 3), full.attentions, terms=WIDTH)
    # causal: nothing above the diagonal
    assert np.all(np.triu(full.full_attentions, k=1) == 0)


def test_full_gradients_of_the_last_layer_are_its_logit_lens_gradients(explained):
    # nothing follows the last layer but the norm and the head, so the total derivative
    # of the final logit on its answer row equals the layer-wise (detached) one
    forced, _, full = explained
    for t, row in enumerate(forced.query_rows):
        assert_float32_close(
            full.full_gradients[t, -1, :, row, :], full.raw_gradients[t, -1], terms=WIDTH
        )
    # a token's logit does not depend on attention rows after its query row
    last_row = forced.query_rows[0]
    assert np.all(full.full_gradients[0, :, :, last_row + 1 :, :] == 0)


def test_position_logits_are_the_models_own_logits(loaded, explained):
    forced, _, full = explained
    inputs = {**forced.inputs, "logits_to_keep": 0}
    with torch.no_grad():
        logits = loaded.model(**inputs).logits[0].float().numpy()  # [K, vocab]
    classes = list(full.logit_classes)
    assert_float32_close(full.position_logits, logits[:, classes].T, terms=WIDTH)
    np.testing.assert_array_equal(full.sequence_ids, forced.inputs["input_ids"][0].numpy())


def test_unknown_need_is_a_method_error(loaded, explained):
    forced, plain, _ = explained
    with pytest.raises(MethodError, match="unknown method needs"):
        attention_gradients(loaded, forced, plain.layout, plain.layers, needs={"hessians"})


class RowsOnlyCapture(AttentionCapture):
    """An adapter's capture that gives the answer rows only (no ``capture_full``)."""

    def __init__(self, inner: AttentionCapture) -> None:
        self.inner = inner

    def capture(self, model, layers, query_rows):
        return self.inner.capture(model, layers, query_rows)


@pytest.mark.parametrize("method", ["rollout", "gae"])
def test_full_matrix_methods_say_when_the_adapter_cannot_give_them(loaded, method):
    adapter = type(loaded.adapter)()
    adapter.capture = RowsOnlyCapture(adapter.capture)
    rows_only = LoadedModel(
        model=loaded.model, processor=loaded.processor, adapter=adapter, model_id="rows-only"
    )
    with pytest.raises(MethodError, match="every row of the attention"):
        explain(rows_only, noise_image(1), PROMPT, answer="red", method=method)
    # the answer-row methods still run on it
    explain(rows_only, noise_image(1), PROMPT, answer="red", method="attn_grad")


def test_full_gradients_are_the_total_derivatives_of_the_output_logit():
    # reference: eager attention returns the probabilities that the output is computed
    # from; with trainable parameters they sit in the graph, so autograd gives the total
    # derivative of the model's own logit with respect to them
    reference = tiny_llava(seed=3, attn_implementation="eager")
    adapter = reference.adapter
    prepared = adapter.prepare(reference, [noise_image(4)], PROMPT)
    answer = adapter.encode_answer(reference, prepared, "red circle")
    forced = adapter.teacher_forced(reference, prepared, answer)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    layers = (0, 1)
    full = attention_gradients(reference, forced, layout, layers, needs={"full_gradients"})
    inputs = {**forced.inputs, "logits_to_keep": 0, "output_attentions": True}
    with torch.enable_grad():
        output = reference.model(**inputs)
        for t, (row, token) in enumerate(zip(forced.query_rows, forced.answer_ids)):
            grads = torch.autograd.grad(
                output.logits[0, row, token], output.attentions, retain_graph=True
            )
            expected = torch.stack([grads[layer][0] for layer in layers]).numpy()
            mask = np.tril(np.ones(expected.shape[-2:], bool))
            assert_float32_close(full.full_gradients[t], expected * mask, terms=WIDTH)
