"""Headless Chromium for browser tests: Debian's chromium + chromium-driver through selenium.

A missing browser skips the test on a workstation and fails it under CI=true.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def missing(message: str) -> None:
    """Skip (workstation) or fail (CI=true): CI cannot go green by skipping."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; .ci/run must install it", pytrace=False)
    pytest.skip(message)


def _binary(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None
    )
    if found is None:
        missing(f"{name} is not installed (apt-get install chromium chromium-driver)")
    assert found is not None
    return found


@contextmanager
def chromium(page_load_timeout: float = 60, script_timeout: float = 30) -> Iterator[Any]:
    """A headless Chromium WebDriver (system chromedriver; selenium-manager never runs)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed (pip install 'selenium>=4.20,<5')")
    browser, chromedriver = _binary("chromium"), _binary("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2400",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(page_load_timeout)
        driver.set_script_timeout(script_timeout)
        yield driver
    finally:
        driver.quit()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG; fails when ``data`` is not one."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
