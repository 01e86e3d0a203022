"""open_clip's GradientExtractor: layer-wise gradients of an image-text similarity.

For prompt p and vision block l the target is the cosine similarity of the prompt's
text embedding with the block's output pooled as the model pools its last block
(class token or patch mean), passed through the final norm ``ln_post`` and the
projection::

    s^{l,p} = cos( proj( pool( ln_post( y^l ) ) ), text_p )

The gradient of s^{l,p} with respect to block l's own attention probabilities, ReLU'd
and averaged over the query rows, gives ``G^{l,p,i}`` over the keys (head i): the same
record a decoder's logit-lens pass gives, with the prompts in the place of the answer
tokens, so every method of the catalog that reads the explained rows runs on it
(``dexar``: V = the patch tokens, the text set = the class/register tokens, and
``delta_p`` weighs each prompt; ``legrad``: the head mean summed over layers).

With the engine's ``mean_token_target`` need (``legrad``'s default) the target is
LeGrad's instead, whatever the model's own pooling: the mean over all tokens, class
token included, then ``ln_post`` and the projection,
``s^{l,p} = cos( proj( ln_post( mean_k y^l[k] ) ), text_p )``, and every query row is a
leaf (each one reaches the mean).

All layers and prompts take one forward of the image tower and one backward
(:mod:`dexar_open_clip.capture`); the text tower runs once, without gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dexar_core.engine.layers import frozen_parameters
from dexar_core.errors import DexarError, MethodError
from dexar_core.interfaces import ROW_METHODS, GradientExtractor, GradientRequest
from dexar_core.methods.legrad import MEAN_TOKEN_POOLING
from dexar_core.records import AttentionGradients, LoadedModel, PreparedPrompt
from dexar_core.values import VisualLayout
from dexar_open_clip.adapter import vision_tower

NEEDS = ("raw_gradients", "mean_token_target")
"""The engine needs (``dexar_core.engine.NEEDS``) this pass fills."""

MODEL_POOLING = "model"
"""``metadata["target_pooling"]`` of the model-pooled target."""


WHY_NOT: dict[str, str] = {
    "full_attention": "the whole attention matrices, in the graph",
    "full_gradients": "the total derivatives of the whole attention matrices",
    "position_logits": "a language-model logit at every key position",
    "doubled_final_norm": "a decoder's final norm, applied twice",
}
"""What each need the pass does not fill would ask of a contrastive model."""


class PooledSimilarityTargets(GradientExtractor):
    """The per-layer targets s^{l,p}: pooled, normed, projected layer output vs. text."""

    def num_layers(self, loaded: LoadedModel) -> int:
        """See :meth:`GradientExtractor.num_layers`: the vision transformer's blocks."""
        return len(vision_tower(loaded.model).transformer.resblocks)

    def attention_gradients(self, request: GradientRequest) -> AttentionGradients:
        """See :meth:`GradientExtractor.attention_gradients`; the units are the prompts.

        Every prompt shares the one forward and backward, so ``chunk_size`` does not
        apply. ``record.metadata`` holds the model's image-text cosine similarities.

        Raises:
            MethodError: a need other than ``raw_gradients`` and ``mean_token_target``:
                the method reads what a contrastive model does not have.
        """
        needs = request.needs
        missing = sorted(set(needs) - set(NEEDS))
        if missing:
            raise MethodError(
                f"this method needs {WHY_NOT.get(missing[0], missing[0])} ({missing[0]}), "
                "which the pooled image-text similarity pass of contrastive models does "
                f"not have; use a method that reads the explained rows ({ROW_METHODS})."
            )
        record, _ = similarity_gradients(
            request.loaded,
            request.prepared,
            request.layout,
            request.layers,
            raw_gradients="raw_gradients" in needs,
            mean_tokens="mean_token_target" in needs,
        )
        return record

    def similarity_targets(
        self,
        visual: Any,
        layer_outputs: Sequence[torch.Tensor],
        text: torch.Tensor,
        *,
        mean_tokens: bool = False,
    ) -> torch.Tensor:
        """Cosine similarities ``[L, P]`` of each layer's output with each prompt.

        Args:
            visual: the open_clip ``VisionTransformer``.
            layer_outputs: per layer, ``[P, K, D]`` the block's output, copy p for prompt p.
            text: ``[P, E]`` unit-norm text embeddings.
            mean_tokens: pool as LeGrad does, ``ln_post`` of the mean over all tokens,
                instead of the model's own pooling.
        """
        targets = []
        for output in layer_outputs:
            if mean_tokens:
                pooled = visual.ln_post(output.mean(dim=1))
            else:
                pooled, _ = visual._pool(output)
            if visual.proj is not None:
                pooled = pooled @ visual.proj
            exact = torch.promote_types(pooled.dtype, torch.float32)
            targets.append((F.normalize(pooled.to(exact), dim=-1) * text.to(exact)).sum(dim=-1))
        return torch.stack(targets)


