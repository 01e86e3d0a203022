"""The BLIP-2 adapter: ``Blip2ForConditionalGeneration`` with an OPT or a Flan-T5 language model.

BLIP-2's language model never sees image patches. A Q-Former turns the vision tower's
patch features into a fixed number of learned **query tokens** (32 in the released
models); the processor writes one image token per query before the prompt, and the
model scatters the projected query outputs there. What dexar explains:

- **OPT** (decoder-only): the language model's self-attention over
  ``[queries..., <s>, prompt..., answer...]``, exactly as for LLaVA;
- **Flan-T5** (encoder-decoder): the decoder's cross-attention to the encoder sequence
  ``[queries..., prompt...]``, exactly as for Florence-2;
- in both, V = the query positions: DEX-AR gives a relevance g_t over the queries.

The maps are drawn over the vision tower's patch grid, from the query relevance projected
through the Q-Former's cross-attention (an extension beyond the DEX-AR paper, docs/method.md
§8): ``map_t = sum_q g_t[q] * Abar[q, :]``. ``Abar`` is by default the cross-attention
averaged over heads and cross-attention layers (``projection="mean"``); with
``projection="gradient"`` each head's attention is weighted by its gradient,
``mean_{l,h} ReLU(A * dS/dA)`` with S the sum of the answer tokens' logits (one extra
forward and backward per explanation). The vision tower's CLS feature lies on no patch:
its column is dropped. Each Explanation records the projection in its metadata.

InstructBLIP is claimed so that loading it says why it is not served yet: its Q-Former
also reads the instruction, which this projection does not model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import numpy as np
import torch

from dexar_core.engine.layers import frozen_parameters
from dexar_core.engine.logit_lens import LogitLensGradients
from dexar_core.errors import InputError, LayoutError, MethodError
from dexar_core.hf.capture import TransformersAttentionCapture
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.encoder_decoder import HFEncoderDecoderAdapter
from dexar_core.hf.facts import ImageTokenConvention, PromptLocator, patch_grid
from dexar_core.hf.generative import HFGenerativeAdapter
from dexar_core.hf.loading import ServedModelType, template_positions
from dexar_core.interfaces import GenerativeAdapter
from dexar_core.records import DecoderParts, LoadedModel, PreparedPrompt, TeacherForcedPass
from dexar_core.values import Grid, RelevanceProjection, VisualLayout

PROMPT_TEMPLATE = "Question: {question} Answer:"
"""BLIP-2's question-answering prompt form; an empty prompt asks for a caption."""

PROJECTIONS = ("mean", "gradient")
"""The ways relevance over the query tokens is projected onto the patch grid."""

BLIP2_ONLY = ServedModelType(
    family="BLIP-2",
    model_type="blip-2",
    instead="InstructBLIP is not supported yet: its Q-Former also reads the instruction "
    "text, which the query-to-patch projection does not model. Use a BLIP-2 checkpoint, "
    "or an adapter package for InstructBLIP.",
)
"""BLIP-2 is served; InstructBLIP (its own model type) is refused with the reason."""


def format_blip2_prompt(prompt: str) -> str:
    """The BLIP-2 prompt: empty for a caption, the prompt as given if it already ends
    with ``Answer:``, else ``"Question: {prompt} Answer:"``."""
    if not prompt.strip() or prompt.rstrip().lower().endswith("answer:"):
        return prompt
    return PROMPT_TEMPLATE.format(question=prompt)


QUERY_TOKENS = ImageTokenConvention(
    grid=lambda config, height, width: (1, int(config.num_query_tokens)),
    name="query tokens",
    hint=(
        "BLIP-2 has one image token per Q-Former query; give the prompt without image "
        "placeholders (the processor writes them) and a processor saved with the model"
    ),
)
"""V as one row of query tokens: the grid the engine sees (maps use the projection)."""


def projection_patches(loaded: LoadedModel, prepared: PreparedPrompt) -> Grid:
    """The vision tower's patch grid over the processed image, where maps are drawn."""
    height, width = prepared.inputs["pixel_values"].shape[-2:]
    rows, cols = patch_grid(loaded.model.config, int(height), int(width))
    return Grid(
        name="image 0",
        height=rows,
        width=cols,
        positions=np.arange(rows * cols),
        pixel_box=prepared.facts.images[0].pixel_box,
        image_index=0,
    )


