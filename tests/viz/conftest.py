"""A real headless Chromium for the report tests: Debian's chromium and chromedriver.

selenium is given both paths explicitly, so it never tries to download a driver. When
the browser is missing the browser tests are skipped, except under ``CI=true``, where a
missing browser fails them (``.ci/run`` installs it with apt-get).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

BROWSER_NAMES = ("chromium", "chromium-browser")
DRIVER_NAMES = ("chromedriver",)


def _found(names: tuple[str, ...], variable: str) -> str | None:
    given = os.environ.get(variable)
    if given:
        return given
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by selenium, logging the console and the network."""
    browser_path = _found(BROWSER_NAMES, "DEXAR_CHROMIUM")
    driver_path = _found(DRIVER_NAMES, "DEXAR_CHROMEDRIVER")
    if browser_path is None or driver_path is None:
        message = (
            "no chromium and chromedriver on PATH: apt-get install chromium chromium-driver "
            "(or set DEXAR_CHROMIUM and DEXAR_CHROMEDRIVER)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the report's browser tests cannot run: {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    # Root (sessions and CI) needs --no-sandbox; no GPU on these machines.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1400"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
