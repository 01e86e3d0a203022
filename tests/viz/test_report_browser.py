"""The HTML report, driven in a real headless Chromium as a person would use it.

What is asserted is what a person sees: a click on a token shows that token's map (the
pixels change, and the bright region is that token's), the slider changes the opacity,
the raw switch changes the scale, the page logs no console error and sends no request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from viz_fixtures import HOT_CELLS, IMAGE_SIZE, PIXEL_BOX, TOKENS, known_explanation, picture

from dexar_core.compare.on_image import Cell, Comparison, ModelRow
from dexar_core.viz.picture import display_size

pytestmark = pytest.mark.slow

READY_SECONDS = 20


def _load(browser: Any, path: Path) -> None:
    """Load a page with the console and network logs emptied of earlier pages'."""
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(path.as_uri())


def _open(browser: Any, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    _load(browser, path)
    WebDriverWait(browser, READY_SECONDS).until(
        lambda driver: driver.execute_script("return document.body.dataset.ready === 'true'")
    )


def _report(tmp_path: Path, name: str = "report.html", **changes: Any) -> Path:
    explanation = attrs.evolve(known_explanation(), **changes) if changes else known_explanation()
    return explanation.to_html(tmp_path / name)


def _cell_centre(row: int, column: int) -> tuple[int, int]:
    """Where a token-grid cell's centre is drawn on the report's canvas."""
    width, height = display_size(IMAGE_SIZE)
    scale_x, scale_y = width / IMAGE_SIZE[0], height / IMAGE_SIZE[1]
    left, top, right, bottom = PIXEL_BOX
    cell_width = (right - left) * scale_x / 4
    cell_height = (bottom - top) * scale_y / 4
    return round(left * scale_x + (column + 0.5) * cell_width), round(
        top * scale_y + (row + 0.5) * cell_height
    )


def _pixel(browser: Any, x: int, y: int) -> np.ndarray:
    values = browser.execute_script(
        "return Array.from(document.getElementById('map').getContext('2d')"
        ".getImageData(arguments[0], arguments[1], 1, 1).data);",
        x,
        y,
    )
    return np.asarray(values[:3], dtype=float)


def _brightness_at(browser: Any, token: int) -> float:
    return float(_pixel(browser, *_cell_centre(*HOT_CELLS[token])).sum())


def _chip(browser: Any, token: int) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, f'.chip[data-token="{token}"]')


