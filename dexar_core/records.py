"""Records passed between an adapter, the engine and the methods.

Unlike :mod:`dexar_core.values`, these hold live torch objects (models, tensors) and
live only for the duration of one explanation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from dexar_core.errors import LayoutError
from dexar_core.values import (
    Grid,
    RelevanceProjection,
    VisualLayout,
    readonly_bool_vector,
    readonly_index_vector,
)

_array_eq = attrs.cmp_using(eq=np.array_equal)


@attrs.frozen(kw_only=True)
class LoadedModel:
    """A model with its processor and the adapter that serves it.

    Attributes:
        model: the transformers (or other) model, in eval mode.
        processor: its processor (tokenizer + image processor).
        adapter: the ``ModelAdapter`` chosen by the registry.
        model_id: what the user passed to ``load`` (path, hub id or embedded name).
        adapter_options: the keyword arguments the adapter was built with (``load``'s
            ``adapter_options``); empty for its defaults.
    """

    model: Any
    processor: Any
    adapter: Any
    model_id: str
    adapter_options: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer (or the processor itself when it is one)."""
        return getattr(self.processor, "tokenizer", self.processor)


def _box(value: Sequence[float]) -> tuple[float, float, float, float]:
    left, top, right, bottom = (float(v) for v in value)
    return (left, top, right, bottom)


@attrs.frozen(kw_only=True)
class ImageFacts:
    """What one image (or tile, or temporal patch of a video) contributes to the keys.

    Attributes:
        name: what the grid shows, e.g. ``"image 0"`` or ``"video 0, frames 0-1"``.
        image_index: which input image (or video) it belongs to.
        positions: key-sequence index of each of its tokens, in order: first the
            ``leading_tokens`` that lie on no patch, then the ``rows x cols`` grid, row-major.
        rows: rows of the patch grid.
        cols: columns of the patch grid.
        leading_tokens: how many of its tokens precede the grid on no patch (LLaVA's CLS
            feature, Florence-2's pooled global token, a ViT's class token).
        pixel_box: ``(left, top, right, bottom)`` in the original image's pixels that the
            grid covers after the processor's resize and crop.
    """

    name: str
    image_index: int = 0
    positions: np.ndarray = attrs.field(converter=readonly_index_vector, eq=_array_eq)
    rows: int
    cols: int
    leading_tokens: int = 0
    pixel_box: tuple[float, float, float, float] = attrs.field(converter=_box)

    def __attrs_post_init__(self) -> None:
        if min(self.rows, self.cols) < 1 or self.leading_tokens < 0:
            raise LayoutError(
                f"ImageFacts {self.name!r}: rows and cols must be 1 or more and "
                f"leading_tokens 0 or more, got {self.rows}, {self.cols} and "
                f"{self.leading_tokens}."
            )
        expected = self.leading_tokens + self.rows * self.cols
        if self.positions.size != expected:
            raise LayoutError(
                f"ImageFacts {self.name!r}: {self.positions.size} token positions, but "
                f"{self.leading_tokens} leading token(s) and a {self.rows}x{self.cols} grid "
                f"make {expected}; give one position per token."
            )

    @property
    def grid(self) -> Grid:
        """The grid of its patch tokens (the leading tokens left out)."""
        return Grid(
            name=self.name,
            height=self.rows,
            width=self.cols,
            positions=self.positions[self.leading_tokens :],
            pixel_box=self.pixel_box,
            image_index=self.image_index,
        )

    @property
    def off_grid(self) -> np.ndarray:
        """Positions of its tokens that lie on no patch."""
        return self.positions[: self.leading_tokens]


def _image_facts_tuple(images: Iterable[ImageFacts]) -> tuple[ImageFacts, ...]:
    return tuple(images)


@attrs.frozen(kw_only=True)
class PromptFacts:
    """What the template and the images contribute to the prompt's key sequence.

    Attributes:
        images: one record per image, tile or temporal patch, in key order.
        template_mask: ``[K]`` True at chat-template and special-token positions.
        image_token_ids: the placeholder token ids the processor expands for images
            (and videos); never generated as part of an answer.
        projection: for visual tokens that are not image patches (BLIP-2's query
            tokens), how relevance over them maps onto patch grids; else None.
    """

    images: tuple[ImageFacts, ...] = attrs.field(converter=_image_facts_tuple)
    template_mask: np.ndarray = attrs.field(converter=readonly_bool_vector, eq=_array_eq)
    image_token_ids: frozenset[int] = attrs.field(
        converter=lambda ids: frozenset(int(i) for i in ids)
    )
    projection: RelevanceProjection | None = None

    @property
    def grids(self) -> tuple[Grid, ...]:
        """One grid per image, tile or temporal patch."""
        return tuple(image.grid for image in self.images)


