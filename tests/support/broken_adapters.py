"""Deliberately broken adapters the conformance tests must catch, and their subjects."""

from __future__ import annotations

from contextlib import contextmanager

import attrs
from llava_fixtures import noise_image

from dexar_core.engine.logit_lens import LogitLensGradients
from dexar_core.hf.capture import TransformersAttentionCapture
from dexar_core.records import LoadedModel
from dexar_core.values import AdapterSpec
from dexar_llava.adapter import LlavaAdapter
from dexar_llava.tiny import build_tiny_llava
from dexar_plugins.testing.conformance import ConformanceCase, ConformanceSubject


class LeakyCapture(TransformersAttentionCapture):
    """Forgets to remove a hook it installs on the model."""

    @contextmanager
    def capture(self, model, layers, query_rows):
        model.register_forward_hook(lambda module, args, output: None)
        with super().capture(model, layers, query_rows) as leaves:
            yield leaves


class LeakyAdapter(LlavaAdapter):
    def __init__(self):
        super().__init__()
        self.capture = LeakyCapture(self.decoder_parts)


class CroppedGridTokens:
    """LLaVA's image tokens with the last row of patches dropped from each grid."""

    def image_token_ids(self, config):
        return LlavaAdapter.image_tokens.image_token_ids(config)

    def image_facts(self, loaded, inputs, images):
        return tuple(
            attrs.evolve(image, rows=image.rows - 1, positions=image.positions[: -image.cols])
            for image in LlavaAdapter.image_tokens.image_facts(loaded, inputs, images)
        )


class CroppedGridAdapter(LlavaAdapter):
    """Drops the last row of patches from each grid."""

    image_tokens = CroppedGridTokens()


class NoFinalNormGradients(LogitLensGradients):
    """Forgets the final norm before the head: wrong logit-lens targets."""

    def logit_lens_targets(self, parts, layer_outputs, token_ids):
        return super().logit_lens_targets(
            attrs.evolve(parts, final_norm=None), layer_outputs, token_ids
        )


class WrongGradientsAdapter(LlavaAdapter):
    def __init__(self):
        super().__init__()
        self.gradients = NoFinalNormGradients()


def subject_for(adapter_class, spec=None):
    spec = spec or AdapterSpec(name="llava", model_types=("llava",), factory=adapter_class)

    def build():
        model, processor = build_tiny_llava(seed=1, image_size=32, hidden_size=64)
        return ConformanceCase(
            loaded=LoadedModel(
                model=model, processor=processor, adapter=adapter_class(), model_id="tiny"
            ),
            images=noise_image(2, (40, 56)),
            prompt="what color is the circle?",
            answer="red circle",
        )

    return ConformanceSubject(spec, build)


class Renamed(LlavaAdapter):
    name = "not-llava"
