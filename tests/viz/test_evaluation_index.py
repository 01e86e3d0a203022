"""The index page of a ``dexar evaluate`` run folder: tables, pictures, links between."""

from __future__ import annotations

import pytest
from llava_fixtures import saved_tiny_llava
from test_report_browser import _console_problems, _load, _requested_urls

from dexar_core.cli.main import main

pytestmark = pytest.mark.slow


def test_the_index_shows_the_tables_and_links_to_each_items_pictures(browser, tmp_path, capsys):
    out = tmp_path / "eval"
    model = saved_tiny_llava(tmp_path / "model")
    arguments = ["evaluate", "--model", str(model), "--limit", "2", "--max-new-tokens", "3"]
    code = main([*arguments, "--out", str(out), "--pictures", "1", "--resamples", "10"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    index = out / "index.html"
    assert str(index) in captured.err

    _load(browser, index)
    tables = browser.find_element("css selector", "#tables pre").text
    browser.find_element("link text", "dexar pictures").click()
    pictures = browser.find_elements("css selector", "#pictures-dexar img")

    assert "random smooth" in tables and "AUROC" in tables
    assert browser.current_url.endswith("#pictures-dexar")
    assert [image.get_attribute("alt") for image in pictures] == [
        "item0000_sequence.png",
        "item0000_tokens.png",
    ]
    assert all(image.get_property("naturalWidth") > 400 for image in pictures)
    assert _console_problems(browser) == []
    assert [url for url in _requested_urls(browser) if not url.startswith("data:")] in (
        [],
        [index.as_uri()],
    )