def _check_single_image(num_images: int) -> None:
    if num_images != 1:
        raise InputError(
            f"BLIP-2 reads exactly one image per prompt; {num_images} were given. Explain "
            "each image separately."
        )


class _OptFamily(HFDecoderOnlyAdapter):
    """BLIP-2 with a decoder-only OPT language model: its self-attention is explained."""

    name = "blip2"
    model_class = "Blip2ForConditionalGeneration"
    image_tokens = QUERY_TOKENS
    language_model_path = "language_model.model.decoder"

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """See :func:`format_blip2_prompt`."""
        _check_single_image(num_images)
        return format_blip2_prompt(prompt)

    def _context(self, model: Any) -> int:
        return int(model.config.text_config.max_position_embeddings)

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """See :meth:`ModelAdapter.prepare`; a prompt longer than OPT's context is refused."""
        prepared = super().prepare(loaded, images, prompt)
        length, limit = prepared.inputs["input_ids"].shape[1], self._context(loaded.model)
        queries = loaded.model.config.num_query_tokens
        if length >= limit:
            raise InputError(
                f"the BLIP-2 prompt is {length} tokens long ({queries} query tokens "
                f"included) but the OPT language model's context is {limit} "
                "positions, and the answer needs at least one; shorten the prompt."
            )
        return prepared

    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """See :meth:`GenerativeAdapter.generate`; never past the end of OPT's context."""
        room = self._context(loaded.model) - prepared.inputs["input_ids"].shape[1]
        return super().generate(loaded, prepared, max(1, min(max_new_tokens, room)))

    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """See :meth:`GenerativeAdapter.teacher_forced`; prompt + answer must fit the context."""
        length = prepared.inputs["input_ids"].shape[1] + len(answer_ids)
        limit = self._context(loaded.model)
        if length > limit:
            raise InputError(
                f"the BLIP-2 prompt and answer are {length} tokens long but the OPT language "
                f"model's context is {limit} positions; explain a shorter answer or prompt."
            )
        return super().teacher_forced(loaded, prepared, answer_ids)

    def continuation_model(self, model: Any) -> Any:
        """OPT alone: BLIP-2's own forward reruns the image towers at every call."""
        return model.language_model

    def decoder_parts(self, model: Any) -> DecoderParts:
        """OPT layers and self-attention; the final norm is OPT's final layer norm followed
        by ``project_out`` where the model has one (both sit between the last layer and
        the head)."""
        decoder = self.language_model(model)
        before_head = [m for m in (decoder.final_layer_norm, decoder.project_out) if m is not None]
        head = model.get_output_embeddings()
        return DecoderParts(
            layers=list(decoder.layers),
            attentions=[layer.self_attn for layer in decoder.layers],
            final_norm=torch.nn.Sequential(*before_head) if before_head else None,
            lm_head_weight=head.weight,
            lm_head_bias=getattr(head, "bias", None),
        )


class _T5Family(HFEncoderDecoderAdapter):
    """BLIP-2 with an encoder-decoder Flan-T5 language model: decoder cross-attention."""

    name = "blip2"
    model_class = "Blip2ForConditionalGeneration"
    image_tokens = QUERY_TOKENS
    passes_logits_to_keep = False

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """See :func:`format_blip2_prompt`."""
        _check_single_image(num_images)
        return format_blip2_prompt(prompt)

    def generation_config(self, model: Any) -> Any:
        """BLIP-2 hands generation to the T5 model, which starts from its own start token."""
        return model.language_model.generation_config

    def context_length(self, model: Any) -> int | None:
        """T5's relative positions put no hard bound on the sequence length."""
        return None

    def decoder_parts(self, model: Any) -> DecoderParts:
        """T5 decoder blocks and their cross-attention; T5's final RMS norm, and the
        ``d_model ** -0.5`` rescaling T5 applies before a tied head."""
        language_model = model.language_model
        decoder = language_model.decoder
        scale = None
        if getattr(language_model.config, "scale_decoder_outputs", False):
            scale = float(language_model.model_dim) ** -0.5
        return DecoderParts(
            layers=list(decoder.block),
            attentions=[block.layer[1].EncDecAttention for block in decoder.block],
            final_norm=decoder.final_layer_norm,
            lm_head_weight=language_model.lm_head.weight,
            output_scale=scale,
            # T5 attention returns (output, position_bias, probabilities)
            attention_probabilities=lambda output: output[2],
        )


