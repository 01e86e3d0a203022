"""A generic adapter base for Hugging Face encoder-decoder VLMs (Florence-2, BLIP-2 + Flan-T5).

The image tokens and the prompt form the encoder's input sequence; the answer is the
decoder's. The explained attention is the decoder's **cross-attention** from the answer
positions to the encoder sequence (docs/method.md §8), so:

- the key sequence is the encoder sequence: V and T_set are encoder positions, and the
  key length does not grow with the answer;
- the decoder input is a short prefix (the decoder start token, and a forced BOS where the
  generation config has one) followed by the answer; the query row q_t of answer token t
  is the decoder position just before it.

A concrete adapter states where the decoder lives (:meth:`decoder_parts`), formats the
prompt and states how its image tokens lie as data (:mod:`dexar_core.hf.facts`);
generation and teacher forcing are shared here and in :mod:`dexar_core.hf.generative`.
An adapter that also names its encoder's self-attention modules
(:meth:`encoder_self_attentions`) offers ``through_encoder``: relevance carried back to
the encoder's input positions (:mod:`dexar_core.hf.encoder_relevance`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from dexar_core.errors import CheckpointError, InputError, UnsupportedModelError
from dexar_core.hf.encoder_relevance import ThroughEncoderGradients, check_through_encoder
from dexar_core.hf.generative import HFGenerativeAdapter
from dexar_core.records import DecoderParts, LoadedModel, PreparedPrompt, TeacherForcedPass


class HFEncoderDecoderAdapter(HFGenerativeAdapter):
    """Shared behaviour of transformers encoder-decoder VLM adapters.

    An adapter sets ``name`` and ``model_class``, implements :meth:`decoder_parts` and
    :meth:`format_prompt`, and states how its image tokens lie as data
    (``image_tokens``, see :mod:`dexar_core.hf.facts`). Image tokens on no grid
    (Florence-2's pooled global token) and padding are in neither V nor the text set.

    Args:
        through_encoder: ``"none"`` (default: V's relevance stays on the encoder outputs),
            ``"rollout"`` or ``"gradient"`` (carried back through the encoder's
            self-attention, docs/method.md §8.1). Choose it on a loaded model with
            ``attrs.evolve(loaded, adapter=Florence2Adapter(through_encoder="rollout"))``.

    Attributes:
        passes_logits_to_keep: whether the model's forward accepts ``logits_to_keep``
            (the explanation pass needs no logits; T5's forward does not accept it).

    Raises:
        MethodError: an unknown ``through_encoder``.
    """

    passes_logits_to_keep: bool = True

    def __init__(self, through_encoder: str = "none") -> None:
        super().__init__()
        self.through_encoder = check_through_encoder(through_encoder, type(self).__name__)
        if self.through_encoder != "none":
            self.gradients = ThroughEncoderGradients(self.through_encoder)

    def encoder_self_attentions(self, model: Any) -> list[Any]:
        """The encoder layers' self-attention modules, first layer first.

        Only ``through_encoder`` reads them; an adapter that offers it names them.

        Raises:
            UnsupportedModelError: the adapter does not name them.
        """
        raise UnsupportedModelError(
            f"the {self.name} adapter does not name its encoder's self-attention modules, "
            "so through_encoder cannot carry relevance through the encoder; use "
            "through_encoder='none' or implement encoder_self_attentions()."
        )

    def context_length(self, model: Any) -> int | None:
        """The longest encoder or decoder sequence the language model takes, if bounded."""
        text_config = model.config.get_text_config()
        return getattr(text_config, "max_position_embeddings", None)

    def _processed(self, loaded: LoadedModel, text: str, images: Sequence[Any]) -> dict[str, Any]:
        try:
            return self.processor_inputs(loaded, text, images)
        except ValueError as error:
            raise InputError(
                f"the {self.name} processor rejected the prompt {text!r} with {len(images)} "
                f"image(s): {str(error).rstrip('.')}. Check the prompt against the model's "
                "prompt format (docs/encoder_decoder.md)."
            ) from error

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """See :meth:`ModelAdapter.prepare`."""
        text = self.format_prompt(loaded, prompt, len(images))
        inputs = self._processed(loaded, text, images)
        length = inputs["input_ids"].shape[1]
        limit = self.context_length(loaded.model)
        if limit is not None and length > limit:
            raise InputError(
                f"the {self.name} prompt is {length} encoder tokens long (image tokens "
                f"included) but the language model takes at most {limit}; shorten the prompt."
            )
        bare_inputs = self._processed(loaded, self.format_prompt(loaded, "", len(images)), images)
        return self.prepared(
            loaded, images, prompt, text=text, inputs=inputs, bare_inputs=bare_inputs
        )

    def decoder_prefix(self, loaded: LoadedModel) -> list[int]:
        """The decoder tokens before the answer: the start token and any forced BOS."""
        config = self.generation_config(loaded.model)
        start = config.decoder_start_token_id
        if start is None:
            start = getattr(loaded.model.config.get_text_config(), "decoder_start_token_id", None)
        if start is None:
            raise CheckpointError(
                f"the {self.name} model's configs name no decoder_start_token_id; set it in "
                "generation_config.json (BART-style models start with </s>, T5 with <pad>)."
            )
        prefix = [int(start)]
        forced = getattr(config, "forced_bos_token_id", None)
        if forced is not None:
            prefix.append(int(forced))
        return prefix

    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """See :meth:`GenerativeAdapter.generate`; the decoder prefix is not part of the answer."""
        prefix = self.decoder_prefix(loaded)
        limit = self.context_length(loaded.model)
        if limit is not None:
            max_new_tokens = max(1, min(max_new_tokens, limit - len(prefix)))
        tokens = self.greedy_sequence(loaded, prepared, max_new_tokens)
        # generate() begins the decoder with the start token, and puts a forced BOS
        # after it where the generation config asks for one: neither is the answer.
        skip = len(prefix) if tokens[: len(prefix)] == prefix else 1
        return self.until_stop(loaded, tokens[skip:])

    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """See :meth:`GenerativeAdapter.teacher_forced`.

        The encoder input is the prompt; the decoder input is the prefix and the answer.
        """
        prefix = self.decoder_prefix(loaded)
        decoder_length = len(prefix) + len(answer_ids)
        limit = self.context_length(loaded.model)
        if limit is not None and decoder_length > limit:
            raise InputError(
                f"the answer is {len(answer_ids)} tokens long but the {self.name} decoder takes "
                f"at most {limit - len(prefix)}; explain a shorter answer."
            )
        input_ids = prepared.inputs["input_ids"]
        decoder_ids = torch.tensor(
            [[*prefix, *answer_ids]], dtype=input_ids.dtype, device=input_ids.device
        )
        inputs = dict(prepared.inputs)
        inputs["decoder_input_ids"] = decoder_ids
        inputs["use_cache"] = False
        if self.passes_logits_to_keep:
            inputs["logits_to_keep"] = 1
        return TeacherForcedPass(
            inputs=inputs,
            query_rows=[len(prefix) - 1 + t for t in range(len(answer_ids))],
            answer_ids=answer_ids,
            key_length=input_ids.shape[1],
        )

    @abstractmethod
    def decoder_parts(self, model: Any) -> DecoderParts:
        """The decoder's layers, their cross-attention modules, final norm and LM head."""
