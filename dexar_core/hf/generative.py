"""What the decoder-only and the encoder-decoder bases share: load, prepare, generate.

Both read a prompt and its images with the model's processor, state the prompt's
facts (:class:`~dexar_core.records.PromptFacts`: the images' token blocks from the
family's :class:`~dexar_core.hf.facts.ImageTokenRule`, the template mask), generate
greedily until a stop token and encode answers with the tokenizer. They differ in where
the answer sits (after the prompt, or in a decoder after a start prefix), which the two
bases in :mod:`dexar_core.hf.decoder_only` and :mod:`dexar_core.hf.encoder_decoder` say.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import torch

from dexar_core.engine.logit_lens import LogitLensGradients
from dexar_core.hf.capture import TransformersAttentionCapture
from dexar_core.hf.facts import ImageTokenConvention, ImageTokenRule, PromptLocator
from dexar_core.hf.loading import (
    ServedModelType,
    load_pretrained,
    model_class_by_type,
    template_mask,
    to_model,
)
from dexar_core.interfaces import GenerativeAdapter
from dexar_core.records import LoadedModel, PreparedPrompt, PromptFacts


def chat_template_prompt(processor: Any, prompt: str, kinds: Sequence[str]) -> str | None:
    """The processor's chat template for one user turn: the visual inputs (``"image"``
    or ``"video"``, in order), then the text; None where the processor has no template."""
    if not getattr(processor, "chat_template", None):
        return None
    content: list[dict[str, str]] = [{"type": kind} for kind in kinds]
    content.append({"type": "text", "text": prompt})
    turn = [{"role": "user", "content": content}]
    return str(processor.apply_chat_template(turn, add_generation_prompt=True))


def image_prompt(
    processor: Any, prompt: str, num_images: int, fallback: str, *, placeholder: str | None = None
) -> str:
    """The prompt as the model reads it, for ``num_images`` images then the text.

    Kept as given where it already holds ``placeholder`` (by default the processor's
    ``image_token``); else the processor's chat template; else ``fallback``, a format
    string of ``{images}`` (one placeholder per image) and ``{prompt}``.
    """
    image_token = processor.image_token if placeholder is None else placeholder
    if image_token in prompt:
        return prompt
    templated = chat_template_prompt(processor, prompt, ["image"] * num_images)
    if templated is not None:
        return templated
    return fallback.format(images=image_token * num_images, prompt=prompt)


def starts_with_bos(tokenizer: Any, text: str) -> bool:
    """Whether ``text`` begins with the tokenizer's BOS token, as a chat template that
    writes it does: such a text is encoded without special tokens, else it gets two."""
    bos = getattr(tokenizer, "bos_token", None)
    return isinstance(bos, str) and bool(bos) and text.startswith(bos)


class HFGenerativeAdapter(GenerativeAdapter):
    """Shared behaviour of transformers VLM adapters that generate an answer.

    Attributes:
        model_class: the transformers class :meth:`load` calls ``from_pretrained`` on.
        image_tokens: where each image's tokens lie (the common convention by default).
        pixel_keys: the processor outputs cast to the model's dtype.
        dropped_image_processors: image processor class names that published
            ``preprocessor_config.json`` files of this family name and transformers 5
            dropped, each with the class that replaced it (:meth:`load` reads them so).
    """

    model_class: str
    image_tokens: ImageTokenRule = ImageTokenConvention()
    pixel_keys: tuple[str, ...] = ("pixel_values",)
    dropped_image_processors: Mapping[str, str] = MappingProxyType({})
    served_model_type: ServedModelType | None = None
    """The one saved ``model_type`` :meth:`load` accepts (None: any)."""
    model_classes: Mapping[str, str] = MappingProxyType({})
    """For an adapter that serves several model types, the ``model_class`` of each:
    :meth:`load` sets it from the checkpoint's ``config.model_type``."""
    template_writes_bos: bool = False
    """Whether the chat template writes the tokenizer's BOS token itself: then the
    processor adds none to a text that begins with it (:func:`starts_with_bos`)."""

    def __init__(self) -> None:
        self.capture = TransformersAttentionCapture(self.decoder_parts)
        self.locator = PromptLocator()
        self.gradients = LogitLensGradients()

    @abstractmethod
    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The full prompt text with the model's template and image placeholders."""

    def processor_inputs(
        self, loaded: LoadedModel, text: str, images: Sequence[Any]
    ) -> dict[str, Any]:
        """Run the processor with :meth:`processor_options`; an adapter whose processor
        takes its inputs otherwise (videos, nested images) overrides this."""
        options = self.processor_options(loaded, text)
        return dict(
            loaded.processor(text=text, images=list(images), return_tensors="pt", **options)
        )

    def processor_options(self, loaded: LoadedModel, text: str) -> dict[str, Any]:
        """Keyword arguments the processor gets besides the text and the images.

        With :attr:`template_writes_bos`, no second BOS after the template's own; an
        adapter adds its model's own (image processor settings).
        """
        if self.template_writes_bos:
            return {"add_special_tokens": not starts_with_bos(loaded.tokenizer, text)}
        return {}

    def generation_config(self, model: Any) -> Any:
        """The generation config whose stop tokens (and decoder start) generation uses."""
        return model.generation_config

    def load(
        self, path: str, *, device: str | None, dtype: Any, device_map: Any, **options: Any
    ) -> LoadedModel:
        """See :meth:`ModelAdapter.load`: another model type than
        :attr:`served_model_type` is refused, the class is the checkpoint's one of
        :attr:`model_classes`, and the loaded config passes :meth:`check_config`."""
        if self.served_model_type is not None:
            self.served_model_type.refuse_other(self.name, path)
        if self.model_classes:
            self.model_class = model_class_by_type(self.name, path, self.model_classes, **options)
        loaded = load_pretrained(
            self, path, device=device, dtype=dtype, device_map=device_map, **options
        )
        self.check_config(loaded.model.config)
        return loaded

    def check_config(self, config: Any) -> None:
        """Refuse a loaded model whose config this adapter cannot explain; by default
        every config passes.

        Raises:
            UnsupportedModelError: what the config holds and what to use instead.
        """

    def encode_answer(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer: str
    ) -> list[int]:
        """See :meth:`ModelAdapter.encode_answer`."""
        return list(loaded.tokenizer(answer, add_special_tokens=False)["input_ids"])

    def prepared(
        self,
        loaded: LoadedModel,
        images: Sequence[Any],
        prompt: str,
        *,
        text: str,
        inputs: Mapping[str, Any],
        bare_inputs: Mapping[str, Any],
    ) -> PreparedPrompt:
        """The prepared prompt of processed ``inputs``, with its facts.

        Args:
            loaded: the model.
            images: the images (or videos) in order.
            prompt: the user's prompt.
            text: the full text the processor read.
            inputs: the processor's outputs for ``text``.
            bare_inputs: its outputs for the template with an empty prompt, which tell
                the template's tokens from the prompt's.
        """
        ids = inputs["input_ids"][0].tolist()
        bare_ids = bare_inputs["input_ids"][0].tolist()
        config = loaded.model.config
        facts = PromptFacts(
            images=self.image_tokens.image_facts(loaded, inputs, images),
            template_mask=template_mask(ids, bare_ids, prompt, loaded.tokenizer),
            image_token_ids=self.image_tokens.image_token_ids(config),
        )
        facts = self.completed_facts(loaded, inputs, facts)
        return PreparedPrompt(
            inputs=to_model(dict(inputs), loaded.model, self.pixel_keys),
            prompt=prompt,
            prompt_text=text,
            image_sizes=tuple(image.size for image in images),
            facts=facts,
        )

    def completed_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], facts: PromptFacts
    ) -> PromptFacts:
        """The prompt's facts as the family states them; by default the common ones.

        :meth:`prepared` states the images' token blocks, the template mask and the
        placeholder ids from the processor's ``inputs``; an adapter whose model needs
        more (tokens of an image block on no patch, the key length of a
        cross-attention) returns them added here.
        """
        return facts

    def prepare_perturbed(
        self, loaded: LoadedModel, prepared: PreparedPrompt, images: Sequence[Any]
    ) -> PreparedPrompt:
        """The prompt's inputs with the pixels of other still images of the same sizes.

        See :meth:`GenerativeAdapter.prepare_perturbed`. The text is not tokenized again:
        only the image processor reads the new images, and its outputs (``pixel_values``,
        a grid such as ``image_grid_thw``) replace the prompt's. An adapter whose
        :meth:`processor_inputs` gives the image processor options of its own
        overrides this (tests/evaluation/test_perturbation_batches.py checks each
        built-in family against a full :meth:`prepare`).
        """
        image_processor = loaded.processor.image_processor
        pixels = dict(image_processor(images=list(images), return_tensors="pt"))
        return attrs.evolve(
            prepared,
            inputs={**prepared.inputs, **to_model(pixels, loaded.model, self.pixel_keys)},
            image_sizes=tuple(image.size for image in images),
        )

    def greedy_sequence(
        self, loaded: LoadedModel, prepared: PreparedPrompt, max_new_tokens: int, **options: Any
    ) -> list[int]:
        """generate's sequence (no grad), with ``options`` passed to it.

        The decoding is the model's generation config: greedy unless the caller loaded it
        with ``generation="checkpoint"`` (:mod:`dexar_core.hf.generation`).
        """
        return self.greedy_sequences(loaded, prepared.inputs, max_new_tokens, **options)[0]

    def greedy_sequences(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], max_new_tokens: int, **options: Any
    ) -> list[list[int]]:
        """generate's sequences (no grad) for a batch of ``inputs``, one list per row."""
        with torch.no_grad():
            sequences = loaded.model.generate(**inputs, max_new_tokens=max_new_tokens, **options)
        return [[int(token) for token in row] for row in sequences.tolist()]

    def until_stop(self, loaded: LoadedModel, tokens: Sequence[int]) -> list[int]:
        """The answer: ``tokens`` up to the first end-of-sequence or padding token."""
        config = self.generation_config(loaded.model)
        stops: set[int] = set()
        for value in (config.eos_token_id, config.pad_token_id, loaded.tokenizer.eos_token_id):
            if value is not None:
                stops.update([value] if isinstance(value, int) else value)
        answer: list[int] = []
        for token in tokens:
            if token in stops:
                break
            answer.append(token)
        return answer