@contextmanager
def _qformer_cross_attentions(model: Any, store: list[Any], with_grad: bool) -> Iterator[None]:
    """Record the Q-Former's cross-attention probabilities (eager) during one forward.

    With ``with_grad``, the Q-Former's query embeddings enter as a fresh leaf so the
    probabilities are part of an autograd graph even when every parameter is frozen.
    """
    qformer = model.qformer
    modules = [
        layer.crossattention.attention
        for layer in qformer.encoder.layer
        if getattr(layer, "has_cross_attention", False)
    ]
    handles = [
        module.register_forward_hook(lambda m, args, output: store.append(output[1]))
        for module in modules
    ]
    if with_grad:

        def fresh_queries(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
            kwargs["query_embeds"] = kwargs["query_embeds"].detach().requires_grad_(True)
            return args, kwargs

        handles.append(qformer.register_forward_pre_hook(fresh_queries, with_kwargs=True))
    previous = qformer.config._attn_implementation
    try:
        qformer.config._attn_implementation = "eager"
        yield
    finally:
        qformer.config._attn_implementation = previous
        for handle in handles:
            handle.remove()


def _patch_columns(attention: torch.Tensor, patches: Grid) -> torch.Tensor:
    """``[..., 1 + P]`` over the vision tokens to ``[..., P]`` over patches (CLS dropped)."""
    rows, cols = patches.shape
    if attention.shape[-1] != rows * cols + 1:
        raise LayoutError(
            f"the BLIP-2 Q-Former attends to {attention.shape[-1]} vision tokens but a "
            f"{rows}x{cols} patch grid and the CLS token make {rows * cols + 1}; the image "
            "size does not match the vision config."
        )
    return attention[..., 1:]


class Blip2Adapter(GenerativeAdapter):
    """Adapter for ``Blip2ForConditionalGeneration`` (OPT and Flan-T5 language models).

    Args:
        projection: ``"mean"`` (the Q-Former cross-attention averaged over heads and
            cross-attention layers) or ``"gradient"`` (each head weighted by its gradient).
            Choose it on a loaded model with
            ``attrs.evolve(loaded, adapter=Blip2Adapter(projection="gradient"))``.

    Raises:
        MethodError: for an unknown projection.
    """

    name = "blip2"

    def __init__(self, projection: str = "mean") -> None:
        if projection not in PROJECTIONS:
            raise MethodError(
                f"Blip2Adapter: projection must be one of {PROJECTIONS}, got {projection!r}."
            )
        self.projection = projection
        self.families: dict[str, HFGenerativeAdapter] = {
            "opt": _OptFamily(),
            "t5": _T5Family(),
        }
        self.capture = TransformersAttentionCapture(self.decoder_parts)
        self.locator = PromptLocator()
        self.gradients = LogitLensGradients()

    def family(self, model: Any) -> HFGenerativeAdapter:
        """The language-model family's behaviour for this model."""
        key = "opt" if model.config.use_decoder_only_language_model else "t5"
        return self.families[key]

    def load(
        self, path: str, *, device: str | None, dtype: Any, device_map: Any, **options: Any
    ) -> LoadedModel:
        """Load a BLIP-2 checkpoint; InstructBLIP is refused with a reason."""
        BLIP2_ONLY.refuse_other(self.name, path)
        loaded = self.families["opt"].load(
            path, device=device, dtype=dtype, device_map=device_map, **options
        )
        return attrs.evolve(loaded, adapter=self)

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """See :meth:`ModelAdapter.prepare`; also computes the mean projection."""
        family = self.family(loaded.model)
        prepared = family.prepare(loaded, images, prompt)
        template = prepared.facts.template_mask
        if prepared.prompt_text != prompt:
            # The families find template tokens by comparing with the empty prompt, which
            # for BLIP-2 means "caption" (no template): compare with the bare template.
            bare = family.processor_inputs(loaded, PROMPT_TEMPLATE.format(question=""), images)
            template = template | template_positions(
                prepared.inputs["input_ids"][0].tolist(), bare["input_ids"][0].tolist()
            )
        facts = attrs.evolve(
            prepared.facts,
            template_mask=template,
            projection=self._mean_projection(loaded, prepared),
        )
        return attrs.evolve(prepared, facts=facts)

    def prepare_perturbed(
        self, loaded: LoadedModel, prepared: PreparedPrompt, images: Sequence[Any]
    ) -> PreparedPrompt:
        """See :meth:`GenerativeAdapter.prepare_perturbed`; the projection is not recomputed."""
        return self.family(loaded.model).prepare_perturbed(loaded, prepared, images)

    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """See :meth:`GenerativeAdapter.generate`."""
        return self.family(loaded.model).generate(loaded, prepared, max_new_tokens)

    def encode_answer(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer: str
    ) -> list[int]:
        """See :meth:`GenerativeAdapter.encode_answer`."""
        return self.family(loaded.model).encode_answer(loaded, prepared, answer)

    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """See :meth:`GenerativeAdapter.teacher_forced`."""
        return self.family(loaded.model).teacher_forced(loaded, prepared, answer_ids)

    def decoder_parts(self, model: Any) -> DecoderParts:
        """See :meth:`GenerativeAdapter.decoder_parts`."""
        return self.family(model).decoder_parts(model)

    def continuation_model(self, model: Any) -> Any:
        """See :meth:`GenerativeAdapter.continuation_model`."""
        return self.family(model).continuation_model(model)

    def layout_for_answer(
        self,
        loaded: LoadedModel,
        prepared: PreparedPrompt,
        forced: TeacherForcedPass,
        layout: VisualLayout,
    ) -> VisualLayout:
        """With ``projection="gradient"``, the projection weighted by this answer's gradients."""
        if self.projection == "mean":
            return layout
        projection = self._gradient_projection(loaded, prepared, forced)
        return attrs.evolve(layout, projection=projection)

    def describe(self) -> dict[str, Any]:
        """Facts recorded in each Explanation's metadata."""
        # explain() adds the projection's own record under "projection"
        return {
            "adapter": self.name,
            "visual_set": "Q-Former query tokens; maps projected onto the patch grid",
        }

    # --- the query-to-patch projection (an extension beyond the paper) ------------------

    def _projection(
        self, patches: Grid, weights: torch.Tensor, kind: str, layers: int, heads: int
    ) -> RelevanceProjection:
        details: dict[str, Any] = {
            "kind": kind,
            "source": "Q-Former cross-attention, queries x patches",
            "cross_attention_layers": layers,
            "heads": heads,
            "vision_cls": "dropped (on no patch)",
            "extension": "not in the DEX-AR paper (docs/method.md §8)",
        }
        if kind == "gradient":
            details["target"] = "sum of the answer tokens' final logits"
        return RelevanceProjection(
            name=f"qformer_cross_attention_{kind}",
            weights=weights.detach().float().cpu().numpy(),
            grids=[patches],
            details=details,
        )

    def _mean_projection(
        self, loaded: LoadedModel, prepared: PreparedPrompt
    ) -> RelevanceProjection:
        """``Abar[q, p]``: the Q-Former cross-attention averaged over heads and layers."""
        store: list[Any] = []
        with torch.no_grad(), _qformer_cross_attentions(loaded.model, store, with_grad=False):
            loaded.model.get_image_features(pixel_values=prepared.inputs["pixel_values"])
        patches = projection_patches(loaded, prepared)
        stacked = torch.stack([attention[0].float() for attention in store])  # [Lq, H, Q, 1+P]
        weights = _patch_columns(stacked.mean(dim=(0, 1)), patches)
        return self._projection(patches, weights, "mean", stacked.shape[0], stacked.shape[1])

    def _gradient_projection(
        self, loaded: LoadedModel, prepared: PreparedPrompt, forced: TeacherForcedPass
    ) -> RelevanceProjection:
        """``mean_{l,h} ReLU(A * dS/dA)`` with S the answer tokens' summed logits."""
        store: list[Any] = []
        inputs = dict(forced.inputs)
        if "logits_to_keep" in inputs:
            inputs["logits_to_keep"] = 0
        model = loaded.model
        with (
            torch.enable_grad(),
            frozen_parameters(model),
            _qformer_cross_attentions(model, store, with_grad=True),
        ):
            logits = model(**inputs).logits[0]
            rows = torch.tensor(forced.query_rows, device=logits.device)
            tokens = torch.tensor(forced.answer_ids, device=logits.device)
            target = logits[rows, tokens].float().sum()
            grads = torch.autograd.grad(target, store)
        stacked = torch.stack(
            [torch.relu(a[0].float() * g[0].float()) for a, g in zip(store, grads)]
        )
        patches = projection_patches(loaded, prepared)
        weights = _patch_columns(stacked.mean(dim=(0, 1)), patches)
        return self._projection(patches, weights, "gradient", stacked.shape[0], stacked.shape[1])
