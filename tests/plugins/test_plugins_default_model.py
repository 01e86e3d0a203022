"""Exactly one embedded model is the default: none or several is a clear error."""

from __future__ import annotations

import pytest

from dexar_core.errors import InputError, PluginConflictError, PluginError
from dexar_core.values import EmbeddedModelSpec
from dexar_plugins import PluginSettings, PluginWarning, build_catalog, default_catalog

FAKES = PluginSettings(allow_list=("one", "two"))

DEFAULT_MODEL_PLUGIN = """
    from dexar_core.values import EmbeddedModelSpec
    from dexar_plugins import hookimpl

    @hookimpl
    def dexar_embedded_models():
        yield EmbeddedModelSpec(name="{name}", path="ckpt", adapter="fake-vlm", default={default})
"""


def _add(fake_site, entry_point: str, name: str, default: bool) -> None:
    source = DEFAULT_MODEL_PLUGIN.format(name=name, default=default)
    fake_site.add_plugin(entry_point, source, distribution=f"dexar-{entry_point}")


def test_the_one_model_marked_default_is_the_default(fake_site):
    _add(fake_site, "one", "shapes-one", True)
    _add(fake_site, "two", "shapes-two", False)
    assert build_catalog(FAKES).default_embedded_model().name == "shapes-one"


def test_no_default_is_an_input_error_listing_the_models(fake_site):
    _add(fake_site, "one", "shapes-one", False)
    with pytest.raises(InputError, match=r"marked as the default.*shapes-one"):
        build_catalog(FAKES).default_embedded_model()


def test_two_defaults_warn_at_load_and_name_both_at_lookup(fake_site):
    _add(fake_site, "one", "shapes-one", True)
    _add(fake_site, "two", "shapes-two", True)
    with pytest.warns(PluginWarning, match="claim to be the default"):
        catalog = build_catalog(FAKES)
    with pytest.raises(PluginConflictError, match=r"shapes-one.*dexar-one.*shapes-two.*dexar-two"):
        catalog.default_embedded_model()


def test_two_defaults_are_fatal_in_strict_mode(fake_site):
    _add(fake_site, "one", "shapes-one", True)
    _add(fake_site, "two", "shapes-two", True)
    with pytest.raises(PluginConflictError, match="claim to be the default"):
        build_catalog(PluginSettings(strict=True, allow_list=("one", "two")))


def test_the_built_in_plugins_mark_exactly_one_default():
    catalog = default_catalog()
    assert len(catalog.default_claims) == 1
    assert catalog.default_embedded_model().name in catalog.embedded_models


def test_a_recipe_that_is_not_a_training_recipe_is_refused():
    with pytest.raises(PluginError, match="TrainingRecipe"):
        EmbeddedModelSpec(name="m", path="ckpt", adapter="a", recipe="dexar_x.tiny:build")