@attrs.frozen(kw_only=True)
class PreparedPrompt:
    """Model inputs for the prompt and images, before any answer token.

    Attributes:
        inputs: tensors for the model's forward / generate (batch of one).
        prompt: the user's prompt text.
        prompt_text: the full text given to the processor (template applied).
        image_sizes: ``(width, height)`` of each original image.
        facts: where the images' tokens lie and what the template is.
        prompts: the prompts of a contrastive model, one row of ``inputs`` each; else empty.
    """

    inputs: Mapping[str, Any]
    prompt: str
    prompt_text: str
    image_sizes: tuple[tuple[int, int], ...]
    facts: PromptFacts
    prompts: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class PromptPrefill:
    """The keys and values generation's prefill computed for the whole prompt, without grad.

    A free run keeps them so that the explanation continues from them instead of running
    the prompt (and the vision tower) a second time (:mod:`dexar_core.engine.prompt_cache`):
    they are the numbers the explanation's own no-grad prompt forward would compute.

    Attributes:
        keys_values: per decoder layer, its ``(keys, values)`` over the prompt's positions,
            ``[B, heads, prompt length, head dim]`` each.
        inputs: the very prompt inputs the prefill ran on (``PreparedPrompt.inputs``; in
            a batch, the item's inputs the batch was padded from, its keys and values
            its row of the batch's cache without the padding); the engine reuses the
            prefill only for a pass over these same tensors.
    """

    keys_values: tuple[tuple[Any, Any], ...]
    inputs: Mapping[str, Any] = attrs.field(repr=False)

    @property
    def length(self) -> int:
        """How many prompt positions the keys and values cover."""
        return int(self.keys_values[0][0].shape[-2])

    def computed_from(self, inputs: Mapping[str, Any]) -> bool:
        """Whether ``inputs`` are the tensors this prefill ran on (the same objects)."""
        return set(inputs) == set(self.inputs) and all(
            inputs[name] is self.inputs[name] for name in inputs
        )


@attrs.frozen(kw_only=True)
class ExplainedUnits:
    """What one explanation explains: a generative model's answer tokens or a
    contrastive model's prompts (``ModelAdapter.explained_units``).

    Attributes:
        kind: one of :data:`dexar_core.interfaces.UNITS`.
        ids: ``[T]`` per unit, the token id v_t (answer tokens) or the prompt's index.
        labels: ``[T]`` per unit, its text (the token's, or the prompt).
        answer: the explained answer text; "" for prompts.
        generated: True for a free-run answer; False for a given one, and for prompts.
        prefill: the prompt's keys and values from the free run's generation (or a
            batch's prefill, :mod:`dexar_core.hf.batched`), for the explanation to
            reuse; None where none was kept (a given answer explained alone, an adapter
            without the prompt cache). Not part of equality.
    """

    kind: str
    ids: tuple[int, ...] = attrs.field(converter=lambda ids: tuple(int(i) for i in ids))
    labels: tuple[str, ...] = attrs.field(converter=lambda labels: tuple(str(t) for t in labels))
    answer: str = ""
    generated: bool = False
    prefill: PromptPrefill | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class TeacherForcedPass:
    """Inputs of the one forward over prompt + answer that the explanation runs.

    Attributes:
        inputs: the forward's keyword arguments (no cache).
        query_rows: ``[T]`` positions (in the attention's query sequence) whose output
            predicts each answer token: q_t.
        answer_ids: ``[T]`` the explained tokens v_t.
        key_length: length of the key sequence of the explained attention.
        prompt_inputs: the forward's keyword arguments for the key positions
            ``0 .. query_rows[0]`` alone (the prompt), where the engine may run them once
            without grad into a KV cache and then only the answer rows with grad after
            it (decoder self-attention over ``inputs["input_ids"]``, consecutive query
            rows); None where the explanation must run the one full pass (cross-attention,
            or an adapter that opts out). See :mod:`dexar_core.engine.prompt_cache`.
    """

    inputs: Mapping[str, Any]
    query_rows: tuple[int, ...] = attrs.field(converter=lambda rows: tuple(int(r) for r in rows))
    answer_ids: tuple[int, ...] = attrs.field(converter=lambda ids: tuple(int(i) for i in ids))
    key_length: int
    prompt_inputs: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class DecoderParts:
    """The pieces of a language-model decoder the generic engine needs: plain data.

    Attributes:
        layers: the decoder layers, in order (their inputs are detached, their outputs
            give the logit-lens hidden states y^l).
        attentions: the attention module of each layer whose probabilities are
            explained (self-attention, or cross-attention for encoder-decoders).
        final_norm: the norm applied before the LM head, or None (post-LN decoders).
        lm_head_weight: ``[vocab, hidden]`` rows of the output projection.
        lm_head_bias: ``[vocab]`` bias (including BART's ``final_logits_bias``) or None.
        logit_softcap: Gemma-style final soft-capping value, or None.
        output_scale: factor applied to the hidden state before the head (e.g. T5's
            ``d_model**-0.5`` with tied embeddings), or None.
        layer_output: picks the hidden state from a layer's forward output.
        attention_probabilities: picks the post-softmax probabilities from an attention
            module's output under eager attention (``output[1]`` for most models; T5
            returns ``(output, position_bias, probabilities)``). Only the straightforward
            reference of the conformance kit reads them.
    """

    layers: Sequence[Any]
    attentions: Sequence[Any]
    final_norm: Any
    lm_head_weight: Any
    lm_head_bias: Any = None
    logit_softcap: float | None = None
    output_scale: float | None = None
    layer_output: Callable[[Any], Any] = attrs.field(
        default=lambda output: output[0] if isinstance(output, tuple) else output
    )
    attention_probabilities: Callable[[Any], Any] = attrs.field(default=lambda output: output[1])

    @property
    def num_layers(self) -> int:
        """Number of decoder layers L."""
        return len(self.layers)


