"""The three interfaces an adapter provides, and the ModelAdapter that bundles them.

The method never sees a concrete model class: an adapter turns a model's forward pass
into the plain records of :mod:`dexar_core.records`. What differs between
architectures is expressed as small overrides of these classes or as plain data
(:class:`dexar_core.records.DecoderParts`).

What an explanation explains is a set of *units* (:data:`UNITS`): the answer tokens of a
generative model (:class:`GenerativeAdapter`), or the text prompts of a contrastive one,
whose similarity with the image is explained. Every kind goes through the same flow
(:func:`dexar_core.api.explain`): prepare, locate, the units, the pass of the adapter's
:class:`GradientExtractor`, a method of the catalog, the maps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.errors import InputError, MethodError

if TYPE_CHECKING:
    from PIL import Image

    from dexar_core.records import (
        AttentionGradients,
        AttentionLeaves,
        DecoderParts,
        ExplainedUnits,
        LoadedModel,
        PreparedPrompt,
        PromptPrefill,
        TeacherForcedPass,
    )
    from dexar_core.values import VisualLayout

ANSWER_TOKENS = "answer tokens"
"""The units of a generative model: the tokens v_t of its answer."""

PROMPTS = "prompts"
"""The units of a contrastive model: the text prompts whose image similarity is explained."""

UNITS = (ANSWER_TOKENS, PROMPTS)
"""What an explanation can explain (``ModelAdapter.units``, ``Explanation.units``)."""

ROW_METHODS = "dexar, attention, attn_grad, legrad"
"""The methods that read the explained rows only: named where a record they skip is missing."""


class AttentionCapture(ABC):
    """Records the attention probabilities of chosen layers and query rows as leaves.

    Used as a context manager around exactly one forward pass. On exit, also on error,
    every hook and attention override it installed is removed.
    """

    @abstractmethod
    def capture(
        self, model: Any, layers: Sequence[int], query_rows: Sequence[int]
    ) -> AbstractContextManager[AttentionLeaves]:
        """Capture the post-softmax rows ``query_rows`` of ``layers`` during one forward.

        Args:
            model: the loaded model.
            layers: indices of the decoder layers to explain.
            query_rows: positions in the query sequence whose attention rows become leaves.

        Returns:
            A context manager yielding an ``AttentionLeaves`` filled by the forward pass.
        """

    def capture_full(self, model: Any, layers: Sequence[int]) -> AbstractContextManager[Any]:
        """Capture every query row of ``layers``' attention, in the graph, during one forward.

        For the methods that need whole attention matrices (rollout, Chefer et al.'s
        relevance propagation). Nothing is detached: the yielded ``AttentionLeaves``
        holds ``[H, Q, K]`` intermediate tensors whose gradients are total derivatives.
        A capture that can only give the explained rows keeps this default, which
        answers that those methods cannot run.

        Raises:
            MethodError: this capture gives the explained rows only.
        """
        raise MethodError(
            f"this method needs every row of the attention matrices, which "
            f"{type(self).__name__} does not provide; use a method that reads the answer "
            f"rows only ({ROW_METHODS})."
        )


class VisualTokenLocator(ABC):
    """Finds the visual tokens in the key sequence and lays them out on grids."""

    @abstractmethod
    def locate(self, prepared: PreparedPrompt) -> VisualLayout:
        """The layout of the prompt's key sequence (before any answer token).

        Never from hard-coded token counts: from the processor's outputs.
        """


@attrs.frozen
class GradientRequest:
    """What one explanation pass is asked for (:meth:`GradientExtractor.attention_gradients`).

    Attributes:
        loaded: model, processor and adapter.
        prepared: the prepared prompt and images.
        layout: the prompt's visual layout (``VisualTokenLocator.locate``).
        units: what is explained (``ModelAdapter.explained_units``).
        layers: the layer indices to explain.
        chunk_size: explain at most this many units per backward pass, where the pass
            can split them; None explains all at once.
        needs: the method's extra records (``dexar_core.engine.NEEDS``).
    """

    loaded: LoadedModel
    prepared: PreparedPrompt
    layout: VisualLayout
    units: ExplainedUnits
    layers: Sequence[int]
    chunk_size: int | None = attrs.field(default=None, kw_only=True)
    needs: Collection[str] = attrs.field(default=(), kw_only=True)


class GradientExtractor(ABC):
    """Per-layer targets s^{l,t} of the explained units and the pass that yields G^{l,t,i}.

    The core's implementation for decoders is
    :class:`dexar_core.engine.logit_lens.LogitLensGradients` (s^{l,t} = the logit lens of
    layer l at q_t, one forward and one backward over the teacher-forced answer); open_clip's
    is its pooled image-text similarity of each vision block's output.
    """

    @abstractmethod
    def num_layers(self, loaded: LoadedModel) -> int:
        """L, how many layers have an attention whose gradients this pass can give."""

    @abstractmethod
    def attention_gradients(self, request: GradientRequest) -> AttentionGradients:
        """The explanation pass: the attention gradients of every chosen layer and unit.

        Args:
            request: what is explained, over which layers, with which extra records.

        Returns:
            The record every method reads; the units take the place of ``T``.

        Raises:
            MethodError: a need this pass cannot fill, saying which methods can run.
        """


class ModelAdapter(ABC):
    """Everything dexar needs to explain one family of models.

    Subclasses set the three interface instances, declare their :attr:`units`, and
    implement loading, prompting, the explained units and the perturbation score.
    Generative models subclass :class:`GenerativeAdapter`.

    Attributes:
        name: the adapter's name (its ``AdapterSpec.name``).
        units: what its explanations explain, one of :data:`UNITS`.
        perturbation_measure: the score a perturbation test reads (:meth:`unit_scores`):
            ``"perplexity"`` (higher when the units lose their evidence) or
            ``"similarity"`` (lower).
    """

    name: str
    units: str
    perturbation_measure: str
    capture: AttentionCapture
    locator: VisualTokenLocator
    gradients: GradientExtractor

    @abstractmethod
    def load(self, path: str, *, device: str | None, dtype: Any, device_map: Any) -> LoadedModel:
        """Load model and processor from a local folder or hub id (``from_pretrained``).

        An adapter that also takes ``**options`` receives the further ``from_pretrained``
        arguments the user asked for (``attn_implementation``, ``max_memory``,
        ``revision``, ...; see docs/models.md); ``dexar_core.load`` refuses them by name
        for an adapter whose ``load`` has no ``**options``.
        """

    @abstractmethod
    def prepare(
        self, loaded: LoadedModel, images: Sequence[Image.Image], prompt: str
    ) -> PreparedPrompt:
        """Build the model inputs for the prompt and images (the prompt part only).

        A contrastive adapter also takes a sequence of prompts (one unit each).
        """

    @abstractmethod
    def explained_units(
        self,
        loaded: LoadedModel,
        prepared: PreparedPrompt,
        *,
        answer: str | None,
        max_new_tokens: int,
    ) -> ExplainedUnits:
        """What one explanation explains: the answer's tokens, or the prompts.

        Args:
            loaded: model, processor and adapter.
            prepared: what :meth:`prepare` returned.
            answer: the text to explain (generative: teacher-forced); None to generate.
            max_new_tokens: the longest generated answer.

        Raises:
            InputError: no unit to explain (an empty answer), or an answer given where
                the model has none (a contrastive model).
        """

    @abstractmethod
    def unit_scores(
        self,
        loaded: LoadedModel,
        image_sets: Sequence[Sequence[Image.Image]],
        prompt: str,
        units: ExplainedUnits,
    ) -> list[float]:
        """The model's score of the explained units on each set of images (perturbation).

        Generative: the answer's teacher-forced perplexity after ``prompt``; contrastive:
        the mean image-text cosine similarity of the unit prompts.
        """

    batches: bool = False
    """Whether :meth:`batched_units` runs several items through the model together
    (docs/performance.md, "Batched explanations"); False: one at a time."""

    def batched_units(
        self,
        loaded: LoadedModel,
        prepared: Sequence[PreparedPrompt],
        answers: Sequence[str | None],
        *,
        max_new_tokens: int,
    ) -> list[ExplainedUnits | InputError]:
        """:meth:`explained_units` of several items, each item's own error in its place.

        The default runs the items one at a time. An adapter that sets :attr:`batches`
        runs them through the model together, with results equal to these
        (tests/engine/test_engine_batches.py).

        Args:
            loaded: model, processor and adapter.
            prepared: each item's :meth:`prepare` result.
            answers: each item's text to explain, or None to generate it.
            max_new_tokens: the longest generated answer.
        """
        results: list[ExplainedUnits | InputError] = []
        for item, answer in zip(prepared, answers, strict=True):
            try:
                results.append(
                    self.explained_units(loaded, item, answer=answer, max_new_tokens=max_new_tokens)
                )
            except InputError as error:
                results.append(error)
        return results

    def describe(self) -> Mapping[str, Any]:
        """Facts about this adapter recorded in each Explanation's metadata."""
        return {"adapter": self.name}


