"""The monitoring report: chart data from a reference profile (checked against the raw data), the
page's drift table on an injected drift, escaping, offline-ness and sections that are missing."""

from __future__ import annotations

import doctest
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from titans.data.synth import generate
from titans.errors import InputError
from titans.monitoring import report as report_module
from titans.monitoring.data_quality import DataQualityMonitor
from titans.monitoring.drift import DatasetDriftResult, detect_drift_against_profile
from titans.monitoring.profile import MONITORED_COLUMNS, ReferenceProfile, monitored_view
from titans.monitoring.report import (
    OTHER_LABEL,
    feature_distributions,
    render_report,
    write_report,
)

HOSTILE = "<script>alert(1)</script>"
DRIFTS = ["amount_inflation@2024-10-01:1.5", "payment_mix_shift@2024-10-01:0.5"]
CUT = pd.Timestamp("2024-10-01")
#: a reference share from the profile's 1,001-quantile sketch is a difference of two CDF values,
#: each within 1/1000 of the raw data's: 0.002 per bin, plus rounding
SKETCH_TOLERANCE = 0.0025
NUMERIC = [c for c, kind in MONITORED_COLUMNS.items() if kind == "numeric"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """20k transactions over 2024, amounts inflated and payment mix shifted from October."""
    data = generate(20_000, seed=7, start="2024-01-01", days=366, drifts=DRIFTS)
    return data[data["date"] < CUT], data[data["date"] >= CUT]


@pytest.fixture(scope="module")
def drift_case(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult]:
    before, after = frames
    reference = monitored_view(before)
    current = monitored_view(after)
    profile = ReferenceProfile.from_frame(reference)
    return profile, reference, current, detect_drift_against_profile(profile, current)


def _report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Titans monitoring report",
        "generated_at": "2026-11-26T12:00:00+00:00",
        "model": "titans-category",
        "version": "3",
        "window": {
            "start": "2024-10-01T00:00:00+00:00",
            "end": "2025-01-01T00:00:00+00:00",
            "label": "92d",
        },
        "predictions": 0,
        "drift": None,
        "prediction_drift": None,
        "quality": None,
        "performance": None,
        "system": None,
        "history": [],
        "alerts": [],
        "notes": [],
    }
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def drift_page(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> str:
    profile, _, current, result = drift_case
    drift = result.to_dict()
    drift["distributions"] = feature_distributions(profile, current)
    return render_report(
        _report(
            predictions=len(current),
            drift=drift,
            quality=DataQualityMonitor(reference_profile=profile).monitor_input_quality(frames[1]),
        )
    )


class _Page(HTMLParser):
    """The parts of the page the tests read: drift-table rows, charts and their bars, URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.table: str | None = None
        self.rows: dict[str, list[tuple[str, str]]] = {}
        self.charts: dict[str, list[dict[str, str]]] = {}
        self.bars: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.urls: list[str] = []
        self._chart: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.urls += [a[k] for k in ("src", "href") if k in a]
        if tag == "table" and "drift-table" in a.get("class", ""):
            self.table = a["id"]
            self.rows[self.table] = []
        elif tag == "tr" and self.table and "data-feature" in a:
            self.rows[self.table].append((a["data-feature"], a.get("class", "")))
        elif tag == "svg" and "dist-chart" in a.get("class", ""):
            self.charts.setdefault(a["data-section"], []).append(a)
            self._chart = (a["data-section"], a["data-column"])
            self.bars[self._chart] = []
        elif tag == "rect" and self._chart and "bar" in a.get("class", "").split():
            self.bars[self._chart].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.table = None
        elif tag == "svg":
            self._chart = None


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def _section(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}">')
    return page[start : page.index("</section>", start)]


# ----------------------------------------------------------------------------- distributions


def test_docstring_example_holds() -> None:
    failures, tried = doctest.testmod(report_module)
    assert tried > 0 and failures == 0


def test_numeric_reference_shares_match_the_raw_reference(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
) -> None:
    profile, reference, current, _ = drift_case
    charts = feature_distributions(profile, current, columns=NUMERIC, bins=20)
    assert list(charts) == NUMERIC
    for name, chart in charts.items():
        edges = np.asarray(chart["edges"])
        ref, cur = np.asarray(chart["reference"]), np.asarray(chart["current"])
        assert chart["kind"] == "numeric"
        assert np.all(np.diff(edges) > 0), name
        assert ref.size == cur.size == edges.size - 1 and 2 <= ref.size <= 20, name
        assert ref.sum() == pytest.approx(1.0, abs=1e-9), name
        assert cur.sum() == pytest.approx(1.0, abs=1e-12), name
        raw = reference[name].to_numpy(dtype="float64")
        now = current[name].to_numpy(dtype="float64")
        # the range covers both sides' 0.5 %–99.5 % quantiles
        assert edges[0] <= min(np.quantile(raw, 0.005), np.quantile(now, 0.005)) + 1e-9, name
        assert edges[-1] >= max(np.quantile(raw, 0.995), np.quantile(now, 0.995)) - 1e-9, name
        clipped = np.clip(raw, edges[0], edges[-1])  # the outer bins take what lies beyond
        expected_ref = np.histogram(clipped, bins=edges)[0] / raw.size
        assert np.abs(ref - expected_ref).max() <= SKETCH_TOLERANCE, name
        expected_cur = np.histogram(np.clip(now, edges[0], edges[-1]), bins=edges)[0] / now.size
        np.testing.assert_allclose(cur, expected_cur, atol=1e-12, err_msg=name)


def test_continuous_columns_get_exactly_bins_equal_width_bins(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
) -> None:
    profile, _, current, _ = drift_case
    for bins in (5, 20, 37):
        chart = feature_distributions(profile, current, columns=["log_abs_amount"], bins=bins)
        edges = np.asarray(chart["log_abs_amount"]["edges"])
        assert edges.size == bins + 1
        np.testing.assert_allclose(np.diff(edges), np.full(bins, edges[1] - edges[0]), rtol=1e-9)


def test_whole_number_columns_get_bins_between_whole_numbers(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
) -> None:
    profile, reference, current, _ = drift_case
    chart = feature_distributions(profile, current, columns=["day_of_month"], bins=20)
    edges = np.asarray(chart["day_of_month"]["edges"])
    # 31 days, at most 20 bins: two days per bin, edges at half days
    np.testing.assert_allclose(edges, np.arange(0.5, 33.0, 2.0))
    days = reference["day_of_month"].to_numpy()
    first_two_days = np.isin(days, [1, 2]).mean()
    assert chart["day_of_month"]["reference"][0] == pytest.approx(first_two_days, abs=0.0025)


def test_categorical_top_values_then_other_with_a_lumped_profile() -> None:
    reference = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 6 + ["e"] * 4})
    profile = ReferenceProfile.from_frame(reference, kinds={"c": "categorical"}, max_categories=3)
    # "z" is unseen and "d" is in the profile's lumped rest: both count as the rest, as the
    # drift test counts them; missing values are left out
    current = pd.DataFrame(
        {"c": ["a"] * 20 + ["b"] * 18 + ["d"] * 2 + ["c"] * 40 + ["z"] * 20 + [None] * 7}
    )
    chart = feature_distributions(profile, current, top=2)["c"]
    assert chart["kind"] == "categorical"
    assert chart["categories"] == ["a", "c", OTHER_LABEL]
    np.testing.assert_allclose(chart["reference"], [0.5, 0.1, 0.4])
    np.testing.assert_allclose(chart["current"], [0.2, 0.4, 0.4])
    assert (chart["n_reference"], chart["n_current"]) == (100, 100)


def test_categorical_unseen_values_are_their_own_bars_when_the_profile_lists_all() -> None:
    profile = ReferenceProfile.from_frame(
        pd.DataFrame({"c": ["x"] * 60 + ["y"] * 40}), kinds={"c": "categorical"}
    )
    chart = feature_distributions(
        profile, pd.DataFrame({"c": ["x"] * 10 + ["y"] * 10 + ["new"] * 80})
    )["c"]
    assert chart["categories"] == ["new", "x", "y"]  # no empty "other" bar
    np.testing.assert_allclose(chart["reference"], [0.0, 0.6, 0.4])
    np.testing.assert_allclose(chart["current"], [0.8, 0.1, 0.1])


def test_empty_current_window_gives_zero_current_shares(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
) -> None:
    profile, _, current, _ = drift_case
    charts = feature_distributions(profile, current.iloc[:0])
    assert set(charts) == set(profile.columns)
    for name, chart in charts.items():
        assert sum(chart["current"]) == 0.0 and chart["n_current"] == 0, name
        assert sum(chart["reference"]) == pytest.approx(1.0, abs=1e-9), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"bins": 0}, "bins"), ({"top": 0}, "top"), ({"columns": ["nope"]}, "nope")],
)
def test_bad_arguments_raise_input_error(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    profile, _, current, _ = drift_case
    with pytest.raises(InputError, match=message):
        feature_distributions(profile, current, **kwargs)


# ----------------------------------------------------------------------------- the page


def test_drift_table_marks_exactly_the_drifted_features_first(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
    drift_page: str,
) -> None:
    _, _, _, result = drift_case
    # the injected drifts are found (else this test would check nothing interesting)
    assert {"log_abs_amount", "payment_method"} <= set(result.drifted_features)
    page = _parse(drift_page)
    rows = page.rows["drift-table"]
    assert [f for f, _ in rows if f] and len(rows) == len(result.columns)
    drifted = [feature for feature, cls in rows if cls == "drifted"]
    assert sorted(drifted) == sorted(result.drifted_features)
    assert [cls for _, cls in rows] == ["drifted"] * len(drifted) + ["stable"] * (
        len(rows) - len(drifted)
    )
    charts = {c["data-column"]: c for c in page.charts["drift"]}
    assert set(charts) == set(result.columns)
    for name in result.columns:
        expected = "true" if name in result.drifted_features else "false"
        assert charts[name]["data-drifted"] == expected, name
        bars = page.bars[("drift", name)]
        assert bars and all(float(b["height"]) > 0 for b in bars), name
        assert {b["class"] for b in bars} == {"bar bar-reference", "bar bar-current"}, name
    # the summary names the count of drifted features
    assert f"{len(drifted)} of {len(rows)} features drifted" in _section(drift_page, "summary")


def test_bar_heights_are_proportional_to_the_shares(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
    drift_page: str,
) -> None:
    profile, _, current, _ = drift_case
    chart = feature_distributions(profile, current, columns=["payment_method"])["payment_method"]
    bars = _parse(drift_page).bars[("drift", "payment_method")]
    current_heights = np.array([float(b["height"]) for b in bars if "bar-current" in b["class"]])
    shares = np.array([s for s in chart["current"] if s > 0])
    np.testing.assert_allclose(
        current_heights / current_heights.max(), shares / shares.max(), atol=0.01
    )


def test_page_is_self_contained(drift_page: str) -> None:
    page = _parse(drift_page)
    assert page.urls and all(u.startswith(("#", "data:")) for u in page.urls), page.urls
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", drift_page, re.I)
    assert "@import" not in drift_page and "url(" not in drift_page
    assert "<script" not in drift_page.lower()
    assert "Content-Security-Policy" in drift_page and "default-src 'none'" in drift_page


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    values = ["card", HOSTILE, "cash"] * 40
    profile = ReferenceProfile.from_frame(
        pd.DataFrame({"payment_method": ["card", "cash"] * 60}),
        kinds={"payment_method": "categorical"},
    )
    current = pd.DataFrame({"payment_method": values})
    result = detect_drift_against_profile(profile, current)
    drift = result.to_dict()
    drift["distributions"] = feature_distributions(profile, current)
    assert HOSTILE in drift["distributions"]["payment_method"]["categories"]
    report = _report(
        model=f'm"{HOSTILE}',
        drift=drift,
        alerts=[
            {
                "name": "drift",
                "severity": "warning",
                "status": "firing",
                "first_seen": "2026-11-26T11:00:00+00:00",
                "summary": HOSTILE,
            }
        ],
        notes=[HOSTILE],
        history=[
            {"ts": "2026-11-26T11:00:00+00:00", "metric": HOSTILE, "value": 1.0, "threshold": None}
        ],
    )
    page = render_report(report)
    assert "<script" not in page.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert page.count(escaped) >= 5  # category label + bar title, alert, note, metric name
    assert _parse(page).rows["drift-table"] == [("payment_method", "drifted")]
    path = write_report(report, tmp_path / "nested" / "report.html")
    assert path.read_text(encoding="utf-8") == page


def test_missing_sections_say_not_available_never_pass() -> None:
    page = render_report(
        _report(
            alerts=None,
            history=None,
            unavailable={"drift": "no reference profile logged with version 3"},
            notes=["drift skipped: no reference profile"],
        )
    )
    for section in (
        "drift",
        "prediction-drift",
        "performance",
        "quality",
        "system",
        "alerts",
        "history",
    ):
        html = _section(page, section)
        assert "not available" in html, section
        assert 'class="badge ok"' not in html and "no drift" not in html, section
    assert "no reference profile logged with version 3" in _section(page, "drift")
    summary = _section(page, "summary")
    assert summary.count('class="na"') == 5 and 'class="ok"' not in summary
    assert "drift skipped: no reference profile" in _section(page, "notes")


def test_zero_predictions_renders(
    drift_case: tuple[ReferenceProfile, pd.DataFrame, pd.DataFrame, DatasetDriftResult],
) -> None:
    profile, _, current, _ = drift_case
    empty = current.iloc[:0]
    result = detect_drift_against_profile(profile, empty)
    drift = result.to_dict()
    drift["distributions"] = feature_distributions(profile, empty)
    performance = {
        "realised": None,
        "estimated": None,
        "change_points": None,
        "detector": None,
        "labels_pending": 0,
    }
    page = render_report(_report(drift=drift, performance=performance, alerts=[]))
    parsed = _parse(page)
    assert [cls for _, cls in parsed.rows["drift-table"]] == ["stable"] * len(profile.columns)
    assert "no non-missing values in current" in page
    assert len(parsed.charts["drift"]) == len(profile.columns)
    assert all(b["class"] == "bar bar-reference" for bars in parsed.bars.values() for b in bars)
    performance_html = _section(page, "performance")
    assert performance_html.count("not available") == 3  # two cards and change points
    assert "no alerts in this window" in _section(page, "alerts")


def test_performance_system_and_history_are_drawn() -> None:
    card = {
        "metric": "accuracy",
        "value": 0.87,
        "lower": 0.85,
        "upper": 0.89,
        "n": 900,
        "method": "wilson",
        "baseline": 0.91,
        "degraded": True,
    }
    history = [
        {
            "ts": f"2026-11-2{i}T12:00:00+00:00",
            "metric": "estimated_accuracy",
            "value": 0.9 - 0.01 * i,
            "threshold": 0.88,
        }
        for i in range(6)
    ]
    history += [
        {
            "ts": "2026-11-20T12:00:00+00:00",
            "metric": "error_rate",
            "value": 0.01,
            "threshold": None,
        }
    ]
    page = render_report(
        _report(
            performance={
                "realised": card,
                "estimated": None,
                "change_points": 2,
                "detector": "adwin",
                "labels_pending": 37,
            },
            system={
                "latency_ms": {"p50": 3.1, "p95": 9.8, "p99": 21.0},
                "throughput_rps": 140.5,
                "error_rate": 0.002,
                "cpu_percent": 41.0,
                "memory_mb": 512.3,
            },
            history=history,
        )
    )
    performance = _section(page, "performance")
    assert "accuracy 0.87" in performance and "degraded" in performance
    assert "[0.85, 0.89]" in performance and "2 (adwin)" in performance
    assert "37 await labels" not in performance  # realised is there: the reason is not needed
    assert "no estimate" in performance
    system = _section(page, "system")
    assert "21 ms" in system and "0.20%" in system and "140.5 req/s" in system
    charts = re.findall(r'<svg class="history-chart" data-metric="([^"]+)"', page)
    assert charts == ["estimated_accuracy", "error_rate"]
    accuracy = _section(page, "history").split('data-metric="error_rate"')[0]
    assert accuracy.count("<circle") == 6 and 'class="threshold-line"' in accuracy
    # values fall over time: each point is lower on the page (larger y) than the one before
    ys = [
        float(y)
        for y in re.findall(r'<circle class="history-point" cx="[^"]+" cy="([^"]+)"', accuracy)
    ]
    assert ys == sorted(ys) and ys[0] < ys[-1]


def test_render_report_refuses_a_non_mapping() -> None:
    with pytest.raises(InputError, match="mapping"):
        render_report(["not", "a", "report"])  # type: ignore[arg-type]
