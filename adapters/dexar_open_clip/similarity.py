"""Layer-wise attention-gradient maps of an image-text similarity (LeGrad and DEX-AR).

For prompt p and vision block l the target is the cosine similarity of the prompt's
text embedding with the block's output pooled as the model pools its last block
(class token or patch mean), passed through the final norm ``ln_post`` and the
projection::

    s^{l,p} = cos( proj( pool( ln_post( y^l ) ) ), text_p )

The gradient of s^{l,p} with respect to block l's own attention probabilities, ReLU'd
and averaged over the query rows, gives ``G^{l,p,i}`` over the keys (head i):

- ``legrad``: mean over heads, sum over layers (Bousselham et al., LeGrad; the core's
  :class:`~dexar_core.methods.legrad.LeGradMethod` on this record);
- ``dexar``: DEX-AR's head weighting (the core's
  :class:`~dexar_core.methods.dexar.DexarMethod` on this record), with V = the patch
  tokens and the text set = the class/register tokens: ``w = ReLU(max_V G - max_text G)``,
  ``E = sum_l sum_i w G[V]``, and ``delta_p = ReLU(max S_v - max S_text)`` as each
  prompt's weight.

All layers and prompts take one forward of the image tower and one backward
(:mod:`dexar_open_clip.capture`); the text tower runs once, without gradients.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dexar_core.engine.layers import frozen_parameters, resolve_layers
from dexar_core.errors import DexarError, MethodError, UnsupportedModelError
from dexar_core.explanation import Explanation
from dexar_core.heatmap import minmax, to_grid
from dexar_core.images import load_image
from dexar_core.records import AttentionGradients, LoadedModel, PreparedPrompt
from dexar_core.values import VisualLayout
from dexar_open_clip.adapter import OpenClipAdapter, normalize_prompts, vision_tower

METHODS = ("dexar", "legrad")
"""The methods :func:`explain_similarity` offers."""

DEXAR_OPTIONS = ("head_agg", "topk", "normalize_tokens", "head_weighting", "token_weighting")
"""DEX-AR options passed through to :class:`dexar_core.methods.dexar.DexarMethod`."""


class PooledSimilarityTargets:
    """The per-layer targets s^{l,p}: pooled, normed, projected layer output vs. text."""

    def similarity_targets(
        self, visual: Any, layer_outputs: Sequence[torch.Tensor], text: torch.Tensor
    ) -> torch.Tensor:
        """Cosine similarities ``[L, P]`` of each layer's output with each prompt.

        Args:
            visual: the open_clip ``VisionTransformer``.
            layer_outputs: per layer, ``[P, K, D]`` the block's output, copy p for prompt p.
            text: ``[P, E]`` unit-norm text embeddings.
        """
        targets = []
        for output in layer_outputs:
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
    loaded: LoadedModel, prepared: PreparedPrompt, layout: VisualLayout, layers: Sequence[int]
) -> tuple[AttentionGradients, np.ndarray]:
    """One forward and one backward: the attention gradients of every layer and prompt.

    Returns:
        The record (``gradients[p, l, i, k]`` = mean over query rows of
        ReLU(d s^{l,p} / d A^{l,i}[row, k]); ``targets[l, p]`` = s^{l,p}; prompts take
        the place of answer tokens) and ``[P]`` the model's image-text cosine similarities.
    """
    model = loaded.model
    visual = vision_tower(model)
    adapter = loaded.adapter
    pixels, tokens = prepared.inputs["pixels"], prepared.inputs["tokens"]
    count = int(tokens.shape[0])
    length = layout.sequence_length
    with torch.no_grad():
        text = model.encode_text(tokens)
        text = F.normalize(text.to(torch.promote_types(text.dtype, torch.float32)), dim=-1)
    rows = pooled_rows(visual)
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        captured = stack.enter_context(adapter.capture.capture(model, layers, rows, copies=count))
        stack.enter_context(torch.enable_grad())
        image = model.encode_image(pixels)
        missing = [i for i in layers if i not in captured.leaves or i not in captured.layer_outputs]
        if missing:
            raise DexarError(
                f"the image forward did not run the attention of blocks {missing}; the open_clip "
                "model's visual.transformer.resblocks are not the modules it calls."
            )
        targets = adapter.gradients.similarity_targets(
            visual, [captured.layer_outputs[i] for i in layers], text
        )
        leaves = [captured.leaves[i] for i in layers]
        grads = torch.autograd.grad(targets.sum(), leaves, allow_unused=True)
    similarities = (F.normalize(image.detach().to(text.dtype), dim=-1) * text).sum(dim=-1)
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
    )
    return record, similarities.cpu().numpy()


def explain_similarity(
    loaded: LoadedModel,
    image: Any,
    prompts: str | Sequence[str],
    *,
    method: str = "dexar",
    layers: Any = "all",
    **options: Any,
) -> Explanation:
    """Explain an open_clip model's image-text similarity: one map per prompt.

    The image is encoded once for all prompts; all layers and prompts share one forward
    and one backward pass of the image tower.

    Args:
        loaded: an open_clip model loaded by ``dexar_core.load`` (``shapes-clip``,
            ``open_clip:...``) or wrapped with :func:`dexar_open_clip.adapter.wrap_model`.
        image: a path, PIL image or ``[H, W, 3]`` array (one image).
        prompts: one text prompt or several, e.g. ``["a red circle", "a blue square"]``.
        method: ``"dexar"`` (DEX-AR head weighting, prompts weighted by delta) or
            ``"legrad"`` (LeGrad: head mean).
        layers: ``"all"``, ``k`` (the last k blocks), ``"last4"``, or block indices.
        **options: DEX-AR's ``head_agg``, ``topk``, ``normalize_tokens``,
            ``head_weighting``, ``token_weighting`` (``method="dexar"`` only).

    Returns:
        An :class:`Explanation` whose ``tokens`` are the prompts, ``token_maps[0]`` the
        ``[P, h, w]`` per-prompt maps on the patch grid, ``sequence_maps[0]`` their
        (delta-weighted for DEX-AR) sum, ``token_weights`` DEX-AR's delta per prompt
        (``"dexar"``) or the model's cosine similarity per prompt (``"legrad"``);
        ``metadata["similarities"]`` always holds the similarities.

    Raises:
        InputError: no prompt, a blank prompt, or not exactly one image.
        MethodError: an unknown method or option, or a bad ``layers``.
        UnsupportedModelError: the model's image tower is not an open_clip ViT.
    """
    from dexar_core.api import placement
    from dexar_core.methods.dexar import DexarMethod
    from dexar_core.methods.legrad import LeGradMethod

    timings: dict[str, float] = {}
    start = time.perf_counter()
    prompt_list = normalize_prompts(prompts)
    if method not in METHODS:
        raise MethodError(
            f"explain_similarity offers the methods {METHODS} for contrastive models, "
            f"got {method!r}."
        )
    accepted = DEXAR_OPTIONS if method == "dexar" else ()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise MethodError(
            f"method {method!r} takes no option {unknown}; it takes layers"
            f"{''.join(', ' + name for name in accepted)}."
        )
    if not isinstance(loaded.adapter, OpenClipAdapter):
        raise UnsupportedModelError(
            f"explain_similarity explains open_clip models; {loaded.model_id!r} is served by "
            f"the {getattr(loaded.adapter, 'name', '?')!r} adapter. Use dexar_core.explain."
        )
    images = image if isinstance(image, (list, tuple)) else [image]
    adapter = loaded.adapter
    pictures = [load_image(item) for item in images]
    prepared = adapter.prepare(loaded, pictures, prompt_list)
    layout = adapter.locator.locate(prepared)
    blocks = len(vision_tower(loaded.model).transformer.resblocks)
    chosen = resolve_layers(layers, blocks)
    timings["prepare"] = time.perf_counter() - start

    start = time.perf_counter()
    record, similarities = similarity_gradients(loaded, prepared, layout, chosen)
    explainer = (
        DexarMethod(layers=layers, **options) if method == "dexar" else LeGradMethod(layers=layers)
    )
    result = explainer.explain(record)
    token_weights = result.token_weights if method == "dexar" else similarities
    timings["explain"] = time.perf_counter() - start

    grid = layout.grids[0]
    visual_positions = layout.visual_positions
    raw_token_maps = np.stack(
        [to_grid(row, grid, visual_positions) for row in result.token_relevance]
    )
    raw_sequence_map = to_grid(result.sequence_relevance, grid, visual_positions)
    return Explanation(
        method=method,
        options=explainer.options,
        model_id=loaded.model_id,
        adapter=adapter.name,
        prompt=prepared.prompt,
        answer="",
        token_ids=record.answer_ids,
        tokens=prompt_list,
        grids=layout.grids,
        image_sizes=prepared.image_sizes,
        token_maps=[np.stack([minmax(row) for row in raw_token_maps])],
        sequence_maps=[minmax(raw_sequence_map)],
        raw_token_maps=[raw_token_maps],
        raw_sequence_maps=[raw_sequence_map],
        token_weights=token_weights,
        head_weights=result.head_weights,
        layers=chosen,
        sequence_fallback=result.sequence_fallback,
        generated=False,
        timings=timings,
        images=pictures if [p.size for p in pictures] == list(prepared.image_sizes) else (),
        metadata={
            **adapter.describe(),
            **placement(loaded.model),
            "similarities": similarities.tolist(),
            "targets": "cosine(proj(pool(ln_post(block output))), text embedding)",
            "query_rows": "class token" if pooled_rows(vision_tower(loaded.model)) else "all",
        },
    )
