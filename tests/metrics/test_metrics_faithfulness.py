"""The wrong-object peak and the object contrast on hand-made maps and masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dexar_core.errors import InputError
from dexar_core.metrics import (
    object_contrast,
    pointing_game,
    uniform_pointing_chance,
    wrong_object_peak,
)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 20x20 scene: the named object top left, another object bottom right."""
    named = np.zeros((20, 20), dtype=bool)
    named[2:7, 2:7] = True
    other = np.zeros((20, 20), dtype=bool)
    other[12:18, 12:18] = True
    return named, other, ~(named | other)


def test_a_map_peaking_on_another_object_counts_as_a_wrong_object_peak():
    named, other, _ = _scene()
    on_other = np.zeros((20, 20))
    on_other[14, 15] = 1.0
    on_other[4, 4] = 0.5  # bright on its own object too, but less
    assert wrong_object_peak(on_other, other)
    assert not pointing_game(on_other, named)
    on_named = np.zeros((20, 20))
    on_named[4, 4] = 1.0
    on_named[14, 15] = 0.5
    assert not wrong_object_peak(on_named, other)
    on_background = np.zeros((20, 20))
    on_background[10, 1] = 1.0
    assert not wrong_object_peak(on_background, other)
    assert not pointing_game(on_background, named)


def test_the_wrong_object_peak_counts_only_valid_pixels_and_has_the_area_as_chance():
    _, other, _ = _scene()
    peak = np.zeros((20, 20))
    peak[14, 15] = 1.0
    peak[0, 19] = 0.8
    valid = np.ones((20, 20), dtype=bool)
    valid[14, 15] = False  # the peak lies where the model saw nothing
    assert wrong_object_peak(peak, other) and not wrong_object_peak(peak, other, valid)
    assert uniform_pointing_chance(other) == pytest.approx(36 / 400)
    with pytest.raises(InputError, match="nothing to point"):
        wrong_object_peak(peak, np.zeros((20, 20), dtype=bool))


def test_a_map_darker_on_its_object_than_on_the_background_is_inverted():
    named, _, background = _scene()
    inverted = np.ones((20, 20))
    inverted[named] = 0.2
    # min-max normalised first: 0 on the object, 1 on the background
    assert object_contrast(inverted, named, background) == pytest.approx(-1.0)
    upright = np.zeros((20, 20))
    upright[named] = 1.0
    assert object_contrast(upright, named, background) == pytest.approx(1.0)
    assert object_contrast(np.full((20, 20), 3.0), named, background) == 0.0
    # a coarse map is brought to the mask's size first, as every score does
    coarse = np.ones((4, 4))
    coarse[0, 0] = 0.0
    assert object_contrast(coarse, named, background) < 0


def test_the_contrast_is_undefined_without_object_or_background_pixels():
    named, _, background = _scene()
    valid = ~named
    assert math.isnan(object_contrast(np.eye(20), named, background, valid))
    assert math.isnan(object_contrast(np.eye(20), named, np.zeros((20, 20), dtype=bool)))
    with pytest.raises(InputError, match="background_mask has shape"):
        object_contrast(np.eye(20), named, background[:10])
