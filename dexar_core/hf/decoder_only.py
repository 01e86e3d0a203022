"""A generic adapter base for Hugging Face decoder-only VLMs (LLaVA, Qwen-VL, ...).

The image tokens sit inside the prompt; the explained attention is the language
model's self-attention; the key sequence is prompt + answer. A concrete adapter
states where the decoder lives and lays the image tokens on grids; everything else
(prompting, generation, teacher forcing, the template mask) is shared here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dexar_core.engine.logit_lens import LogitLensGradients
from dexar_core.errors import InputError
from dexar_core.hf.capture import TransformersAttentionCapture
from dexar_core.hf.loading import load_pretrained, template_mask, to_model
from dexar_core.images import Video
from dexar_core.interfaces import ModelAdapter, VisualTokenLocator
from dexar_core.records import DecoderParts, LoadedModel, PreparedPrompt, TeacherForcedPass
from dexar_core.values import Grid, VisualLayout


class PromptLocator(VisualTokenLocator):
    """Finds the image tokens of a decoder-only prompt; the adapter lays out the grids."""

    def __init__(self, adapter: HFDecoderOnlyAdapter) -> None:
        self._adapter = adapter

    def locate(self, prepared: PreparedPrompt) -> VisualLayout:
        """See :meth:`VisualTokenLocator.locate`."""
        input_ids = prepared.inputs["input_ids"][0].cpu().numpy()
        grids = self._adapter.grids(prepared)
        visual = np.zeros(input_ids.size, dtype=bool)
        for grid in grids:
            visual[grid.positions] = True
        image_tokens = np.isin(input_ids, list(prepared.extras["image_token_ids"]))
        template = np.asarray(prepared.extras["template_mask"], dtype=bool)
        return VisualLayout(
            visual_mask=visual,
            # image tokens that lie on no grid (a CLS feature) are neither visual nor text
            text_mask=~visual & ~image_tokens,
            template_mask=template & ~image_tokens,
            grids=grids,
        )


class HFDecoderOnlyAdapter(ModelAdapter):
    """Shared behaviour of transformers decoder-only VLM adapters.

    Subclasses set ``name`` and ``model_class`` and implement :meth:`language_model`,
    :meth:`format_prompt`, :meth:`image_facts` and :meth:`grids`. An adapter whose
    model takes videos sets ``accepts_video`` and overrides :meth:`format_visual_prompt`.
    """

    model_class: str
    accepts_video: bool = False
    prompt_cache: bool = True
    """Whether the explanation may run the prompt once without grad into a KV cache and
    the answer rows after it (``TeacherForcedPass.prompt_inputs``). Exact where the
    prompt's last position, run again as the first query row after the cache, sees the
    keys it sees in the full pass: any causal decoder, and a prefix-LM unless a sliding
    window is shorter than the prompt (the PaliGemma example checks that). An adapter
    whose model breaks it sets this to False."""

    def __init__(self) -> None:
        self.capture = TransformersAttentionCapture(self.decoder_parts)
        self.locator = PromptLocator(self)
        self.gradients = LogitLensGradients()

    # --- what a concrete adapter states ------------------------------------------------

    @abstractmethod
    def language_model(self, model: Any) -> Any:
        """The decoder stack (a module with ``layers`` and ``norm``)."""

    @abstractmethod
    def grids(self, prepared: PreparedPrompt) -> tuple[Grid, ...]:
        """One grid per image (or tile or frame group) over the prompt's positions."""

    @abstractmethod
    def image_facts(
        self, loaded: LoadedModel, inputs: dict[str, Any], images: Sequence[Any]
    ) -> dict[str, Any]:
        """Facts :meth:`grids` needs, stored in ``prepared.extras``.

        Must include ``"image_token_ids"``: the ids of the placeholder tokens the
        processor expands for images.
        """

    @abstractmethod
    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The full prompt text with the model's template and image placeholders."""

    def format_visual_prompt(self, loaded: LoadedModel, prompt: str, visuals: Sequence[Any]) -> str:
        """The full prompt for these visual inputs (images and ``Video`` s, in order).

        The default is :meth:`format_prompt` with their count; adapters whose models
        take videos override it to place each kind's placeholder.
        """
        return self.format_prompt(loaded, prompt, len(visuals))

    def processor_inputs(
        self, loaded: LoadedModel, text: str, images: Sequence[Any]
    ) -> dict[str, Any]:
        """Run the processor; subclasses add model-specific keyword arguments."""
        return dict(loaded.processor(text=text, images=list(images), return_tensors="pt"))

    # --- shared behaviour --------------------------------------------------------------

    def load(
        self, path: str, *, device: str | None, dtype: Any, device_map: Any, **options: Any
    ) -> LoadedModel:
        """See :meth:`ModelAdapter.load`."""
        return load_pretrained(
            self, path, device=device, dtype=dtype, device_map=device_map, **options
        )

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """See :meth:`ModelAdapter.prepare`."""
        videos = sum(isinstance(item, Video) for item in images)
        if videos and not self.accepts_video:
            raise InputError(
                f"the {self.name} adapter explains images only, but {videos} video(s) were "
                "given; pass images, or a model whose adapter takes videos (e.g. Qwen2-VL)."
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
        bare_ids = self.processor_inputs(loaded, bare, images)["input_ids"][0].tolist()
        ids = inputs["input_ids"][0].tolist()
        template = template_mask(ids, bare_ids, prompt, loaded.tokenizer)
        moved = to_model(inputs, loaded.model, ("pixel_values", "pixel_values_videos"))
        return PreparedPrompt(
            inputs=moved,
            prompt=prompt,
            prompt_text=text,
            image_sizes=tuple(image.size for image in images),
            extras={"template_mask": template, **self.image_facts(loaded, inputs, images)},
        )

    def _stop_ids(self, loaded: LoadedModel) -> set[int]:
        config = loaded.model.generation_config
        stops: set[int] = set()
        for value in (config.eos_token_id, config.pad_token_id, loaded.tokenizer.eos_token_id):
            if value is None:
                continue
            stops.update([value] if isinstance(value, int) else value)
        return stops

    def generate(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int
    ) -> list[int]:
        """See :meth:`ModelAdapter.generate`."""
        prompt_length = prepared.inputs["input_ids"].shape[1]
        with torch.no_grad():
            # An image placeholder in the answer would break the model's own bookkeeping of
            # image features (an untrained model can emit one): it is never generated.
            # The decoding is the model's generation config: greedy unless the caller
            # loaded it with generation="checkpoint" (dexar_core.hf.generation).
            sequences = loaded.model.generate(
                **prepared.inputs,
                max_new_tokens=max_new_tokens,
                suppress_tokens=sorted(prepared.extras["image_token_ids"]),
            )
        stops = self._stop_ids(loaded)
        answer: list[int] = []
        for token in sequences[0, prompt_length:].tolist():
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
        """See :meth:`ModelAdapter.teacher_forced`."""
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
        """Inputs other than ids and mask that grow with the answer (e.g. token types)."""
        return {}

    def decoder_parts(self, model: Any) -> DecoderParts:
        """See :meth:`ModelAdapter.decoder_parts`."""
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
