"""The two ``token_score`` variants of delta^t (issue 7, part 7) against hand values.

The toy record is the baselines' one (tests/methods/test_baselines.py): keys 0 (BOS) and 3 (the
query) are the text set, keys 1 and 2 the visual tokens; one answer token, two layers
of two heads. Per (layer, head), ReLU'd gradients G and realised attention A of row q_0:

    layer 0, head 0: G = [1, 0, 3, 0]  A = [.25, .25, .25, .25]
    layer 0, head 1: G = [0, 1, 0, 2]  A = [.25, .25, .25, .25]
    layer 1, head 0: G = [0, 2, 0, 1]  A = [0, 1, 0, 0]
    layer 1, head 1: G = [1, 0, 1, 0]  A = [0, 0, 0, 1]
"""

from __future__ import annotations

import numpy as np
import pytest
from toy_record import toy_record

from dexar_core.errors import MethodError
from dexar_core.methods.dexar import DexarMethod


def delta(**options: object) -> float:
    return float(DexarMethod(**options).explain(toy_record()).token_weights[0])


def test_max_gradient_is_the_papers_delta() -> None:
    # max over V = 3 (layer 0 head 0, key 2); max over T_set = 2 (layer 0 head 1, key 3)
    assert delta() == pytest.approx(1.0)


def test_attention_weighted_scores_attention_times_gradient() -> None:
    # A * G: max over V = 2 (layer 1 head 0, key 1); over T_set = 0.5 (layer 0 head 1, key 3)
    assert delta(token_score="attention_weighted") == pytest.approx(1.5)


def test_visual_share_is_the_visual_fraction_of_the_gradient_mass() -> None:
    # mass on V: 3 + 1 + 2 + 1 = 7; on T_set: 1 + 2 + 1 + 1 = 5
    assert delta(token_score="visual_share") == pytest.approx(7 / 12)


def test_visual_share_of_a_token_without_gradient_is_zero_not_nan() -> None:
    record = toy_record(gradients=np.zeros((1, 2, 2, 4), np.float32))
    result = DexarMethod(token_score="visual_share").explain(record)
    assert result.token_weights.tolist() == [0.0]
    assert result.sequence_fallback


def test_token_score_changes_delta_only_not_the_maps() -> None:
    default = DexarMethod().explain(toy_record())
    variant = DexarMethod(token_score="attention_weighted").explain(toy_record())
    np.testing.assert_array_equal(default.token_relevance, variant.token_relevance)
    np.testing.assert_array_equal(default.head_weights, variant.head_weights)


def test_unknown_token_score_is_refused_with_the_choices() -> None:
    with pytest.raises(MethodError, match="token_score must be one of"):
        DexarMethod(token_score="entropy")
