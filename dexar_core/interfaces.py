"""The three interfaces an adapter provides, and the ModelAdapter that bundles them.

The method never sees a concrete model class: an adapter turns a model's forward pass
into the plain records of :mod:`dexar_core.records`. What differs between
architectures is expressed as small overrides of these classes or as plain data
(:class:`dexar_core.records.DecoderParts`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from dexar_core.records import (
        AttentionLeaves,
        DecoderParts,
        LoadedModel,
        PreparedPrompt,
        TeacherForcedPass,
    )
    from dexar_core.values import VisualLayout


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


class VisualTokenLocator(ABC):
    """Finds the visual tokens in the key sequence and lays them out on grids."""

    @abstractmethod
    def locate(self, prepared: PreparedPrompt) -> VisualLayout:
        """The layout of the prompt's key sequence (before any answer token).

        Never from hard-coded token counts: from the processor's outputs.
        """


class GradientExtractor(ABC):
    """Per-layer logit-lens targets s^{l,t} and the backward that yields G^{l,t,i}."""

    @abstractmethod
    def logit_lens_targets(
        self, parts: DecoderParts, layer_outputs: torch.Tensor, token_ids: torch.Tensor
    ) -> torch.Tensor:
        """Raw logits of the explained tokens from each layer's output.

        Args:
            parts: the decoder's layers, final norm and LM head.
            layer_outputs: ``[L, T, D]`` hidden states y^l at the query rows q_t.
            token_ids: ``[T]`` the explained tokens v_t.

        Returns:
            ``[L, T]`` the targets s^{l,t} (raw logits, not log-probabilities).
        """


class ModelAdapter(ABC):
    """Everything dexar needs to explain one family of models.

    Subclasses set the three interface instances and implement loading, prompting,
    generation and the teacher-forced inputs of the explanation pass.
    """

    name: str
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
        """Build the model inputs for the prompt and images (the prompt part only)."""

    @abstractmethod
    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """Greedy free-run answer ids (fast path: KV cache, no grad), without EOS."""

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

    def describe(self) -> Mapping[str, Any]:
        """Facts about this adapter recorded in each Explanation's metadata."""
        return {"adapter": self.name}