@attrs.define(kw_only=True)
class AttentionLeaves:
    """What an AttentionCapture filled during one forward pass.

    Attributes:
        layers: explained layer indices, in order.
        query_rows: the captured query positions.
        leaves: per explained layer, ``[H, R, K]`` attention probabilities (float32)
            that are autograd leaves.
        visible: per explained layer, ``[R, K]`` bool, the keys each row may attend to.
    """

    layers: tuple[int, ...]
    query_rows: tuple[int, ...]
    leaves: dict[int, Any] = attrs.field(factory=dict)
    visible: dict[int, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class AttentionGradients:
    """The engine's output, the input of every method.

    ``T`` counts the explained units: answer tokens, or a contrastive model's prompts
    (whose "query row" is the pooled output's: gradients and attentions are then means
    over the rows the pooled output reads).

    Attributes:
        gradients: ``[T, L, H, K]`` float32, ReLU(d s^{l,t} / d A^{l,i}[q_t, :]),
            zero at keys row q_t cannot see.
        attentions: ``[T, L, H, K]`` float32, the realised probabilities A^{l,i}[q_t, :].
        targets: ``[L, T]`` the logit-lens targets s^{l,t}.
        visible: ``[T, K]`` bool, the keys row q_t can attend to (its text set is the
            visible non-visual keys).
        layers: the decoder layer index of each of the L entries.
        layout: the visual layout over the K keys.
        answer_ids: ``[T]`` explained tokens (a contrastive model's prompt indices).
        query_rows: ``[T]`` the query positions q_t.
        raw_gradients: ``[T, L, H, K]`` the signed d s^{l,t} / d A^{l,i}[q_t, :] (before
            ReLU), when a method declares the ``raw_gradients`` need; else None.
        full_attentions: ``[L, H, K, K]`` every query row of the explained layers'
            attention (decoder self-attention), for the ``full_attention`` need; else None.
        full_gradients: ``[T, L, H, K, K]`` d z_t / d A^{l,i} over every row, where z_t is
            the final-layer logit of v_t at q_t and the derivative is total (through every
            later layer, nothing detached), for the ``full_gradients`` need; else None.
        position_logits: ``[C, K]`` the final-layer logit of class ``logit_classes[c]``
            at every key position, for the ``position_logits`` need; else None.
        logit_classes: the token ids of the rows of ``position_logits``.
        sequence_ids: ``[K]`` the token id at each key position (with
            ``position_logits``); else None.
        metadata: what the pass measured beside the gradients, kept in the
            Explanation's metadata (a contrastive model's image-text similarities).
        averaged_rows: how many query rows' leaves each unit's ``gradients`` and
            ``attentions`` average: 1 for an answer token (its row q_t) and for a pass
            whose other rows have exactly zero gradient; more where a contrastive pass
            pools several rows. A product of the two is exact only at 1.
    """

    gradients: np.ndarray
    attentions: np.ndarray
    targets: np.ndarray
    visible: np.ndarray
    layers: tuple[int, ...]
    layout: VisualLayout
    answer_ids: tuple[int, ...]
    query_rows: tuple[int, ...]
    raw_gradients: np.ndarray | None = None
    full_attentions: np.ndarray | None = None
    full_gradients: np.ndarray | None = None
    position_logits: np.ndarray | None = None
    logit_classes: tuple[int, ...] = ()
    sequence_ids: np.ndarray | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    averaged_rows: int = 1
