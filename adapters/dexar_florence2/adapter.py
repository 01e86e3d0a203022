"""The Florence-2 adapter: ``Florence2ForConditionalGeneration`` (native in transformers 5).

Florence-2 is an encoder-decoder: a DaViT vision tower turns the image into a grid of
features, the projector prepends one **global pooled token** (the mean over the grid) and
the BART encoder reads ``[global, grid..., <s>, task prompt..., </s>]``; the BART decoder
generates the answer from ``decoder_start_token_id`` (``</s>``). What dexar explains
(docs/method.md §8):

- the attention: the decoder's **cross-attention** (``encoder_attn``) of each answer
  position to the encoder sequence;
- V: the encoder positions of the grid's image tokens. The global pooled token lies on no
  grid cell: it is in neither V nor the text set;
- T_set: the encoder's text positions (``<s>``, the task prompt, ``</s>``);
- the grid: the DaViT output, ``h x w`` from the convolutional stages' strides, row-major;
- the targets: s^{l,t} from decoder layer l. BART layers are **post-LN**: each layer ends
  with its own ``final_layer_norm`` and the decoder has no norm after the stack, so y^l is
  already normalised exactly as the LM head sees the last layer's output. No norm is
  applied (applying one would normalise twice). The head is the tied ``lm_head``; a
  ``final_logits_bias`` is added when the model class has one (the original remote-code
  Florence-2 registered one, all zeros; the transformers 5 class has none).

With ``Florence2Adapter(through_encoder="rollout")`` (or ``"gradient"``) the relevance
over V is carried back through the BART encoder's self-attention to the encoder's input
image tokens, the DaViT grid cells (docs/method.md §8.1, docs/encoder_decoder.md).

Task prompts (``<CAPTION>``, ``<DETAILED_CAPTION>``, ...) pass through to the processor,
which expands them into its instruction text; free text passes through unchanged. A
task token the processor does not know is refused with the list of known ones.
"""

from __future__ import annotations

import re
from typing import Any

from dexar_core.errors import InputError
from dexar_core.hf.encoder_decoder import HFEncoderDecoderAdapter
from dexar_core.hf.facts import ImageTokenConvention
from dexar_core.records import DecoderParts, LoadedModel

TASK_TOKEN = re.compile(r"<[A-Z][A-Z0-9_]*>")
"""What a Florence-2 task token looks like: ``<CAPTION>``, ``<OD>``, ..."""


def known_tasks(processor: Any) -> tuple[str, ...]:
    """The task tokens the processor expands, sorted."""
    tasks = {
        *getattr(processor, "task_prompts_without_inputs", {}),
        *getattr(processor, "task_prompts_with_input", {}),
    }
    return tuple(sorted(tasks))


def davit_grid(vision_config: Any, height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the DaViT output for an input of ``height x width`` pixels.

    Each stage is a strided convolution (kernel ``patch_size``, stride ``patch_stride``,
    padding ``patch_padding``); the blocks after it keep the size.
    """
    rows, cols = height, width
    for kernel, stride, padding in zip(
        vision_config.patch_size, vision_config.patch_stride, vision_config.patch_padding
    ):
        rows = (rows + 2 * padding - kernel) // stride + 1
        cols = (cols + 2 * padding - kernel) // stride + 1
    return rows, cols


class Florence2Adapter(HFEncoderDecoderAdapter):
    """Adapter for ``Florence2ForConditionalGeneration``."""

    name = "florence2"
    model_class = "Florence2ForConditionalGeneration"
    # the first image token is the global pooled one: it lies on no grid cell
    image_tokens = ImageTokenConvention(
        grid=lambda config, height, width: davit_grid(config.vision_config, height, width),
        leading_tokens=lambda config: 1,
        hint=(
            "the processor's image_seq_length does not match the model's vision tower; "
            "save processor and model together"
        ),
    )

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The prompt as given: task tokens are expanded by the processor itself.

        Raises:
            InputError: for several images (Florence-2 reads one), or a task token the
                processor does not know.
        """
        if num_images != 1:
            raise InputError(
                f"Florence-2 reads exactly one image per prompt; {num_images} were given. "
                "Explain each image separately."
            )
        tasks = known_tasks(loaded.processor)
        unknown = [token for token in TASK_TOKEN.findall(prompt) if token not in tasks]
        if unknown:
            raise InputError(
                f"Florence-2 prompt {prompt!r} holds the task token(s) {unknown} that this "
                f"processor does not know; use one of {list(tasks)} or free text."
            )
        return prompt

    def decoder_parts(self, model: Any) -> DecoderParts:
        """BART decoder layers, their cross-attention, no final norm (post-LN), tied head."""
        decoder = model.model.language_model.decoder
        head = model.get_output_embeddings()
        bias = getattr(model, "final_logits_bias", None)
        if bias is None:
            bias = getattr(head, "bias", None)
        return DecoderParts(
            layers=list(decoder.layers),
            attentions=[layer.encoder_attn for layer in decoder.layers],
            # post-LN: every layer's output already went through its final_layer_norm;
            # an mBART-style decoder would have a norm after the stack (layer_norm).
            final_norm=getattr(decoder, "layer_norm", None),
            lm_head_weight=head.weight,
            lm_head_bias=bias,
        )

    def encoder_self_attentions(self, model: Any) -> list[Any]:
        """The BART encoder layers' self-attention, for ``through_encoder``."""
        return [layer.self_attn for layer in model.model.language_model.encoder.layers]

    def describe(self) -> dict[str, Any]:
        """Facts recorded in each Explanation's metadata."""
        return {
            "adapter": self.name,
            "explained_attention": "decoder cross-attention to the encoder sequence",
            "visual_set": "DaViT grid tokens (the global pooled token is left out)",
            "logit_lens_norm": "none: post-LN decoder layers",
        }
