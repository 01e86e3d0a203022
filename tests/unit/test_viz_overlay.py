"""Tests of dexar_core.viz: overlays, token strips, PNG files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from dexar_core.errors import InputError
from dexar_core.viz import overlay, save_png, token_strip

unit_values = st.floats(0, 1, width=32, allow_subnormal=False)
map_shapes = st.tuples(st.integers(1, 8), st.integers(1, 8))
image_sizes = st.tuples(st.integers(1, 48), st.integers(1, 48))


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@given(
    size=image_sizes,
    mode=st.sampled_from(["RGB", "L", "RGBA"]),
    map2d=arrays(np.float32, map_shapes, elements=unit_values),
)
def test_overlay_is_an_rgb_image_of_the_original_size(
    size: tuple[int, int], mode: str, map2d: np.ndarray
) -> None:
    image = Image.new(mode, size)

    result = overlay(image, map2d)

    assert result.mode == "RGB"
    assert result.size == size


def test_overlay_with_alpha_zero_keeps_the_image() -> None:
    image = _photo()

    result = overlay(image, np.random.default_rng(1).random((4, 4)), alpha=0)

    np.testing.assert_array_equal(np.asarray(result), np.asarray(image))


def test_overlay_with_alpha_one_shows_the_colour_map() -> None:
    hot_left = np.array([[1.0, 1.0, 0.0, 0.0]] * 2)

    pixels = np.asarray(overlay(_photo(), hot_left, alpha=1, cmap="jet"))

    # jet runs from dark blue (0, 0, 128) at 0 to dark red (128, 0, 0) at 1.
    np.testing.assert_array_equal(pixels[0, 0], [128, 0, 0])
    np.testing.assert_array_equal(pixels[0, -1], [0, 0, 128])


def test_overlay_blends_halfway_at_alpha_one_half() -> None:
    image = Image.new("RGB", (4, 4), (200, 100, 0))

    pixels = np.asarray(overlay(image, np.zeros((2, 2)), alpha=0.5, cmap="jet"))

    np.testing.assert_array_equal(pixels[0, 0], [100, 50, 64])


def test_overlay_refuses_a_map_outside_zero_one() -> None:
    with pytest.raises(InputError, match="minmax"):
        overlay(_photo(), np.array([[0.0, 3.0]]))


def test_overlay_refuses_an_unknown_colour_map() -> None:
    with pytest.raises(InputError, match="colour map"):
        overlay(_photo(), np.zeros((2, 2)), cmap="no-such-map")


def test_overlay_refuses_alpha_outside_zero_one() -> None:
    with pytest.raises(InputError, match="alpha"):
        overlay(_photo(), np.zeros((2, 2)), alpha=1.5)


def _strip(count: int, weights: bool = True, columns: int = 4) -> Image.Image:
    maps = np.random.default_rng(count).random((count, 3, 3))
    tokens = [f"tok{index}" for index in range(count)]
    token_weights = [index / 10 for index in range(count)] if weights else None
    return token_strip(_photo(), maps, tokens, token_weights, columns=columns, cell_size=40)


def test_token_strip_grows_with_the_number_of_tokens() -> None:
    sizes = [_strip(count).size for count in range(1, 10)]

    widths = [width for width, _ in sizes]
    heights = [height for _, height in sizes]
    assert widths[:4] == sorted(set(widths[:4]))
    assert widths[3:] == [widths[3]] * 6
    assert heights[0] == heights[3] < heights[4] == heights[7] < heights[8]


def test_token_strip_is_rgb_and_leaves_room_for_the_weight_line() -> None:
    with_weights = _strip(2)
    without_weights = _strip(2, weights=False)

    assert with_weights.mode == "RGB"
    assert with_weights.width == without_weights.width
    assert with_weights.height > without_weights.height


def test_token_strip_writes_the_captions() -> None:
    strip = np.asarray(_strip(1).convert("L"))
    caption_band = strip[4 + 30 + 2 :, :]

    assert (caption_band < 128).any()


def test_token_strip_accepts_blank_and_long_tokens() -> None:
    maps = np.zeros((2, 2, 2))

    strip = token_strip(_photo(), maps, ["\n", "x" * 200], [0.0, 1e-4], cell_size=32)

    assert strip.size[0] < 100


@pytest.mark.parametrize(
    ("tokens", "weights"), [(["a"], None), (["a", "b"], [1.0]), (["a", "b", "c"], None)]
)
def test_token_strip_refuses_counts_that_differ(
    tokens: list[str], weights: list[float] | None
) -> None:
    with pytest.raises(InputError, match="one token"):
        token_strip(_photo(), np.zeros((2, 3, 3)), tokens, weights)


def test_token_strip_refuses_maps_that_are_not_stacked() -> None:
    with pytest.raises(InputError, match=r"\(T, height, width\)"):
        token_strip(_photo(), np.zeros((3, 3)), ["a", "b", "c"])


def test_save_png_writes_a_png_that_reads_back(tmp_path: Path) -> None:
    image = _photo()

    written = save_png(image, tmp_path / "new" / "overlay.png")

    assert written == tmp_path / "new" / "overlay.png"
    with Image.open(written) as reread:
        assert reread.format == "PNG"
        np.testing.assert_array_equal(np.asarray(reread), np.asarray(image))


def test_importing_viz_leaves_matplotlib_unloaded() -> None:
    code = "import sys, dexar_core.viz; sys.exit('matplotlib' in sys.modules)"

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
