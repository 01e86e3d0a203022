"""Validation of the value records: each inconsistency is a DexarError naming its field."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from dexar_core.errors import LayoutError, PluginError
from dexar_core.values import AdapterSpec, EmbeddedModelSpec, Grid, MethodSpec, VisualLayout

BOX = (0, 0, 336, 336)


def grid(positions, *, height=2, width=2, name="image 0"):
    return Grid(name=name, height=height, width=width, positions=positions, pixel_box=BOX)


def masks(length, visual):
    visual_mask = np.zeros(length, dtype=bool)
    visual_mask[list(visual)] = True
    return {
        "visual_mask": visual_mask,
        "text_mask": ~visual_mask,
        "template_mask": np.zeros(length, dtype=bool),
    }


def layout(**changes):
    """A valid layout (text 0-1, a 2x2 image at 2-5, text 6-7) with some fields replaced."""
    fields = {**masks(8, range(2, 6)), "grids": [grid([2, 3, 4, 5])]}
    return VisualLayout(**{**fields, **changes})


def test_a_consistent_layout_is_accepted_and_read_only():
    accepted = layout()

    assert accepted.sequence_length == 8
    assert accepted.visual_positions.tolist() == [2, 3, 4, 5]
    assert not accepted.visual_mask.flags.writeable
    assert accepted == layout()


INVALID_LAYOUTS = {
    "text mask length": ({"text_mask": np.ones(7, dtype=bool)}, "text_mask"),
    "template mask length": ({"template_mask": np.zeros(9, dtype=bool)}, "template_mask"),
    "text overlaps visual": ({"text_mask": np.ones(8, dtype=bool)}, "text_mask"),
    "no grid": ({"grids": []}, "grids"),
    "no visual position": ({**masks(8, []), "grids": [grid([2, 3, 4, 5])]}, "visual_mask"),
    "uncovered visual position": (masks(8, range(2, 7)), "grids"),
    "grid outside the sequence": ({"grids": [grid([5, 6, 7, 8])]}, "grids"),
    "position in two grids": (
        {"grids": [grid([2, 3], height=1), grid([3, 4], height=1, name="image 1")]},
        "grids",
    ),
}


@pytest.mark.parametrize(("changes", "field"), INVALID_LAYOUTS.values(), ids=INVALID_LAYOUTS.keys())
def test_an_inconsistent_layout_raises_a_layout_error_naming_the_field(changes, field):
    with pytest.raises(LayoutError, match=field):
        layout(**changes)


INVALID_GRIDS = {
    "grid product": ({"positions": [2, 3, 4]}, "positions"),
    "negative height": ({"height": -1}, "height"),
    "zero width": ({"width": 0}, "width"),
    "box without area": ({"pixel_box": (10, 0, 10, 5)}, "pixel_box"),
    "box of three numbers": ({"pixel_box": (0, 0, 5)}, "pixel_box"),
}


@pytest.mark.parametrize(("changes", "field"), INVALID_GRIDS.values(), ids=INVALID_GRIDS.keys())
def test_an_inconsistent_grid_raises_a_layout_error_naming_the_field(changes, field):
    fields = {"name": "image 0", "height": 2, "width": 2, "positions": [0, 1, 2, 3]}
    with pytest.raises(LayoutError, match=field):
        Grid(**{**fields, "pixel_box": BOX, **changes})


def test_text_set_modes_and_unknown_mode():
    template_mask = np.zeros(8, dtype=bool)
    template_mask[0] = True
    with_template = layout(template_mask=template_mask)

    assert with_template.text_set("all_non_visual").tolist() == [1, 1, 0, 0, 0, 0, 1, 1]
    assert with_template.text_set("prompt_only").tolist() == [0, 1, 0, 0, 0, 0, 1, 1]
    with pytest.raises(LayoutError, match="text_set"):
        with_template.text_set("prompt")


def test_with_length_appends_text_and_refuses_to_cut():
    longer = layout().with_length(10)

    assert longer.text_mask[8:].all()
    assert not longer.visual_mask[8:].any()
    with pytest.raises(LayoutError, match="with_length"):
        layout().with_length(4)


def test_records_are_frozen():
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        layout().grids = ()  # type: ignore[misc]


INVALID_SPECS = {
    "blank adapter name": (lambda: AdapterSpec(name=" ", model_types="x", factory=dict), "name"),
    "adapter serving nothing": (lambda: AdapterSpec(name="a", factory=dict), "serves no model"),
    "adapter factory": (lambda: AdapterSpec(name="a", model_types="x", factory=1), "factory"),
    "method factory": (lambda: MethodSpec(name="m", factory="dexar"), "factory"),
    "model adapter": (lambda: EmbeddedModelSpec(name="m", path=".", adapter=""), "adapter"),
}


@pytest.mark.parametrize(("build", "words"), INVALID_SPECS.values(), ids=INVALID_SPECS.keys())
def test_an_invalid_spec_raises_a_plugin_error(build, words):
    with pytest.raises(PluginError, match=words):
        build()


def test_adapter_spec_serves_by_model_type_or_class_name():
    spec = AdapterSpec(name="a", model_types="llava", architectures=["LlavaModel"], factory=dict)

    assert spec.model_types == ("llava",)
    assert spec.serves("llava", ())
    assert spec.serves(None, ("Module", "LlavaModel"))
    assert not spec.serves("qwen2_vl", ("Qwen2VLModel",))
