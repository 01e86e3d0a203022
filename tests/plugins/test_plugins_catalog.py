"""The catalog: names indexed with their plugin, conflicts, lookups, the default catalog."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from dexar_core.errors import InputError, PluginConflictError
from dexar_plugins import (
    PluginSettings,
    PluginWarning,
    build_catalog,
    default_catalog,
    plugin_inventory,
    reset_default_catalog,
    resolve_adapter,
)

ONLY_FAKES = PluginSettings(allow_list=("one", "two", "extras"))

METHOD_AND_MODEL_PLUGIN = """
    from dexar_core.values import EmbeddedModelSpec, MethodSpec
    from dexar_plugins import hookimpl

    @hookimpl
    def dexar_methods():
        yield MethodSpec(name="fake-method", factory=dict, needs_gradients=False)

    @hookimpl
    def dexar_embedded_models():
        yield EmbeddedModelSpec(name="shapes-fake", path="ckpt", adapter="fake-vlm")
"""


@pytest.fixture
def twin_adapters(fake_site):
    """Two distributions whose plugins both register an adapter named ``twin``."""
    fake_site.add_adapter_plugin("one", adapter="twin", distribution="dexar-one", version="1.0")
    fake_site.add_adapter_plugin("two", adapter="twin", distribution="dexar-two", version="2.0")
    return fake_site


def test_catalog_remembers_the_plugin_behind_each_name(fake_site):
    fake_site.add_plugin("extras", METHOD_AND_MODEL_PLUGIN, distribution="dexar-extras")

    catalog = build_catalog(ONLY_FAKES)

    registration = catalog.methods["fake-method"]
    assert (registration.plugin, registration.distribution) == ("extras", "dexar-extras")
    assert catalog.method("fake-method").needs_gradients is False
    model = catalog.embedded_model("shapes-fake")
    assert (model.path, model.adapter) == (Path("ckpt"), "fake-vlm")
    assert not catalog.broken


def test_two_plugins_claiming_one_adapter_name_conflict(twin_adapters):
    with pytest.warns(PluginWarning, match="twin"):
        catalog = build_catalog(ONLY_FAKES)

    (conflict,) = catalog.conflicts
    assert (conflict.kind, conflict.name) == ("adapter", "twin")
    assert "dexar-one 1.0" in conflict.message
    assert "dexar-two 2.0" in conflict.message
    assert "twin" not in catalog.adapters
    assert catalog.broken


def test_looking_up_a_conflicting_name_raises_the_conflict(twin_adapters):
    with pytest.warns(PluginWarning):
        catalog = build_catalog(ONLY_FAKES)

    with pytest.raises(PluginConflictError, match=r"dexar-one.*dexar-two"):
        catalog.adapter("twin")
    with pytest.raises(PluginConflictError, match="'twin'"):
        resolve_adapter("fakevlm", catalog)


def test_conflict_is_a_row_of_the_listing_for_each_claimant(twin_adapters):
    with pytest.warns(PluginWarning):
        rows = plugin_inventory(build_catalog(ONLY_FAKES))

    conflicted = [row for row in rows if row.status == "conflict"]
    assert [(row.name, row.distribution) for row in conflicted] == [
        ("twin", "dexar-one"),
        ("twin", "dexar-two"),
    ]
    assert all("dexar-one" in row.error and "dexar-two" in row.error for row in conflicted)


def test_strict_mode_raises_the_conflict_when_building(twin_adapters):
    with pytest.raises(PluginConflictError, match="twin"):
        build_catalog(PluginSettings(strict=True, allow_list=("one", "two")))


def test_unknown_names_raise_an_input_error_listing_what_exists(fake_site):
    fake_site.add_plugin("extras", METHOD_AND_MODEL_PLUGIN, distribution="dexar-extras")
    catalog = build_catalog(ONLY_FAKES)

    with pytest.raises(InputError, match=r"No method named 'dexr'.*fake-method"):
        catalog.method("dexr")
    with pytest.raises(InputError, match=r"No embedded-model named 'x'.*shapes-fake"):
        catalog.embedded_model("x")
    with pytest.raises(InputError, match="installed adapters are: none"):
        catalog.adapter("llava")


def test_failures_reach_the_catalog_and_the_listing(fake_site):
    fake_site.add_plugin("one", "raise ImportError('needs libfoo')", distribution="dexar-one")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        catalog = build_catalog(ONLY_FAKES)

    assert catalog.broken
    (row,) = [row for row in plugin_inventory(catalog) if row.status != "ok"]
    assert (row.name, row.kind, row.distribution, row.status) == (
        "one",
        "plugin",
        "dexar-one",
        "failed",
    )
    assert row.error == "ImportError: needs libfoo"


def test_default_catalog_is_built_once_until_reset(fake_site):
    first = default_catalog()

    assert default_catalog() is first
    reset_default_catalog()
    assert default_catalog() is not first
