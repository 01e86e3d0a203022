"""A generic adapter base for Hugging Face decoder-only VLMs (LLaVA, Qwen-VL, ...).

The image tokens sit inside the prompt; the explained attention is the language
model's self-attention; the key sequence is prompt + answer. A concrete adapter
writes its prompt format and states, as data, where the decoder lives and how its image
tokens lie (:mod:`dexar_core.hf.facts`); generation, teacher forcing and the template
mask are shared here and in :mod:`dexar_core.hf.generative`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from types import MappingProxyType
from typing import Any

import torch

from dexar_core.errors import InputError
from dexar_core.hf.batched import UnbatchableInputs, batch_units, batched_free_runs, single_beam
from dexar_core.hf.generative import HFGenerativeAdapter
from dexar_core.images import Video
from dexar_core.records import (
    DecoderParts,
    ExplainedUnits,
    LoadedModel,
    PreparedPrompt,
    PromptPrefill,
    TeacherForcedPass,
)


class HFDecoderOnlyAdapter(HFGenerativeAdapter):
    """Shared behaviour of transformers decoder-only VLM adapters.

    An adapter sets ``name`` and ``model_class``, implements :meth:`format_prompt`, and
    states what differs from the defaults as data: ``image_tokens`` (an
    :class:`~dexar_core.hf.facts.ImageTokenConvention`, or an ``ImageTokenRule`` of its
    own) and ``language_model_path``. An adapter whose model takes videos sets
    ``accepts_video`` and overrides :meth:`format_visual_prompt`.
    """

    language_model_path: str = "model.language_model"
    """Where the decoder stack (a module with ``layers`` and ``norm``) sits in the model."""
    accepts_video: bool = False
    pixel_keys: tuple[str, ...] = ("pixel_values", "pixel_values_videos")
    batches = True
    padded_keys: tuple[str, ...] = (
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "mm_token_type_ids",
    )
    """The inputs over the prompt's tokens, padded on the left in a batch (the others,
    pixels and grids, are concatenated; :mod:`dexar_core.hf.batched`)."""
    answer_token_types: Mapping[str, int] = MappingProxyType({})
    """The token-type inputs the model takes (``token_type_ids``, ...), each with the type
    of an answer token: the teacher-forced pass grows them over the answer."""
    prompt_cache: bool = True
    """Whether the explanation may run the prompt once without grad into a KV cache and
    the answer rows after it (``TeacherForcedPass.prompt_inputs``). Exact where the
    prompt's last position, run again as the first query row after the cache, sees the
    keys it sees in the full pass: any causal decoder, and a prefix-LM unless a sliding
    window is shorter than the prompt (the PaliGemma example checks that). An adapter
    whose model breaks it sets this to False."""

    def language_model(self, model: Any) -> Any:
        """The decoder stack at ``language_model_path``."""
        return attrgetter(self.language_model_path)(model)

    def format_visual_prompt(self, loaded: LoadedModel, prompt: str, visuals: Sequence[Any]) -> str:
        """The full prompt for these visual inputs (images and ``Video`` s, in order).

        The default is :meth:`format_prompt` with their count; adapters whose models
        take videos override it to place each kind's placeholder.
        """
        return self.format_prompt(loaded, prompt, len(visuals))

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """See :meth:`ModelAdapter.prepare`."""
        videos = sum(isinstance(item, Video) for item in images)
        if videos and not self.accepts_video:
            raise InputError(
                f"the {self.name} adapter explains images only, but {videos} video(s) were "
                "given; pass images, or a model whose adapter takes videos (`dexar plugins` lists "
                "the adapters)."
            )
        text = self.format_visual_prompt(loaded, prompt, images)
        bare = self.format_visual_prompt(loaded, "", images)
        try:
            inputs = self.processor_inputs(loaded, text, images)
        except ValueError as error:
            raise InputError(
                f"the {self.name} processor rejected the prompt and {len(images)} image(s): "
                f"{str(error).rstrip('.')}. Put exactly one image placeholder per image in "
                "the prompt, or none to let dexar apply the model's template."
            ) from error
        bare_inputs = self.processor_inputs(loaded, bare, images)
        return self.prepared(
            loaded, images, prompt, text=text, inputs=inputs, bare_inputs=bare_inputs
        )

    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """See :meth:`GenerativeAdapter.generate`."""
        return self.free_run(loaded, prepared, max_new_tokens)[0]

    def free_run(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> tuple[list[int], PromptPrefill | None]:
        """See :meth:`GenerativeAdapter.free_run`: the prefill is kept where
        :attr:`prompt_cache` lets the explanation continue from it.

        The cache is made without a config, like the engine's own prompt cache: every
        layer keeps all its keys (a config-built cache's sliding-window layers drop old
        ones). A beam search (the checkpoint's own generation config, when asked for)
        keeps one cache row per beam: only a single-sequence run's cache is the prompt's
        prefill. An image placeholder in the answer would break the model's own
        bookkeeping of image features (an untrained model can emit one): it is never
        generated.
        """
        keep = self.prompt_cache and single_beam(loaded)
        return batched_free_runs(self, loaded, [prepared], max_new_tokens, keep_prefill=keep)[0]

    def batched_units(
        self,
        loaded: LoadedModel,
        prepared: Sequence[PreparedPrompt],
        answers: Sequence[str | None],
        *,
        max_new_tokens: int,
    ) -> list[ExplainedUnits | InputError]:
        """See :meth:`ModelAdapter.batched_units`: free runs in one ``generate``, given
        answers' prompts in one prefill (:mod:`dexar_core.hf.batched`); items whose
        inputs cannot form one batch run one at a time."""
        try:
            return batch_units(self, loaded, prepared, answers, max_new_tokens)
        except UnbatchableInputs:
            return super().batched_units(loaded, prepared, answers, max_new_tokens=max_new_tokens)

    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """See :meth:`GenerativeAdapter.teacher_forced`."""
        prompt_ids = prepared.inputs["input_ids"]
        answer = torch.tensor([list(answer_ids)], dtype=prompt_ids.dtype, device=prompt_ids.device)
        inputs = dict(prepared.inputs)
        inputs["input_ids"] = torch.cat([prompt_ids, answer], dim=1)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        inputs.update(self.extend_inputs(prepared, len(answer_ids)))
        inputs["use_cache"] = False
        inputs["logits_to_keep"] = 1
        prompt_length = prompt_ids.shape[1]
        return TeacherForcedPass(
            inputs=inputs,
            query_rows=[prompt_length - 1 + t for t in range(len(answer_ids))],
            answer_ids=answer_ids,
            key_length=prompt_length + len(answer_ids),
            prompt_inputs=dict(prepared.inputs) if self.prompt_cache else None,
        )

    def extend_inputs(self, prepared: PreparedPrompt, answer_length: int) -> dict[str, Any]:
        """Inputs other than ids and mask that grow with the answer: by default the token
        types :attr:`answer_token_types` names, each grown by the answer's type."""
        extended = {}
        for key, token_type in self.answer_token_types.items():
            types = prepared.inputs[key]
            answer = torch.full(
                (types.shape[0], answer_length), token_type, dtype=types.dtype, device=types.device
            )
            extended[key] = torch.cat([types, answer], dim=1)
        return extended

    def decoder_parts(self, model: Any) -> DecoderParts:
        """See :meth:`GenerativeAdapter.decoder_parts`."""
        decoder = self.language_model(model)
        head = model.get_output_embeddings()
        return DecoderParts(
            layers=list(decoder.layers),
            attentions=[layer.self_attn for layer in decoder.layers],
            final_norm=decoder.norm,
            lm_head_weight=head.weight,
            lm_head_bias=getattr(head, "bias", None),
            logit_softcap=getattr(model.config.get_text_config(), "final_logit_softcapping", None),
        )
