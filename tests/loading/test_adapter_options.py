"""Adapter options: an adapter built with its own keyword arguments, by name, before loading."""

from __future__ import annotations

import pytest
import transformers

from dexar_core.adapter_options import keyword_names, make_adapter
from dexar_core.api import load
from dexar_core.errors import InputError, MethodError
from dexar_core.values import ImportReference


class Routed:
    def __init__(self, through_encoder: str = "none", *, scale: float = 1.0) -> None:
        self.through_encoder, self.scale = through_encoder, scale


class Plain:
    pass


class Open:
    def __init__(self, **options: object) -> None:
        self.options = options


def test_the_names_are_read_from_the_factory_and_through_an_import_reference() -> None:
    assert keyword_names(Routed) == {"through_encoder", "scale"}
    assert keyword_names(Plain) == frozenset()
    assert keyword_names(Open) is None
    reference = ImportReference(path="dexar_florence2.adapter:Florence2Adapter")
    assert "through_encoder" in keyword_names(reference)


def test_options_reach_the_adapter_and_no_options_build_the_default() -> None:
    built = make_adapter("routed", Routed, {"through_encoder": "rollout", "scale": 2.0})
    assert (built.through_encoder, built.scale) == ("rollout", 2.0)
    assert make_adapter("routed", Routed, {}).through_encoder == "none"
    assert make_adapter("open", Open, {"anything": 1}).options == {"anything": 1}


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            Routed,
            r"the x adapter takes the adapter option\(s\) \['scale', 'through_encoder'\]; "
            r"found \['projection'\]",
        ),
        (Plain, r"the x adapter takes no adapter options; found \['projection'\]"),
    ],
)
def test_an_option_the_adapter_does_not_take_is_refused_naming_those_it_does(
    factory, message
) -> None:
    with pytest.raises(InputError, match=message):
        make_adapter("x", factory, {"projection": "gradient"})


@pytest.fixture
def no_weights_load(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("the weights were loaded before the adapter option was refused")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))


def test_load_refuses_an_unknown_option_before_the_weights_load(no_weights_load) -> None:
    with pytest.raises(InputError, match=r"the llava adapter takes no adapter options"):
        load("shapes-llava", adapter_options={"through_encoder": "rollout"})
    with pytest.raises(InputError, match=r"takes the adapter option\(s\) \['projection'\]"):
        load("shapes-blip2", adapter_options={"through_encoder": "rollout"})


def test_load_refuses_a_bad_value_with_the_adapters_own_error(no_weights_load) -> None:
    with pytest.raises(MethodError, match="through_encoder must be one of"):
        load("shapes-florence2", adapter_options={"through_encoder": "sideways"})


def test_the_loaded_model_carries_its_adapter_and_options() -> None:
    loaded = load("shapes-florence2", adapter_options={"through_encoder": "rollout"})
    assert loaded.adapter.through_encoder == "rollout"
    assert loaded.adapter_options == {"through_encoder": "rollout"}
    assert load("shapes-florence2").adapter_options == {}


class StrictLoader:
    name = "strict"

    def load(self, path, *, device=None, dtype=None, device_map=None):
        raise AssertionError("not called")


class OpenLoader(StrictLoader):
    def load(self, path, **options):
        raise AssertionError("not called")


def test_loading_options_an_adapters_load_does_not_take_are_refused_by_name() -> None:
    from dexar_core.api import _check_loading_options

    with pytest.raises(InputError, match=r"the strict adapter does not take .* \['revision'\]"):
        _check_loading_options(StrictLoader(), {"revision": "main", "device_map": None})
    _check_loading_options(StrictLoader(), {"device_map": "auto"})
    _check_loading_options(OpenLoader(), {"revision": "main"})
