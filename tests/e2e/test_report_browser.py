"""The monitoring report opened in headless Chromium: drifted rows, drawn charts, no console
errors, no request beyond the page itself, and a screenshot.

Needs Debian's chromium + chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) and
selenium (dev extra). Skips when they are missing, fails under CI=true.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from _support.browser import chromium, png_size
from titans.data.synth import generate
from titans.monitoring.drift import DatasetDriftResult, detect_drift_against_profile
from titans.monitoring.profile import ReferenceProfile, monitored_view
from titans.monitoring.report import feature_distributions, write_report

pytestmark = pytest.mark.integration

DRIFTS = ["amount_inflation@2024-10-01:1.5", "payment_mix_shift@2024-10-01:0.5"]
INJECTED = {"log_abs_amount", "payment_method"}  # what those two scenarios move
PAGE_LOAD_TIMEOUT_S = 60
WAIT_TIMEOUT_S = 30
#: tr.drifted td background in the template's CSS: proof the inline stylesheet applied
DRIFTED_ROW_BACKGROUND = "rgba(253, 236, 234, 1)"


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves the report folder, records each requested path, logs nothing."""

    requested: list[str]

    def do_GET(self) -> None:
        self.requested.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def report_server(tmp_path: Path) -> Iterator[tuple[str, DatasetDriftResult, list[str]]]:
    """The injected-drift report served on 127.0.0.1 (a free port); URL, result, requests."""
    data = generate(20_000, seed=7, start="2024-01-01", days=366, drifts=DRIFTS)
    cut = pd.Timestamp("2024-10-01")
    profile = ReferenceProfile.from_frame(monitored_view(data[data["date"] < cut]))
    current = monitored_view(data[data["date"] >= cut])
    result = detect_drift_against_profile(profile, current)
    drift = result.to_dict()
    drift["distributions"] = feature_distributions(profile, current)
    site = tmp_path / "site"
    write_report(
        {
            "title": "Titans monitoring report",
            "generated_at": "2026-11-26T12:00:00+00:00",
            "model": "titans-category",
            "version": "3",
            "window": {
                "start": "2024-10-01T00:00:00+00:00",
                "end": "2025-01-01T00:00:00+00:00",
                "label": "92d",
            },
            "predictions": len(current),
            "drift": drift,
            "prediction_drift": None,
            "quality": None,
            "performance": None,
            "system": None,
            "history": [
                {
                    "ts": f"2026-11-2{i}T12:00:00+00:00",
                    "metric": "estimated_accuracy",
                    "value": 0.9 - 0.01 * i,
                    "threshold": 0.88,
                }
                for i in range(5)
            ],
            "alerts": [
                {
                    "name": "data_drift",
                    "severity": "warning",
                    "status": "firing",
                    "first_seen": "2026-11-26T11:00:00+00:00",
                    "summary": "<script>alert(1)</script>",
                }
            ],
            "notes": ["quality and performance were not computed in this test"],
        },
        site / "report.html",
    )
    requested: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requested": requested})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, name="report-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/report.html", result, requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by the system chromedriver (selenium-manager never runs)."""
    with chromium(PAGE_LOAD_TIMEOUT_S, WAIT_TIMEOUT_S) as driver:
        yield driver


def test_report_renders_in_chromium(
    report_server: tuple[str, DatasetDriftResult, list[str]], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, result, requested = report_server
    assert set(result.drifted_features) >= INJECTED  # the scenarios did move these features
    browser.get(url)
    WebDriverWait(browser, WAIT_TIMEOUT_S).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#drift-table tr.drifted"))
    )
    assert browser.title.startswith("Titans monitoring report")

    rows = browser.find_elements(By.CSS_SELECTOR, "#drift-table tbody tr.drifted")
    drifted = [row.get_attribute("data-feature") for row in rows]
    assert sorted(drifted) == sorted(result.drifted_features)
    assert all(row.text.endswith("drifted") for row in rows)
    first_cell = rows[0].find_element(By.TAG_NAME, "td")
    assert first_cell.value_of_css_property("background-color") == DRIFTED_ROW_BACKGROUND

    for feature in result.drifted_features:
        charts = browser.find_elements(
            By.CSS_SELECTOR, f'svg.dist-chart[data-section="drift"][data-column="{feature}"]'
        )
        assert len(charts) == 1, feature
        chart = charts[0]
        assert chart.get_attribute("data-drifted") == "true"
        assert chart.rect["width"] > 100 and chart.rect["height"] > 100, (feature, chart.rect)
        boxes = browser.execute_script(
            "return Array.from(arguments[0].querySelectorAll('rect.bar')).map(r => {"
            " const b = r.getBoundingClientRect();"
            " return {cls: r.getAttribute('class'), w: b.width, h: b.height}; });",
            chart,
        )
        sides = {box["cls"] for box in boxes}
        assert sides == {"bar bar-reference", "bar bar-current"}, feature
        assert all(box["w"] > 0 and box["h"] > 0 for box in boxes), feature
        assert max(box["h"] for box in boxes) > 50, feature  # the tallest bar fills the plot

    # the hostile alert summary is shown as text, not run
    summary = browser.find_element(By.CSS_SELECTOR, "#alerts td:last-child")
    assert summary.text == "<script>alert(1)</script>"

    try:
        logs = browser.get_log("browser")
    except Exception as exc:  # not every driver exposes the log
        pytest.fail(f"chromedriver gave no browser log: {exc}")
    errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
    assert errors == [], errors
    assert requested == ["/report.html"], requested  # nothing else fetched: works offline

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    width, height = png_size(data)
    assert width >= 800 and height >= 600, (width, height)
    assert len(data) > 20_000, len(data)  # a blank page compresses to a few KB
