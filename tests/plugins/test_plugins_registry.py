"""Choosing the adapter for a model, and the registry's lookups and listings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import dexar_plugins
from dexar_core.errors import InputError, UnsupportedModelError
from dexar_core.values import AdapterSpec, EmbeddedModelSpec, MethodSpec
from dexar_plugins import (
    Catalog,
    LoadedPlugin,
    PluginWarning,
    Registration,
    resolve_adapter,
)


def adapter(name, *, model_types=(), architectures=(), priority=0):
    return AdapterSpec(
        name=name,
        model_types=model_types,
        architectures=architectures,
        factory=dict,
        priority=priority,
    )


def catalog_of(*adapters, methods=(), models=()):
    """A catalog with these specs, all from one fake plugin of distribution dexar-test."""
    plugin = LoadedPlugin(
        name="test",
        distribution="dexar-test",
        version="9.9",
        adapters=adapters,
        methods=methods,
        embedded_models=models,
    )

    def registrations(specs):
        return {
            spec.name: Registration(
                spec=spec, plugin="test", distribution="dexar-test", version="9.9"
            )
            for spec in specs
        }

    return Catalog(
        plugins=(plugin,),
        adapters=registrations(adapters),
        methods=registrations(methods),
        embedded_models=registrations(models),
    )


LLAVA = adapter("llava", model_types=("llava",), architectures=("LlavaForConditionalGeneration",))
QWEN = adapter("qwen", model_types=("qwen2_vl",), architectures=("Qwen2VLModel",))
CATALOG = catalog_of(LLAVA, QWEN)


class PreTrainedModel:
    pass


class Qwen2VLModel(PreTrainedModel):
    pass


class Qwen2VLForConditionalGeneration(Qwen2VLModel):
    def __init__(self, config):
        self.config = config


def test_resolves_a_model_type_string():
    assert resolve_adapter("llava", CATALOG) is LLAVA


def test_resolves_a_config_by_model_type():
    config = SimpleNamespace(model_type="qwen2_vl", architectures=None)

    assert resolve_adapter(config, CATALOG) is QWEN


def test_resolves_a_config_by_its_architectures():
    config = SimpleNamespace(
        model_type="llava_custom", architectures=["LlavaForConditionalGeneration"]
    )

    assert resolve_adapter(config, CATALOG) is LLAVA


def test_resolves_a_model_by_a_class_it_derives_from():
    model = Qwen2VLForConditionalGeneration(SimpleNamespace(model_type="renamed"))

    assert resolve_adapter(model, CATALOG) is QWEN


def test_resolves_a_model_without_config_by_its_class():
    assert resolve_adapter(Qwen2VLModel(), CATALOG) is QWEN


def test_highest_priority_wins_then_the_smallest_name():
    generic = adapter("generic", model_types=("llava",), priority=-1)
    tuned_b = adapter("tuned-b", architectures=("LlavaForConditionalGeneration",), priority=5)
    tuned_a = adapter("tuned-a", model_types=("llava",), priority=5)
    catalog = catalog_of(generic, LLAVA, tuned_b, tuned_a)
    config = SimpleNamespace(model_type="llava", architectures=["LlavaForConditionalGeneration"])

    with pytest.warns(PluginWarning, match="priorities tie at 5 and 'tuned-a' sorts before"):
        assert resolve_adapter(config, catalog) is tuned_a
    with pytest.warns(PluginWarning, match="its priority 0 is the highest, over adapter 'gen"):
        assert resolve_adapter("llava", catalog_of(generic, LLAVA)) is LLAVA


def test_unsupported_model_message_lists_adapters_and_how_to_get_one():
    config = SimpleNamespace(
        model_type="florence2", architectures=["Florence2ForConditionalGeneration"]
    )

    with pytest.raises(UnsupportedModelError) as raised:
        resolve_adapter(config, CATALOG)

    message = str(raised.value)
    assert "model_type 'florence2'" in message
    assert "Florence2ForConditionalGeneration" in message
    assert "llava: model types llava; classes LlavaForConditionalGeneration" in message
    assert "qwen: model types qwen2_vl" in message
    assert "pip install dexar-florence2" in message
    assert "docs/adapters.md" in message


def test_unsupported_model_message_without_any_adapter():
    with pytest.raises(UnsupportedModelError, match="Installed adapters: none"):
        resolve_adapter(object(), catalog_of())


def test_lookups_and_listings_by_name():
    method = MethodSpec(name="rollout", factory=dict, needs_gradients=False)
    model = EmbeddedModelSpec(name="shapes-llava", path="ckpt", adapter="llava")
    catalog = catalog_of(QWEN, LLAVA, methods=(method,), models=(model,))

    assert dexar_plugins.get_adapter("qwen", catalog) is QWEN
    assert dexar_plugins.get_method("rollout", catalog) is method
    assert dexar_plugins.get_embedded_model("shapes-llava", catalog) is model
    assert [reg.name for reg in dexar_plugins.list_adapters(catalog)] == ["llava", "qwen"]
    assert [reg.spec for reg in dexar_plugins.list_methods(catalog)] == [method]
    models = dexar_plugins.list_embedded_models(catalog)
    assert [reg.distribution for reg in models] == ["dexar-test"]
    with pytest.raises(InputError, match="installed methods are: rollout"):
        dexar_plugins.get_method("dexar_typo", catalog)


def test_inventory_lists_the_plugin_then_what_it_registered():
    catalog = catalog_of(LLAVA, methods=(MethodSpec(name="m", factory=dict),))
    rows = dexar_plugins.plugin_inventory(catalog)

    assert [(row.name, row.kind, row.status) for row in rows] == [
        ("test", "plugin", "ok"),
        ("llava", "adapter", "ok"),
        ("m", "method", "ok"),
    ]


def test_overlapping_adapters_are_listed_with_both_distributions_and_the_reason():
    greedy = adapter("greedy", model_types=("llava", "qwen2_vl"), priority=10)
    plugins = (
        LoadedPlugin(name="mine", distribution="dexar-greedy", version="2.0", adapters=(greedy,)),
        LoadedPlugin(name="core", distribution="dexar", version="0.1", adapters=(LLAVA,)),
    )
    catalog = Catalog(
        plugins=plugins,
        adapters={
            spec.name: Registration(
                spec=spec,
                plugin=plugin.name,
                distribution=plugin.distribution,
                version=plugin.version,
            )
            for plugin in plugins
            for spec in plugin.adapters
        },
    )

    rows = {(row.kind, row.name): row for row in dexar_plugins.plugin_inventory(catalog)}
    (overlap,) = dexar_plugins.adapter_overlaps(catalog)

    assert overlap.served == "model type 'llava'"
    assert [claim.name for claim in overlap.claims] == ["greedy", "llava"]
    assert "from dexar-greedy 2.0 (priority 10)" in overlap.message
    assert "from dexar 0.1 (priority 0)" in overlap.message
    assert "'greedy' is chosen because its priority 10 is the highest" in overlap.message
    assert rows[("adapter", "greedy")].status == "overlaps"
    assert rows[("adapter", "llava")].status == "overlaps"
    with pytest.warns(PluginWarning, match="using adapter 'greedy' from dexar-greedy 2.0"):
        assert resolve_adapter("llava", catalog) is greedy
