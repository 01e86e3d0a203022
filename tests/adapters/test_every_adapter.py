"""Every installed adapter passes the conformance suite; every embedded model explains.

Parametrised over the installed catalog, as a third party's adapter would be checked:
one conformance class per adapter whose spec gives a ``conformance`` factory (and per
extra case an adapter needs checked, below), and the embedded-checkpoint checks for every
embedded model that was trained to answer (its training facts carry accuracies).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
import numpy as np
import pytest
import torch
from mirror_inputs import cross_attention_key_positions

from dexar_core.api import explain, load
from dexar_core.datasets.shapes import ShapesDataset
from dexar_plugins.manager import default_catalog
from dexar_plugins.testing.conformance import (
    AdapterConformance,
    ConformanceCase,
    ConformanceSubject,
)

CATALOG = default_catalog()


# --- where the image enters an encoder-decoder's explained keys ---------------------------


def encoder_input_positions(
    subject: ConformanceSubject, encoder_layer: torch.nn.Module
) -> np.ndarray:
    """Encoder positions whose input to ``encoder_layer`` changes with the pixels.

    For an encoder-decoder the explained keys are the encoder's positions, and the image
    enters them through the encoder's input, not through the first decoder layer that the
    suite's default looks at.
    """
    model, inputs = subject.loaded.model, subject.forced.inputs
    seen: list[torch.Tensor] = []
    handle = encoder_layer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            (args[0] if args else kwargs["hidden_states"]).detach()[0]
        ),
        with_kwargs=True,
    )
    pixels = inputs["pixel_values"]
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            model(**inputs)
            model(**{**inputs, "pixel_values": pixels + noise})
    finally:
        handle.remove()
    change = (seen[0] - seen[-1]).abs().amax(dim=-1)
    return np.flatnonzero((change > 1e-6 * float(seen[0].abs().max())).numpy())


def t5_query_positions(subject: ConformanceSubject) -> np.ndarray:
    """BLIP-2 with Flan-T5: the T5 encoder positions the image reaches, the query tokens."""
    encoder = subject.loaded.model.language_model.encoder
    return encoder_input_positions(subject, encoder.block[0])


def florence2_grid_positions(subject: ConformanceSubject) -> np.ndarray:
    """Florence-2: the encoder's image positions, less the global pooled token.

    Florence-2's first image token is the mean of the grid, on no grid cell.
    """
    model = subject.loaded.model
    dependent = encoder_input_positions(subject, model.model.language_model.encoder.layers[0])
    image_tokens = np.flatnonzero(
        subject.prepared.inputs["input_ids"][0].numpy() == model.config.image_token_id
    )
    return np.setdiff1d(dependent, image_tokens[:1])


def blip2_t5_case() -> ConformanceCase:
    """A tiny BLIP-2 with a Flan-T5 language model (the spec's own case has OPT)."""
    from dexar_blip2.adapter import Blip2Adapter
    from dexar_blip2.tiny import build_tiny_blip2

    model, processor = build_tiny_blip2(
        seed=1, language_model="t5", hidden_size=64, num_query_tokens=8
    )
    return ConformanceCase.from_model(
        model,
        processor,
        Blip2Adapter(),
        model_id="tiny-t5",
        image_size=(56, 40),
        seed=1,
        prompt="where is the red shape?",
        answer="top left",
    )


def qwen2_5_vl_case() -> ConformanceCase:
    """The Qwen-VL case on Qwen2.5-VL (the spec's own case is Qwen2-VL)."""
    from dexar_qwen_vl.conformance import conformance_case

    return conformance_case("2.5")


def qwen3_vl_case() -> ConformanceCase:
    """The Qwen-VL case on Qwen3-VL: DeepStack into the first decoder layers."""
    from dexar_qwen_vl.conformance import conformance_case

    return conformance_case("3")


# --- one conformance class per installed adapter and case ---------------------------------


@attrs.frozen
class Case:
    """One conformance run of an adapter: its label, its case and where its image enters.

    ``build_case`` None is the spec's own ``conformance`` factory; ``dependent_positions``
    None is the suite's default (the first decoder layer's input).
    """

    label: str
    build_case: Callable[[], ConformanceCase] | None = None
    dependent_positions: Callable[[ConformanceSubject], np.ndarray] | None = None


CASES: dict[str, tuple[Case, ...]] = {
    "blip2": (
        Case("Opt"),
        Case("T5", build_case=blip2_t5_case, dependent_positions=t5_query_positions),
    ),
    "florence2": (Case("", dependent_positions=florence2_grid_positions),),
    "mllama": (Case("", dependent_positions=cross_attention_key_positions),),
    "qwen_vl": (
        Case("2"),
        Case("2_5", build_case=qwen2_5_vl_case),
        Case("3", build_case=qwen3_vl_case),
    ),
}
"""What an adapter needs checked beyond its spec's case with the suite's defaults."""

CHECKED = sorted(name for name in CATALOG.adapters if CATALOG.adapter(name).conformance)


def conformance_class(adapter_name: str, case: Case) -> type[AdapterConformance]:
    """The suite as a test class for one adapter and one of its cases."""
    namespace: dict[str, object] = {"adapter_name": adapter_name}
    if case.build_case is not None:
        build = case.build_case
        namespace["build_case"] = lambda self: build()
    if case.dependent_positions is not None:
        positions = case.dependent_positions
        namespace["image_dependent_positions"] = lambda self, subject: positions(subject)
    camel = "".join(part.capitalize() for part in adapter_name.split("_"))
    name = f"Test{camel}{case.label}Conformance"
    return type(name, (AdapterConformance,), namespace)


for _adapter in CHECKED:
    for _case in CASES.get(_adapter, (Case(""),)):
        _class = conformance_class(_adapter, _case)
        globals()[_class.__name__] = _class


def test_every_adapter_with_extra_cases_is_installed_and_checked():
    # A renamed adapter would otherwise lose its extra cases without a word.
    assert set(CASES) <= set(CHECKED)
    required = {"llava", "llava_next", "qwen_vl", "blip2", "florence2"}
    assert required | {"gemma3", "mistral3", "llava_onevision"} <= set(CHECKED)


# --- every embedded model that answers -----------------------------------------------------


def training_facts(name: str) -> dict:
    """The embedded model's ``dexar_training.json`` ({} when it ships none)."""
    path = CATALOG.embedded_model(name).path / "dexar_training.json"
    return json.loads(path.read_text()) if path.is_file() else {}


GENERATIVE = sorted(
    name for name in CATALOG.embedded_models if training_facts(name).get("accuracy")
)
GRID_SHAPES = {"shapes-blip2": (8, 8), "shapes-florence2": (8, 8)}
"""The map grid of the embedded models whose grid the tests pin down."""


@pytest.mark.parametrize("name", GENERATIVE)
def test_the_checkpoint_is_registered_small_and_has_a_model_card_with_its_accuracy(name):
    spec = CATALOG.embedded_model(name)
    assert spec.adapter in CATALOG.adapters
    size = sum(path.stat().st_size for path in spec.path.iterdir())
    assert size < 10 * 1024 * 1024
    facts = training_facts(name)
    card = (spec.path / "README.md").read_text()
    assert facts["command"] in card
    for kind in ("color", "shape", "position", "caption"):
        assert f"| {kind} | {facts['accuracy'][kind]:.1%}" in card


@pytest.mark.parametrize("name", GENERATIVE)
def test_the_checkpoint_loads_by_name_and_explains_a_test_image(name):
    spec = CATALOG.embedded_model(name)
    loaded = load(name)
    assert type(loaded.adapter) is type(CATALOG.adapter(spec.adapter).factory())
    item = next(iter(ShapesDataset("test", 4)))
    result = explain(loaded, item.image, item.question, answer=item.answer)
    assert result.model_id == name
    assert result.token_map_stack.shape[1:] == GRID_SHAPES.get(name, result.grids[0].shape)
    assert np.isfinite(result.sequence_map).all()


def test_the_embedded_models_of_every_generative_adapter_are_checked():
    assert {"shapes-llava", "shapes-qwen2vl", "shapes-blip2", "shapes-florence2"} <= set(GENERATIVE)
