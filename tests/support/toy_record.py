"""The 2-layer toy record of the baseline tests, with hand-computable values.

Keys: 0 = BOS (template text), 1 and 2 = visual tokens (one 1x2 grid), 3 = the query
row q_0 (prompt text). One answer token, two layers, two heads.
"""

from __future__ import annotations

import numpy as np

from dexar_core.records import AttentionGradients
from dexar_core.values import Grid, VisualLayout

LAYOUT = VisualLayout(
    visual_mask=[False, True, True, False],
    text_mask=[True, False, False, True],
    template_mask=[True, False, False, False],
    grids=[Grid(name="image 0", height=1, width=2, positions=[1, 2], pixel_box=(0, 0, 2, 1))],
)

M0 = np.array(
    [
        [1.0, 0, 0, 0],
        [0.5, 0.5, 0, 0],
        [0.5, 0.25, 0.25, 0],
        [0.25, 0.25, 0.25, 0.25],
    ]
)
M1_HEAD0 = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0.5, 0.5, 0], [0, 1, 0, 0]])
M1_HEAD1 = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 1]])
FULL = np.stack([np.stack([M0, M0]), np.stack([M1_HEAD0, M1_HEAD1])]).astype(np.float32)

# signed d s^{l,0} / d A^{l,i}[q_0, :], [L, H, K]
RAW = np.array(
    [
        [[1, -2, 3, 0], [0, 1, -1, 2]],
        [[0, 2, -4, 1], [1, -1, 1, 0]],
    ],
    dtype=np.float32,
)
# total d z_0 / d A^{l,i}: layer 0 head 0 all +1, head 1 all -1; layer 1 head 0 all +2, head 1 0
FULL_GRADIENTS = np.stack(
    [
        np.stack([np.ones((4, 4)), -np.ones((4, 4))]),
        np.stack([2 * np.ones((4, 4)), np.zeros((4, 4))]),
    ]
)[None].astype(np.float32)

# TAM: final-layer logits of classes (answer 40, BOS 10, image 20, prompt word 30)
CLASSES = (40, 10, 20, 30)
POSITION_LOGITS = np.array(
    [
        [0.0, 4.0, 2.0, 1.0],  # v_0 = 40: activation over V = [4, 2], at position 3: 1
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, 2.0, 0.0, 0.0],  # the prompt word's own map over V = [2, 0]
    ],
    dtype=np.float32,
)


def toy_record(**overrides: object) -> AttentionGradients:
    fields: dict[str, object] = dict(
        gradients=np.maximum(RAW, 0)[None],
        attentions=FULL[:, :, 3, :][None],
        targets=np.zeros((2, 1), np.float32),
        visible=np.ones((1, 4), bool),
        layers=(0, 1),
        layout=LAYOUT,
        answer_ids=(40,),
        query_rows=(3,),
        raw_gradients=RAW[None],
        full_attentions=FULL,
        full_gradients=FULL_GRADIENTS,
        position_logits=POSITION_LOGITS,
        logit_classes=CLASSES,
        sequence_ids=np.array([10, 20, 20, 30]),
    )
    fields.update(overrides)
    return AttentionGradients(**fields)  # type: ignore[arg-type]
