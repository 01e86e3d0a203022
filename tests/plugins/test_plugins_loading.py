"""Loading plugins from entry points: good, broken, misspelled, strict, disabled, allowed."""

from __future__ import annotations

import importlib.metadata
import inspect
import warnings

import pytest

from dexar_core.errors import PluginError
from dexar_plugins import hookspecs
from dexar_plugins.loading import (
    BUILTIN_PLUGIN_NAME,
    HOOK_SPEC_TYPES,
    LoadedPlugins,
    PluginSettings,
    PluginWarning,
    load_plugins,
)

MISSPELLED_HOOK = """
    from dexar_plugins import hookimpl

    @hookimpl
    def dexar_adaptors():
        return []
"""


def names(loaded: LoadedPlugins) -> list[str]:
    return [plugin.name for plugin in loaded.plugins]


def load_quietly(settings: PluginSettings | None = None) -> LoadedPlugins:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        return load_plugins(settings)


def test_good_plugin_is_loaded_with_its_distribution_and_version(fake_site):
    fake_site.add_adapter_plugin(
        "good", adapter="good-vlm", distribution="dexar-good", version="1.2.3"
    )

    loaded = load_plugins(PluginSettings())

    (good,) = [plugin for plugin in loaded.plugins if plugin.name == "good"]
    assert (good.distribution, good.version) == ("dexar-good", "1.2.3")
    assert good.hooks == ("dexar_adapters",)
    assert [spec.name for spec in good.adapters] == ["good-vlm"]
    assert loaded.failures == ()


def test_plugin_failing_to_import_is_skipped_and_warned_about_once(fake_site):
    fake_site.add_plugin("broken", "raise ImportError('needs libfoo')", distribution="dexar-bad")
    fake_site.add_adapter_plugin("good", adapter="good-vlm", distribution="dexar-good")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_plugins(PluginSettings())

    (failure,) = loaded.failures
    assert (failure.name, failure.distribution, failure.version) == ("broken", "dexar-bad", "1.0")
    assert failure.error == "ImportError: needs libfoo"
    plugin_warnings = [w for w in caught if issubclass(w.category, PluginWarning)]
    assert [str(w.message) for w in plugin_warnings] == [failure.message]
    assert "dexar-bad 1.0" in failure.message
    assert "good" in names(loaded)


def test_misspelled_hook_is_a_load_failure_with_a_suggestion(fake_site):
    fake_site.add_plugin("typo", MISSPELLED_HOOK, distribution="dexar-typo")

    loaded = load_quietly(PluginSettings())

    (failure,) = loaded.failures
    assert "dexar_adaptors" in failure.error
    assert "closest to 'dexar_adaptors' is 'dexar_adapters'" in failure.error
    assert "typo" not in names(loaded)
    assert loaded.manager.get_plugin("typo") is None
    loaded.manager.check_pending()


BAD_PLUGINS = {
    "wrong signature": "def dexar_adapters(config):\n    return []",
    "not a spec": "def dexar_adapters():\n    return ['llava']",
    "a string": "def dexar_methods():\n    return 'dexar'",
    "not iterable": "def dexar_embedded_models():\n    return 42",
    "hook raises": "def dexar_methods():\n    raise RuntimeError('boom')",
    "generator raises": "def dexar_methods():\n    yield from ()\n    raise RuntimeError('boom')",
}


@pytest.mark.parametrize("body", BAD_PLUGINS.values(), ids=BAD_PLUGINS.keys())
def test_plugin_with_a_bad_hook_is_skipped_and_unregistered(fake_site, body):
    source = f"from dexar_plugins import hookimpl\n@hookimpl\n{body}\n"
    fake_site.add_plugin("bad", source, distribution="dexar-bad")

    loaded = load_quietly(PluginSettings())

    assert [failure.name for failure in loaded.failures] == ["bad"]
    assert loaded.manager.get_plugin("bad") is None


WRONG_SPEC_TYPE = """
    from dexar_core.values import MethodSpec
    from dexar_plugins import hookimpl

    @hookimpl
    def dexar_embedded_models():
        return [MethodSpec(name="oops", factory=dict)]
"""