class GenerativeAdapter(ModelAdapter):
    """An adapter of a generative VLM: the explained units are its answer's tokens.

    Subclasses implement generation and the teacher-forced inputs of the explanation
    pass, and name the decoder's parts for the logit lens.
    """

    units = ANSWER_TOKENS
    perturbation_measure = "perplexity"

    @abstractmethod
    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """Greedy free-run answer ids (fast path: KV cache, no grad), without EOS."""

    def free_run(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> tuple[list[int], PromptPrefill | None]:
        """:meth:`generate`'s answer ids, and the prompt's keys and values its prefill
        computed where the explanation can continue from them (else None).

        The default keeps none; an adapter whose :meth:`teacher_forced` gives
        ``prompt_inputs`` overrides it to keep its prefill
        (:func:`dexar_core.engine.prompt_cache.kept_prefill`), so that a free run runs the
        prompt and the vision tower once.
        """
        return self.generate(loaded, prepared, max_new_tokens), None

    @abstractmethod
    def encode_answer(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer: str
    ) -> list[int]:
        """Token ids of a given answer text as the model would have generated it."""

    @abstractmethod
    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """Inputs of one forward over prompt + answer, with the query rows q_t."""

    @abstractmethod
    def decoder_parts(self, model: Any) -> DecoderParts:
        """The language model's decoder layers, attention modules, final norm and head."""

    def explained_units(
        self,
        loaded: LoadedModel,
        prepared: PreparedPrompt,
        *,
        answer: str | None,
        max_new_tokens: int,
    ) -> ExplainedUnits:
        """The answer's tokens: generated (``answer=None``) or the given text encoded.

        See :meth:`ModelAdapter.explained_units`.
        """
        if answer is None:
            if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
                raise InputError(
                    f"max_new_tokens must be an int of at least 1, got {max_new_tokens!r}."
                )
            answer_ids, prefill = self.free_run(loaded, prepared, max_new_tokens)
            return self.answer_units(loaded, answer_ids, generated=True, prefill=prefill)
        return self.answer_units(
            loaded, self.given_answer_ids(loaded, prepared, answer), generated=False
        )

    def given_answer_ids(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer: str
    ) -> list[int]:
        """The token ids of a given answer text, refused when it holds none."""
        if not answer.strip():
            raise InputError(
                "answer is blank; give the text to explain, or leave it out to generate one."
            )
        answer_ids = self.encode_answer(loaded, prepared, answer)
        if not answer_ids:
            raise InputError(f"answer {answer!r} encodes to no token for this tokenizer.")
        return answer_ids

    def answer_units(
        self,
        loaded: LoadedModel,
        answer_ids: Sequence[int],
        *,
        generated: bool,
        prefill: PromptPrefill | None = None,
    ) -> ExplainedUnits:
        """The explained units of these answer ids, with the prompt's prefill if kept.

        Raises:
            InputError: a generated answer is empty (the model stopped at once).
        """
        from dexar_core.records import ExplainedUnits

        if generated and not answer_ids:
            raise InputError(
                "the model's answer is empty (it stopped at once); give the text to "
                "explain with answer=... (--answer) or change the prompt."
            )
        return ExplainedUnits(
            kind=ANSWER_TOKENS,
            ids=answer_ids,
            labels=self.token_strings(loaded, answer_ids),
            answer=loaded.tokenizer.decode(list(answer_ids), skip_special_tokens=True),
            generated=generated,
            prefill=prefill,
        )

    def unit_scores(
        self,
        loaded: LoadedModel,
        image_sets: Sequence[Sequence[Image.Image]],
        prompt: str,
        units: ExplainedUnits,
    ) -> list[float]:
        """The answer's teacher-forced perplexity on each set of images, in batches.

        See :meth:`ModelAdapter.unit_scores`.
        """
        from dexar_core.metrics.perturbation import answer_perplexities

        return answer_perplexities(loaded, image_sets, prompt, units.ids)

    def prepare_perturbed(
        self, loaded: LoadedModel, prepared: PreparedPrompt, images: Sequence[Image.Image]
    ) -> PreparedPrompt:
        """The same prompt prepared on perturbed copies of its images (perturbation).

        The copies have the sizes of the images ``prepared`` was made from, so the prompt's
        tokens are the same; only the model inputs change. By default the prompt is
        prepared again; an adapter whose :meth:`prepare` does more than read the images
        (the template's facts, a projection) reads only the new images' inputs here and
        keeps ``prepared``'s facts, which a teacher-forced score does not read.
        """
        return self.prepare(loaded, images, prepared.prompt)

    def layout_for_answer(
        self,
        loaded: LoadedModel,
        prepared: PreparedPrompt,
        forced: TeacherForcedPass,
        layout: VisualLayout,
    ) -> VisualLayout:
        """The layout for one explained answer; by default the prompt's layout unchanged.

        An adapter whose ``VisualLayout.projection`` depends on the answer (BLIP-2's
        gradient-weighted query-to-patch projection) returns the refined layout here.
        """
        return layout

    def resume_prompt(self, loaded: LoadedModel, prompt_inputs: Mapping[str, Any]) -> None:
        """Set again what the model keeps from a prompt's prefill for the calls after it.

        Called before the answer rows continue from a kept prefill
        (``ExplainedUnits.prefill``), which a batch's prefill may have computed along
        with other prompts. Nothing by default; Qwen2-VL's M-RoPE keeps the prompt's
        position deltas on the model.
        """

    def continuation_model(self, model: Any) -> Any:
        """The module that runs answer tokens after a cached prompt; by default the model.

        Only used where :meth:`teacher_forced` gives ``prompt_inputs``: the engine calls
        it as ``module(input_ids=..., cache=..., use_cache=True, logits_to_keep=1)`` with
        the cache its no-grad forward of ``prompt_inputs`` filled. An adapter whose model
        needs the images at every call (BLIP-2) returns its language model here.
        """
        return model

    def token_strings(self, loaded: LoadedModel, token_ids: Sequence[int]) -> list[str]:
        """Readable text of each answer token, for labels."""
        tokenizer = loaded.tokenizer
        return [tokenizer.decode([int(token)]) for token in token_ids]