def pooled_rows(visual: Any) -> tuple[int, ...] | None:
    """The query rows the pooled output depends on: the class token, or all (None).

    With class-token pooling and no attentional pooler, block l's target reads only the
    class token's row of block l's attention, so the other rows have exactly zero
    gradient and need no leaves.
    """
    if getattr(visual, "attn_pool", None) is None and visual.pool_type == "tok":
        return (0,)
    return None


def similarity_gradients(
    loaded: LoadedModel,
    prepared: PreparedPrompt,
    layout: VisualLayout,
    layers: Sequence[int],
    *,
    raw_gradients: bool = False,
    mean_tokens: bool = False,
) -> tuple[AttentionGradients, np.ndarray]:
    """One forward and one backward: the attention gradients of every layer and prompt.

    Args:
        loaded: an open_clip model, its processor and adapter.
        prepared: the image and the tokenized prompts.
        layout: the patch-grid layout of the image tokens.
        layers: the vision blocks to explain.
        raw_gradients: also record the signed gradients (mean over query rows, before
            the ReLU), as ``attn_grad`` needs.
        mean_tokens: LeGrad's target (``ln_post`` of the mean over all tokens), every
            query row a leaf, instead of the model's pooling.

    Returns:
        The record (``gradients[p, l, i, k]`` = mean over query rows of
        ReLU(d s^{l,p} / d A^{l,i}[row, k]); ``targets[l, p]`` = s^{l,p}; prompts take
        the place of answer tokens; ``metadata`` the similarities, the targets and the
        query rows) and ``[P]`` the model's image-text cosine similarities.
    """
    model = loaded.model
    visual = vision_tower(model)
    pixels, tokens = prepared.inputs["pixels"], prepared.inputs["tokens"]
    count = int(tokens.shape[0])
    length = layout.sequence_length
    with torch.no_grad():
        text = model.encode_text(tokens)
        text = F.normalize(text.to(torch.promote_types(text.dtype, torch.float32)), dim=-1)
    rows = None if mean_tokens else pooled_rows(visual)
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        capture = loaded.adapter.capture
        captured = stack.enter_context(capture.capture(model, layers, rows, copies=count))
        stack.enter_context(torch.enable_grad())
        image = model.encode_image(pixels)
        missing = [i for i in layers if i not in captured.leaves or i not in captured.layer_outputs]
        if missing:
            raise DexarError(
                f"the image forward did not run the attention of blocks {missing}; the open_clip "
                "model's visual.transformer.resblocks are not the modules it calls."
            )
        targets = PooledSimilarityTargets().similarity_targets(
            visual, [captured.layer_outputs[i] for i in layers], text, mean_tokens=mean_tokens
        )
        leaves = [captured.leaves[i] for i in layers]
        grads = torch.autograd.grad(targets.sum(), leaves, allow_unused=True)
    similarities = (F.normalize(image.detach().to(text.dtype), dim=-1) * text).sum(dim=-1)
    signed = [
        torch.zeros_like(leaf[:, :, 0]) if grad is None else grad.float().sum(dim=2) / length
        for grad, leaf in zip(grads, leaves)
    ]
    per_layer = [
        torch.zeros_like(leaf[:, :, 0]) if grad is None else torch.relu(grad.float()).sum(dim=2)
        for grad, leaf in zip(grads, leaves)
    ]
    gradients = (torch.stack(per_layer, dim=1) / length).cpu().numpy()
    attention = torch.stack([captured.probabilities[i].float().mean(dim=1) for i in layers])
    attentions = np.broadcast_to(attention.cpu().numpy(), gradients.shape).copy()
    record = AttentionGradients(
        gradients=gradients,
        attentions=attentions,
        targets=targets.detach().float().cpu().numpy(),
        visible=np.ones((count, length), dtype=bool),
        layers=tuple(layers),
        layout=layout,
        answer_ids=tuple(range(count)),
        query_rows=(0,) * count,
        raw_gradients=torch.stack(signed, dim=1).cpu().numpy() if raw_gradients else None,
        averaged_rows=length if rows is None else len(rows),
        metadata={
            "similarities": similarities.cpu().numpy().tolist(),
            "targets": (
                "cosine(proj(ln_post(mean over all tokens of block output)), text embedding)"
                if mean_tokens
                else "cosine(proj(pool(ln_post(block output))), text embedding)"
            ),
            "target_pooling": MEAN_TOKEN_POOLING if mean_tokens else MODEL_POOLING,
            "query_rows": "class token" if rows else "all",
        },
    )
    return record, similarities.cpu().numpy()