def test_hook_returning_the_wrong_spec_type_names_the_expected_type(fake_site):
    fake_site.add_plugin("bad", WRONG_SPEC_TYPE, distribution="dexar-bad")

    (failure,) = load_quietly(PluginSettings()).failures

    assert "dexar_embedded_models" in failure.error
    assert "EmbeddedModelSpec" in failure.error


def test_strict_mode_turns_a_load_failure_into_a_plugin_error(fake_site, monkeypatch):
    fake_site.add_plugin("broken", "raise ImportError('needs libfoo')", distribution="dexar-bad")
    monkeypatch.setenv("DEXAR_STRICT_PLUGINS", "1")

    with pytest.raises(PluginError, match=r"'broken' from dexar-bad 1\.0") as raised:
        load_plugins()

    assert isinstance(raised.value.__cause__, ImportError)


def test_disabled_autoload_loads_only_the_builtin_plugin(fake_site, monkeypatch):
    fake_site.add_plugin("broken", "raise ImportError('needs libfoo')", distribution="dexar-bad")
    monkeypatch.setenv("DEXAR_DISABLE_PLUGIN_AUTOLOAD", "1")

    loaded = load_plugins()

    assert names(loaded) == [BUILTIN_PLUGIN_NAME]
    assert loaded.plugins[0].builtin
    assert "dexar_methods" in loaded.plugins[0].hooks
    assert loaded.failures == ()


def test_allow_list_loads_only_the_named_entry_points(fake_site, monkeypatch):
    fake_site.add_plugin("broken", "raise ImportError('needs libfoo')", distribution="dexar-bad")
    fake_site.add_adapter_plugin("good", adapter="good-vlm", distribution="dexar-good")
    monkeypatch.setenv("DEXAR_LOAD_PLUGINS", " good , ")

    loaded = load_plugins()

    assert names(loaded) == [BUILTIN_PLUGIN_NAME, "good"]
    assert loaded.failures == ()


def test_empty_allow_list_loads_no_entry_point(fake_site, monkeypatch):
    fake_site.add_adapter_plugin("good", adapter="good-vlm", distribution="dexar-good")
    monkeypatch.setenv("DEXAR_LOAD_PLUGINS", "")

    assert names(load_plugins()) == [BUILTIN_PLUGIN_NAME]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, PluginSettings()),
        ({"DEXAR_STRICT_PLUGINS": "true"}, PluginSettings(strict=True)),
        ({"DEXAR_STRICT_PLUGINS": "0"}, PluginSettings()),
        ({"DEXAR_DISABLE_PLUGIN_AUTOLOAD": "1"}, PluginSettings(autoload=False)),
        ({"DEXAR_LOAD_PLUGINS": "a,b"}, PluginSettings(allow_list=("a", "b"))),
        ({"DEXAR_LOAD_PLUGINS": ""}, PluginSettings(allow_list=())),
    ],
)
def test_settings_are_read_from_the_environment(environ, expected):
    assert PluginSettings.from_environ(environ) == expected


def test_installed_llava_entry_point_loads(fake_site):
    loaded = load_quietly(PluginSettings(allow_list=("llava",)))

    (llava,) = [plugin for plugin in loaded.plugins if plugin.name == "llava"]
    assert (llava.distribution, llava.version) == ("dexar", importlib.metadata.version("dexar"))
    assert loaded.failures == ()


def test_plugin_registering_no_hook_is_loaded_and_listed(fake_site):
    fake_site.add_plugin("quiet", '"""A plugin with nothing to register yet."""', distribution="q")

    loaded = load_plugins(PluginSettings(allow_list=("quiet",)))

    assert loaded.plugins[-1].name == "quiet"
    assert loaded.plugins[-1].hooks == ()


def test_every_hookspec_has_an_expected_spec_type():
    hook_names = {
        name
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "dexar_spec")
    }
    assert hook_names == set(HOOK_SPEC_TYPES)
