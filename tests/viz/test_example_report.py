"""The README's first command: its report is one small file that loads nothing outside."""

from __future__ import annotations

import pytest
from test_report_browser import _console_problems, _open, _requested_urls

from dexar_core.cli.main import main

pytestmark = pytest.mark.slow

MAX_REPORT_BYTES = 2 * 1024 * 1024


def test_the_example_report_is_one_small_file_that_works_in_a_browser(browser, tmp_path, capsys):
    code = main(["explain", "--example", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = tmp_path / "report.html"
    assert str(report) in captured.out  # the real file names, not a wildcard
    assert report.stat().st_size < MAX_REPORT_BYTES

    _open(browser, report)
    browser.find_element("css selector", '.chip[data-token="1"]').click()

    assert _console_problems(browser) == []
    assert [url for url in _requested_urls(browser) if not url.startswith("data:")] in (
        [],
        [report.as_uri()],
    )
    assert browser.find_element("id", "map").get_attribute("data-token") == "1"
