"""A generic adapter base for Hugging Face encoder-decoder VLMs (Florence-2, BLIP-2 + Flan-T5).

The image tokens and the prompt form the encoder's input sequence; the answer is the
decoder's. The explained attention is the decoder's **cross-attention** from the answer
positions to the encoder sequence (METHOD.md §8), so:

- the key sequence is the encoder sequence: V and T_set are encoder positions, and the
  key length does not grow with the answer;
- the decoder input is a short prefix (the decoder start token, and a forced BOS where the
  generation config has one) followed by the answer; the query row q_t of answer token t
  is the decoder position just before it.

A concrete adapter states where the decoder lives (:meth:`decoder_parts`), formats the
prompt and lays the image tokens on grids; prompting, generation and teacher forcing are
shared here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dexar_core.engine.logit_lens import LogitLensGradients
from dexar_core.errors import CheckpointError, InputError
from dexar_core.hf.capture import TransformersAttentionCapture
from dexar_core.hf.loading import load_pretrained, template_mask, to_model
from dexar_core.interfaces import ModelAdapter, VisualTokenLocator
from dexar_core.records import DecoderParts, LoadedModel, PreparedPrompt, TeacherForcedPass
from dexar_core.values import Grid, VisualLayout


class EncoderLocator(VisualTokenLocator):
    """Finds the image tokens in the encoder sequence; the adapter lays out the grids.

    Image tokens on no grid (Florence-2's pooled global token) are in neither V nor the
    text set; padding is in neither either.
    """

    def __init__(self, adapter: HFEncoderDecoderAdapter) -> None:
        self._adapter = adapter

    def locate(self, prepared: PreparedPrompt) -> VisualLayout:
        """See :meth:`VisualTokenLocator.locate`."""
        input_ids = prepared.inputs["input_ids"][0].cpu().numpy()
        grids = self._adapter.grids(prepared)
        visual = np.zeros(input_ids.size, dtype=bool)
        for grid in grids:
            visual[grid.positions] = True
        image_tokens = np.isin(input_ids, list(prepared.extras["image_token_ids"]))
        attended = np.ones(input_ids.size, dtype=bool)
        if prepared.inputs.get("attention_mask") is not None:
            attended = prepared.inputs["attention_mask"][0].cpu().numpy().astype(bool)
        template = np.asarray(prepared.extras["template_mask"], dtype=bool)
        return VisualLayout(
            visual_mask=visual,
            text_mask=~visual & ~image_tokens & attended,
            template_mask=template & ~image_tokens & attended,
            grids=grids,
        )


class HFEncoderDecoderAdapter(ModelAdapter):
    """Shared behaviour of transformers encoder-decoder VLM adapters.

    Subclasses set ``name`` and ``model_class`` and implement :meth:`decoder_parts`,
    :meth:`format_prompt`, :meth:`image_facts` and :meth:`grids`.

    Attributes:
        passes_logits_to_keep: whether the model's forward accepts ``logits_to_keep``
            (the explanation pass needs no logits; T5's forward does not accept it).
    """

    model_class: str
    passes_logits_to_keep: bool = True

    def __init__(self) -> None:
        self.capture = TransformersAttentionCapture(self.decoder_parts)
        self.locator: VisualTokenLocator = EncoderLocator(self)
        self.gradients = LogitLensGradients()

    # --- what a concrete adapter states ------------------------------------------------

    @abstractmethod
    def grids(self, prepared: PreparedPrompt) -> tuple[Grid, ...]:
        """One grid per image over the encoder sequence's positions."""

    @abstractmethod
    def image_facts(
        self, loaded: LoadedModel, inputs: dict[str, Any], images: Sequence[Any]
    ) -> dict[str, Any]:
        """Facts :meth:`grids` needs, stored in ``prepared.extras``.

        Must include ``"image_token_ids"``: the ids of the image placeholder tokens.
        """

    @abstractmethod
    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The text given to the processor for this prompt."""

    def processor_inputs(
        self, loaded: LoadedModel, text: str, images: Sequence[Any]
    ) -> dict[str, Any]:
        """Run the processor; subclasses add model-specific keyword arguments."""
        return dict(loaded.processor(text=text, images=list(images), return_tensors="pt"))

    def generation_config(self, model: Any) -> Any:
        """The generation config whose decoder start token the decoder begins with."""
        return model.generation_config

    def context_length(self, model: Any) -> int | None:
        """The longest encoder or decoder sequence the language model takes, if bounded."""
        text_config = model.config.get_text_config()
        return getattr(text_config, "max_position_embeddings", None)

    # --- shared behaviour --------------------------------------------------------------

    def load(
        self, path: str, *, device: str | None, dtype: Any, device_map: Any, **options: Any
    ) -> LoadedModel:
        """See :meth:`ModelAdapter.load`."""
        return load_pretrained(
            self, path, device=device, dtype=dtype, device_map=device_map, **options
        )

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
        ids = inputs["input_ids"][0].tolist()
        limit = self.context_length(loaded.model)
        if limit is not None and len(ids) > limit:
            raise InputError(
                f"the {self.name} prompt is {len(ids)} encoder tokens long (image tokens "
                f"included) but the language model takes at most {limit}; shorten the prompt."
            )
        bare_ids = self._processed(loaded, self.format_prompt(loaded, "", len(images)), images)[
            "input_ids"
        ][0].tolist()
        template = template_mask(ids, bare_ids, prompt, loaded.tokenizer)
        moved = to_model(inputs, loaded.model, ("pixel_values",))
        return PreparedPrompt(
            inputs=moved,
            prompt=prompt,
            prompt_text=text,
            image_sizes=tuple(image.size for image in images),
            extras={"template_mask": template, **self.image_facts(loaded, inputs, images)},
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

    def _stop_ids(self, loaded: LoadedModel) -> set[int]:
        config = self.generation_config(loaded.model)
        stops: set[int] = set()
        for value in (config.eos_token_id, config.pad_token_id, loaded.tokenizer.eos_token_id):
            if value is None:
                continue
            stops.update([value] if isinstance(value, int) else value)
        return stops

    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """See :meth:`ModelAdapter.generate`; the decoder prefix is not part of the answer."""
        prefix = self.decoder_prefix(loaded)
        limit = self.context_length(loaded.model)
        if limit is not None:
            max_new_tokens = max(1, min(max_new_tokens, limit - len(prefix)))
        with torch.no_grad():
            # greedy unless loaded with generation="checkpoint" (dexar_core.hf.generation)
            sequences = loaded.model.generate(**prepared.inputs, max_new_tokens=max_new_tokens)
        tokens = sequences[0].tolist()
        # generate() begins the decoder with the start token, and puts a forced BOS
        # after it where the generation config asks for one: neither is the answer.
        skip = len(prefix) if tokens[: len(prefix)] == prefix else 1
        stops = self._stop_ids(loaded)
        answer: list[int] = []
        for token in tokens[skip:]:
            if token in stops:
                break
            answer.append(int(token))
        return answer

    def encode_answer(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer: str
    ) -> list[int]:
        """See :meth:`ModelAdapter.encode_answer`."""
        return list(loaded.tokenizer(answer, add_special_tokens=False)["input_ids"])

    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """See :meth:`ModelAdapter.teacher_forced`.

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
