"""The pictures a person reads: upscaled inputs, greyed images, hatched unseen regions."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image
from viz_fixtures import IMAGE_SIZE, PIXEL_BOX, known_explanation, picture

from dexar_core.errors import InputError
from dexar_core.viz.figures import map_values, sequence_figure, tokens_figure
from dexar_core.viz.picture import (
    DISPLAY_SIDE,
    colour_map,
    display_size,
    grey_picture,
    hatched,
    heat_picture,
    seen_mask,
    shown_picture,
)


def _texts(figure: Figure) -> str:
    return "\n".join(text.get_text() for text in figure.findobj(lambda o: hasattr(o, "get_text")))


@pytest.mark.parametrize("size", [(1, 1), (64, 48), (8, 200)])
def test_small_inputs_are_shown_at_least_display_side(size: tuple[int, int]) -> None:
    shown = shown_picture(Image.new("RGB", size, (10, 200, 30)))

    assert max(shown.size) >= DISPLAY_SIDE
    assert shown.size == display_size(size)
    assert abs(shown.width / shown.height - size[0] / size[1]) < 0.05 * size[0] / size[1] + 0.02


def test_upscaling_keeps_the_image_pixels_sharp() -> None:
    image = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))

    colours = {tuple(pixel) for pixel in np.asarray(shown_picture(image)).reshape(-1, 3)}

    assert colours == {(255, 0, 0), (0, 0, 255)}  # nearest neighbour: no blended purple


def test_the_image_own_colours_never_show_through_the_heat() -> None:
    coloured = picture()
    grey_copy = coloured.convert("L").convert("RGB")
    map2d = np.random.default_rng(0).random((4, 4))

    heat = heat_picture(coloured, map2d, PIXEL_BOX)
    heat_of_grey = heat_picture(grey_copy, map2d, PIXEL_BOX)

    np.testing.assert_array_equal(np.asarray(heat), np.asarray(heat_of_grey))


def test_alpha_zero_shows_the_greyed_image_and_alpha_one_the_colour_map() -> None:
    box = (0.0, 0.0, *map(float, IMAGE_SIZE))
    hot_everywhere = np.ones((2, 2))

    greyed = np.asarray(heat_picture(picture(), hot_everywhere, box, alpha=0))
    coloured = np.asarray(heat_picture(picture(), hot_everywhere, box, alpha=1, cmap="viridis"))

    np.testing.assert_array_equal(greyed, np.round(grey_picture(picture()) * 255))
    top = np.round(np.asarray(colour_map("viridis")(1.0))[:3] * 255)
    np.testing.assert_array_equal(coloured[5, 5], top)


def test_what_the_model_did_not_see_is_hatched() -> None:
    heat = np.asarray(heat_picture(picture(), np.ones((4, 4)), PIXEL_BOX, alpha=1))
    seen = seen_mask([PIXEL_BOX], IMAGE_SIZE)

    assert not seen[:, :10].any() and seen[:, 150:300].all()
    np.testing.assert_array_equal(heat[~seen], hatched(heat.shape)[~seen])
    assert len({tuple(p) for p in heat[~seen]}) == 2  # grey and its lines


def test_heat_picture_refuses_bad_drawing_options() -> None:
    with pytest.raises(InputError, match="alpha"):
        heat_picture(picture(), np.zeros((2, 2)), PIXEL_BOX, alpha=2)
    with pytest.raises(InputError, match="colour map"):
        heat_picture(picture(), np.zeros((2, 2)), PIXEL_BOX, cmap="no-such-map")
    with pytest.raises(InputError, match="value_range"):
        heat_picture(picture(), np.zeros((2, 2)), PIXEL_BOX, value_range=(1, 1))


def test_sequence_figure_has_the_image_the_map_a_colour_bar_and_a_title() -> None:
    figure = sequence_figure(known_explanation())

    width, height = figure.get_size_inches() * figure.dpi
    texts = _texts(figure)
    assert width >= 2 * 400 and height >= 400
    assert len(figure.axes) == 3  # input, map, colour bar
    for said in ("known-model", "dexar", "what is red?", "red circle the", "not seen"):
        assert said in texts
    assert "strongest gradient goes to the image" in texts


def test_tokens_figure_marks_the_tokens_of_weight_zero() -> None:
    figure = tokens_figure(known_explanation())

    texts = _texts(figure)
    assert texts.count("weight 0: not in the sequence map") == 1
    bars = figure.axes[0].patches
    assert [round(bar.get_height(), 3) for bar in bars] == [0.8, 0.2, 0.0]


def _texts_outside(figure: Figure) -> list[str]:
    """The texts drawn (partly) outside the saved picture, so a reader sees them cut."""
    canvas = FigureCanvasAgg(figure)  # what savefig draws with
    canvas.draw()
    renderer = canvas.get_renderer()
    inside = figure.bbox
    return [
        text.get_text()[:40]
        for text in figure.findobj(Text)
        if text.get_visible()
        and text.get_text().strip()
        and not (
            inside.x0 - 1 <= text.get_window_extent(renderer).x0
            and text.get_window_extent(renderer).x1 <= inside.x1 + 1
        )
    ]


@pytest.mark.parametrize("columns", [1, 2, 4])
def test_no_text_of_the_tokens_figure_is_cut_at_its_edges(columns: int) -> None:
    # One column is the figure of a one-word answer: as narrow as the figure gets.
    explanation = attrs.evolve(known_explanation(), prompt="which shape is red? " * 8)

    assert _texts_outside(tokens_figure(explanation, columns=columns)) == []


def test_no_text_of_the_sequence_figure_is_cut_at_its_edges() -> None:
    explanation = attrs.evolve(known_explanation(), prompt="which shape is red? " * 8)

    assert _texts_outside(sequence_figure(explanation)) == []


def test_raw_maps_share_one_range_so_weak_tokens_look_weak() -> None:
    explanation = known_explanation()

    tokens, _, token_range, _ = map_values(explanation, 0, raw=True)
    normalised, _, unit_range, _ = map_values(explanation, 0, raw=False)

    assert unit_range == (0, 1) and token_range == (pytest.approx(0.001), pytest.approx(1.0))
    assert normalised[1].max() == 1 and tokens[1].max() == pytest.approx(0.1)


def test_raw_drawing_of_an_explanation_without_raw_maps_says_what_to_do() -> None:
    with pytest.raises(InputError, match="raw=False"):
        sequence_figure(known_explanation(raw=False), raw=True)


def test_plot_draws_either_figure_and_takes_the_options() -> None:
    explanation = known_explanation()

    assert isinstance(explanation.plot(), Figure)
    assert isinstance(explanation.plot(kind="tokens", cmap="viridis", alpha=0.3), Figure)
    with pytest.raises(InputError, match="kind"):
        explanation.plot(kind="heads")


def test_an_explanation_without_a_picture_needs_one_given() -> None:
    explanation = known_explanation(images=False)

    with pytest.raises(InputError, match="pass the image"):
        explanation.plot()
    assert isinstance(explanation.plot(image=picture()), Figure)