def _opacity(browser: Any, end: str) -> None:
    """Move the slider to one end with the keyboard, as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    slider = browser.find_element(By.ID, "opacity")
    slider.send_keys(Keys.END if end == "max" else Keys.HOME)


def _map_shot(browser: Any) -> bytes:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, "map").screenshot_as_png


def _console_problems(browser: Any) -> list[dict[str, Any]]:
    return [
        entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")
    ]


def _requested_urls(browser: Any) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_report_logs_no_error_and_requests_nothing_but_itself(browser, tmp_path) -> None:
    path = _report(tmp_path)

    _open(browser, path)
    _chip(browser, 0).click()

    assert _console_problems(browser) == []
    outside = [url for url in _requested_urls(browser) if not url.startswith("data:")]
    assert outside in ([], [path.as_uri()])
    assert "http://" not in path.read_text() and "https://" not in path.read_text()


def test_clicking_a_token_shows_that_tokens_map(browser, tmp_path) -> None:
    _open(browser, _report(tmp_path))
    _opacity(browser, "max")
    sequence_shot = _map_shot(browser)

    _chip(browser, 0).click()

    assert browser.find_element("id", "map").get_attribute("data-token") == "0"
    assert _map_shot(browser) != sequence_shot
    assert _brightness_at(browser, 0) > _brightness_at(browser, 1) + 100
    assert repr(TOKENS[0]).replace("'", '"') in browser.find_element("id", "shown").text

    _chip(browser, 1).click()

    assert browser.find_element("id", "map").get_attribute("data-token") == "1"
    assert _brightness_at(browser, 1) > _brightness_at(browser, 0) + 100


def test_hovering_shows_a_map_and_leaving_restores_the_kept_one(browser, tmp_path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    _open(browser, _report(tmp_path))
    _chip(browser, 1).click()

    ActionChains(browser).move_to_element(_chip(browser, 0)).perform()
    hovered = browser.find_element("id", "map").get_attribute("data-token")
    ActionChains(browser).move_to_element(browser.find_element("id", "title")).perform()

    assert hovered == "0"
    assert browser.find_element("id", "map").get_attribute("data-token") == "1"


def test_the_slider_changes_the_opacity_of_the_map(browser, tmp_path) -> None:
    _open(browser, _report(tmp_path))
    _chip(browser, 0).click()

    _opacity(browser, "min")
    hidden = _pixel(browser, *_cell_centre(*HOT_CELLS[0]))
    hidden_shot = _map_shot(browser)
    _opacity(browser, "max")
    shown = _pixel(browser, *_cell_centre(*HOT_CELLS[0]))

    assert hidden[0] == hidden[1] == hidden[2]  # only the greyed image
    assert shown[0] - shown[2] > 50  # the colour map's warm top
    assert _map_shot(browser) != hidden_shot
    assert browser.find_element("id", "map").get_attribute("data-alpha") == "1"


def test_the_raw_switch_shows_a_weak_token_as_weak(browser, tmp_path) -> None:
    _open(browser, _report(tmp_path))
    _opacity(browser, "max")
    _chip(browser, 1).click()
    normalised = _brightness_at(browser, 1)

    browser.find_element("id", "raw").click()

    assert browser.find_element("id", "map").get_attribute("data-mode") == "raw"
    assert _brightness_at(browser, 1) < normalised - 100  # a tenth of token 0's strength


def test_a_token_of_weight_zero_is_marked_and_its_head_weights_are_shown(browser, tmp_path):
    explanation = known_explanation()
    _open(browser, _report(tmp_path))

    _chip(browser, 2).click()

    assert "zero" in _chip(browser, 2).get_attribute("class").split()
    assert "zero" not in _chip(browser, 0).get_attribute("class").split()
    cells = browser.find_elements("css selector", "#heads td")
    layers, heads = explanation.head_weights.shape[1:]
    assert len(cells) == layers * heads
    assert cells[-1].get_attribute("title").endswith(f": {explanation.head_weights[2, -1, -1]:g}")


def test_what_the_model_did_not_see_stays_hatched_under_the_map(browser, tmp_path) -> None:
    _open(browser, _report(tmp_path))
    _opacity(browser, "max")

    outside = _pixel(browser, 10, 150)

    assert outside[0] == outside[1] == outside[2]
    assert browser.find_element("id", "unseen-legend").is_displayed()
    assert "strongest gradient goes to the image" in browser.find_element("id", "notes").text


def test_the_notebook_display_is_the_same_report_in_a_frame(browser, tmp_path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    page = tmp_path / "notebook.html"
    page.write_text(f"<!DOCTYPE html><html><body>{known_explanation()._repr_html_()}</body></html>")

    _load(browser, page)
    browser.switch_to.frame(browser.find_element("tag name", "iframe"))
    try:
        WebDriverWait(browser, READY_SECONDS).until(
            lambda driver: driver.execute_script("return document.body.dataset.ready === 'true'")
        )
        assert len(browser.find_elements("css selector", ".chip")) == len(TOKENS) + 1
    finally:
        browser.switch_to.default_content()


def test_the_comparison_page_links_each_cell_to_its_report(browser, tmp_path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    explanation = known_explanation()
    comparison = Comparison(
        image=picture(),
        prompts=(explanation.prompt,),
        methods=("dexar", "rollout"),
        rows=(
            ModelRow(
                model_id="known-model",
                contrastive=False,
                answer=explanation.answer,
                prompts=(explanation.prompt,),
                similarities=(),
                cells=(
                    Cell(method="dexar", explanation=explanation),
                    Cell(method="rollout", reason="no decoder to roll out"),
                ),
            ),
        ),
    )
    path = comparison.to_html(tmp_path / "comparison.html")

    _load(browser, path)
    browser.find_element("css selector", ".cells a").click()
    browser.find_element("css selector", "#report-0-0 summary").click()
    browser.switch_to.frame(browser.find_element("css selector", "#report-0-0 iframe"))
    try:
        WebDriverWait(browser, READY_SECONDS).until(
            lambda driver: driver.execute_script("return document.body.dataset.ready === 'true'")
        )
    finally:
        browser.switch_to.default_content()
    assert "not supported: no decoder to roll out" in browser.page_source
    assert _console_problems(browser) == []
