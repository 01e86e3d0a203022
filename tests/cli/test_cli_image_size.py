"""``--image-size`` takes a side or HEIGHTxWIDTH (non-square benchmark runs, e.g. Qwen2-VL)."""

from __future__ import annotations

import argparse

import pytest

from dexar_core.cli.arguments import image_size


def test_a_side_or_height_by_width():
    assert image_size("64") == 64
    assert image_size("80x112") == (80, 112)
    assert image_size("80X112") == (80, 112)


@pytest.mark.parametrize("text", ["", "x", "80x", "0", "80x-3", "8x8x8", "big"])
def test_anything_else_is_refused_with_the_expected_forms(text):
    with pytest.raises(argparse.ArgumentTypeError, match="HEIGHTxWIDTH"):
        image_size(text)
