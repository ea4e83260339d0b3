"""ModelMonitor over real served traffic: models trained and promoted in a real MLflow registry,
predictions made through the API (TestClient) into the prediction log, feedback posted, and an
alert delivered to a local webhook receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from _support.browser import chromium, png_size
from _support.receivers import recording_server
from _support.serving import promote, serving_settings
from titans.cli import _register_groups, app
from titans.config import AlertSettings, MonitorSettings, Settings
from titans.data.synth import generate
from titans.errors import InputError
from titans.models.train import train_models
from titans.monitoring.alerts import AlertManager
from titans.monitoring.model_monitor import ModelMonitor, WindowReport, parse_window
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key
from titans.store import Store
from titans.store.models import MonitoringResult, MonitorMetric, Prediction

RAW, KEY = generate_api_key("monitor-test", ["predict"])
AUTH = {"Authorization": f"Bearer {RAW}"}
DRIFT_DAY = "2024-10-01"
#: drift injected on DRIFT_DAY: pricier, paid differently, from merchants never seen in training
DRIFTS = [
    f"amount_inflation@{DRIFT_DAY}:1.6",
    f"payment_mix_shift@{DRIFT_DAY}:0.6",
    f"new_merchants@{DRIFT_DAY}:0.4",
]
WINDOW_ROWS = 400
runner = CliRunner()
_register_groups()


def _settings(home: Path, **overrides: Any) -> Settings:
    overrides.setdefault("prediction_log_flush_seconds", 0.05)
    overrides.setdefault("monitor", MonitorSettings(min_labels=30, min_rows=50))
    overrides.setdefault("rate_limit_burst", 100_000)
    return serving_settings(home, [KEY], model_poll_seconds=0, **overrides)


def _transactions(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for record in frame.to_dict("records"):
        rows.append(
            {
                "date": pd.Timestamp(record["date"]).date().isoformat(),
                "type": record["type"],
                "description": record["description"],
                "amount": float(record["amount"]),
                "payment_method": record["payment_method"],
                "reference": record["reference"],
                "status": record["status"],
            }
        )
    return rows


@dataclass
class Traffic:
    """Two windows of category traffic served by the API: before and after the drift."""

    home: Path
    before: tuple[datetime, datetime]
    after: tuple[datetime, datetime]
    after_ids: list[str]


def _serve(client: TestClient, frame: pd.DataFrame, feedback: bool) -> list[str]:
    response = client.post(
        "/predict/batch", json={"model": "category", "transactions": _transactions(frame)}
    )
    assert response.status_code == 200, response.text
    ids = [item["prediction_id"] for item in response.json()["predictions"]]
    if feedback:
        for pid, category in zip(ids, frame["category"], strict=True):
            answer = client.post(
                "/feedback", json={"prediction_id": pid, "actual": {"category": category}}
            )
            assert answer.status_code == 200, answer.text
    return ids


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    home = tmp_path_factory.mktemp("model-monitor")
    settings = _settings(home)
    frame = generate(16_000, seed=11, drifts=DRIFTS)
    dates = pd.to_datetime(frame["date"])
    training = frame[dates < "2024-08-01"]
    for result in train_models(
        training, models=["category", "amount", "anomaly"], seed=11, settings=settings
    ):
        promote(settings, result.registered_name, result.version)
    expenses = frame[frame["type"] == "Expense"]
    expense_dates = pd.to_datetime(expenses["date"])
    calm = expenses[(expense_dates >= "2024-08-01") & (expense_dates < DRIFT_DAY)]
    drifted = expenses[expense_dates >= DRIFT_DAY]
    calm = calm.sample(WINDOW_ROWS, random_state=1).sort_values("date")
    drifted = drifted.sample(WINDOW_ROWS, random_state=1).sort_values("date")
    with TestClient(create_app(settings, poll=False), headers=AUTH) as client:
        start = datetime.now(UTC)
        _serve(client, calm, feedback=True)
        middle = datetime.now(UTC)
        time.sleep(0.05)
        middle_after = datetime.now(UTC)
        after_ids = _serve(client, drifted, feedback=True)
        end = datetime.now(UTC) + timedelta(milliseconds=1)
    return Traffic(home, (start, middle), (middle_after, end), after_ids)


def _monitor(traffic: Traffic, **overrides: Any) -> ModelMonitor:
    return ModelMonitor(_settings(traffic.home, **overrides))


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_drift_is_named_after_the_change_and_absent_before(traffic: Traffic) -> None:
    monitor = _monitor(traffic)
    calm = monitor.run_window("category", start=traffic.before[0], end=traffic.before[1])
    drifted = monitor.run_window("category", start=traffic.after[0], end=traffic.after[1])

    assert calm.predictions == drifted.predictions == WINDOW_ROWS
    assert (calm.model_name, calm.model_version) == ("titans-category", "1")
    calm_drift = calm.result("data_drift")
    assert calm_drift is not None
    assert not calm_drift.breached
    # nine hypothesis tests at p < 0.05 on 400 rows: one may flag by chance, never the injected
    assert len(calm.drifted_features) <= 1
    assert not {"amount", "log_abs_amount", "payment_method"} & set(calm.drifted_features)
    # the injected changes: amount (and its log), payment method, merchants (references)
    assert {"amount", "log_abs_amount", "payment_method"} <= set(drifted.drifted_features)
    assert "day_of_week" not in drifted.drifted_features
    share = drifted.result("data_drift").metric("drift_share")  # type: ignore[union-attr]
    assert share is not None and share.verdict == "breach" and share.value is not None
    assert share.value == pytest.approx(
        len(drifted.drifted_features)
        / len(drifted.result("data_drift").details["drift"]["columns"])  # type: ignore[union-attr]
    )
    # the category label is not an input of the category model: not compared, and said so
    assert "category" in drifted.result("data_drift").details["not_in_inputs"]  # type: ignore[union-attr]


def test_every_result_is_stored_and_exported_as_gauges(traffic: Traffic) -> None:
    monitor = _monitor(traffic)
    report = monitor.run_window("category", start=traffic.after[0], end=traffic.after[1])
    with Store(monitor.settings).session() as session:
        rows = session.scalars(
            select(MonitorMetric).where(MonitorMetric.window_end == traffic.after[1])
        ).all()
        results = session.scalars(
            select(MonitoringResult).where(MonitoringResult.window_end == traffic.after[1])
        ).all()
        stored = {
            (r.kind, r.metric): (r.value, r.threshold, r.verdict, r.model_version) for r in rows
        }
        kinds = {r.kind: r.drifted for r in results}
    expected = {
        (result.kind, m.metric): (m.value, m.threshold, m.verdict, "1")
        for result in report.results
        for m in result.metrics
    }
    assert stored == expected
    assert kinds["data_drift"] is True
    assert set(kinds) == {
        "data_drift",
        "data_quality",
        "prediction_quality",
        "performance",
        "concept_drift",
    }

    samples = _samples(monitor.export_metrics())
    share = report.result("data_drift").metric("drift_share").value  # type: ignore[union-attr]
    assert samples[("titans_drift_share", (("model", "titans-category"),))] == pytest.approx(share)
    for feature in report.drifted_features:
        key = ("titans_feature_drifted", (("feature", feature), ("model", "titans-category")))
        assert samples[key] == 1.0
    assert (
        samples[
            ("titans_feature_drifted", (("feature", "day_of_week"), ("model", "titans-category")))
        ]
        == 0.0
    )
    assert (
        samples[("titans_monitor_window_predictions", (("model", "titans-category"),))]
        == WINDOW_ROWS
    )
    breach = (
        "titans_monitor_breach",
        (("kind", "data_drift"), ("metric", "drift_share"), ("model", "titans-category")),
    )
    assert samples[breach] == 1.0
    assert monitor.history("category", metrics=["drift_share"])[-1]["verdict"] == "breach"


def test_concept_drift_judges_labelled_feedback_against_the_validation_baseline(
    traffic: Traffic,
) -> None:
    monitor = _monitor(traffic)
    report = monitor.run_window("category", start=traffic.after[0], end=traffic.after[1])
    concept = report.result("concept_drift")
    assert concept is not None
    assert concept.details["labelled"] == WINDOW_ROWS
    assert concept.details["labels_pending"] == 0
    realised = concept.details["realised"]
    assert realised["lower"] <= realised["value"] <= realised["upper"]
    assert realised["n"] == WINDOW_ROWS
    reference = monitor.reference("category")
    assert realised["baseline"] == pytest.approx(reference.metrics["accuracy"])
    accuracy = concept.metric("realised_accuracy")
    assert accuracy is not None and accuracy.threshold == pytest.approx(
        reference.metrics["accuracy"] * 0.95
    )
    # breach exactly when the whole interval lies below the floor
    assert (accuracy.verdict == "breach") == (realised["upper"] < accuracy.threshold)
    assert concept.metric("error_stream_changes") is not None

    # with a label delay longer than the traffic's age, no label is due yet: nothing is judged
    delayed = _monitor(traffic, monitor=MonitorSettings(label_delay_seconds=3600))
    late = delayed.run_window(
        "category", start=traffic.after[0], end=traffic.after[1], store_results=False
    ).result("concept_drift")
    assert late is not None
    assert late.details["labels_pending"] == WINDOW_ROWS
    assert late.details["labelled"] == 0
    assert late.metric("realised_accuracy").verdict == "insufficient"  # type: ignore[union-attr]


def test_estimated_accuracy_drops_with_unseen_merchants_before_any_label(traffic: Traffic) -> None:
    monitor = _monitor(traffic)
    calm = monitor.run_window(
        "category", start=traffic.before[0], end=traffic.before[1], store_results=False
    )
    drifted = monitor.run_window(
        "category", start=traffic.after[0], end=traffic.after[1], store_results=False
    )
    est_calm = calm.result("performance").details["estimated"]  # type: ignore[union-attr]
    est_drift = drifted.result("performance").details["estimated"]  # type: ignore[union-attr]
    assert est_calm["method"] == est_drift["method"] == "cbpe"
    assert est_drift["value"] < est_calm["value"] - 0.05
    # the estimate made without labels and the accuracy the labels later showed agree
    realised = drifted.result("concept_drift").details["realised"]["value"]  # type: ignore[union-attr]
    assert est_drift["lower"] - 0.05 <= realised <= est_drift["upper"] + 0.05


def test_prediction_quality_and_system_performance_from_the_log(traffic: Traffic) -> None:
    monitor = _monitor(traffic)
    report = monitor.run_window(
        "category", start=traffic.after[0], end=traffic.after[1], store_results=False
    )
    quality = report.result("prediction_quality")
    assert quality is not None
    assert quality.metric("invalid_output_share").value == 0.0  # type: ignore[union-attr]
    confidence = quality.metric("mean_confidence")
    assert confidence is not None and 0 < confidence.value < 1  # type: ignore[operator]
    assert quality.metric("prediction_drift") is not None

    system = next(r for r in report.results if "latency_ms" in r.details)
    latency = system.details["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    seconds = (traffic.after[1] - traffic.after[0]).total_seconds()
    assert system.details["throughput_rps"] == pytest.approx(WINDOW_ROWS / seconds)
    assert system.details["memory_mb"] > 10
    assert system.details["pid"] == os.getpid()


def test_drift_alert_is_delivered_once_with_the_drifted_features(traffic: Traffic) -> None:
    with recording_server() as receiver:
        settings = _settings(
            traffic.home,
            alerts=AlertSettings(
                webhook_url=SecretStr(receiver.url + "/hook"),
                routes={"info": [], "warning": ["webhook"], "critical": ["webhook"]},
                delivery_attempts=1,
            ),
        )
        store = Store(settings)
        monitor = ModelMonitor(settings, store=store, alert_manager=AlertManager(settings, store))
        reports: list[WindowReport] = [
            monitor.run_window("category", start=traffic.after[0], end=traffic.after[1])
            for _ in range(4)
        ]
        hooks = receiver.bodies("/hook")
    drift_events = [[e for e in r.alerts if e["metric"] == "drift_share"] for r in reports]
    # data_drift_share_high holds for 2 evaluations: pending, then firing (notified once)
    assert [events[0]["state"] for events in drift_events] == [
        "pending",
        "firing",
        "firing",
        "firing",
    ]
    notified = [e for events in drift_events for e in events if e["notified"]]
    drift_hooks = [h for h in hooks if "drift_share" in str(h)]
    assert len(drift_hooks) == len(notified) >= 1
    assert len(drift_hooks) <= 2  # share > 0.30 and, if it is that large, > 0.60: one each
    body = str(drift_hooks[0])
    for feature in reports[0].drifted_features:
        assert feature in body
    assert "titans-category" in body


def test_data_quality_of_the_inputs_is_judged_and_exported(traffic: Traffic) -> None:
    monitor = _monitor(traffic)
    report = monitor.run_window(
        "category", start=traffic.after[0], end=traffic.after[1], store_results=False
    )
    quality = report.result("data_quality")
    assert quality is not None
    score = quality.metric("quality_score")
    assert score is not None and score.verdict == "ok" and score.value >= 0.9  # type: ignore[operator]
    # the category is the label of this model, never an input: not counted as missing
    assert "category" not in quality.details["quality"]["completeness"]
    samples = _samples(monitor.export_metrics())
    key = ("titans_data_quality_score", (("dataset", "titans-category"),))
    assert samples[key] == pytest.approx(score.value)

    data = monitor.load_window("category", *traffic.after)
    broken = data.inputs.copy()
    blank = np.arange(len(broken)) % 2 == 0
    broken.loc[blank, "description"] = None
    broken.loc[blank, "reference"] = None
    faulty = monitor.monitor_data_quality("category", broken)
    missing = faulty.metric("missing_share")
    assert missing is not None and missing.value == pytest.approx(
        2 * blank.sum() / (len(broken) * 7)  # 6 required columns + payment_method (expenses)
    )
    worse = faulty.metric("quality_score")
    assert worse is not None and worse.value < score.value  # type: ignore[operator]
    assert (worse.verdict == "breach") == (worse.value < worse.threshold)  # type: ignore[operator]


def test_amount_concept_drift_watches_actuals_leaving_the_predicted_interval(
    traffic: Traffic,
) -> None:
    monitor = _monitor(traffic)
    baseline = monitor.reference("amount").metrics["mae"]
    rng = np.random.default_rng(3)
    n = 600
    predicted = rng.uniform(20, 400, size=2 * n)
    lower, upper = predicted * 0.7, predicted * 1.3
    # calm: 10 % of actuals outside the interval; then 60 % (prices rose by half)
    calm = predicted[:n] * np.where(rng.random(n) < 0.1, 1.5, rng.uniform(0.8, 1.2, n))
    risen = predicted[n:] * np.where(rng.random(n) < 0.6, 1.5, rng.uniform(0.8, 1.2, n))
    steady = monitor.monitor_concept_drift(
        "amount", predicted[:n], calm, intervals=(lower[:n], upper[:n])
    )
    assert steady.details["change_points"] == []
    assert steady.details["error_stream"] == "share of actuals outside the predicted interval"
    shifted = monitor.monitor_concept_drift(
        "amount",
        predicted,
        np.concatenate([calm, risen]),
        intervals=(lower, upper),
    )
    points = shifted.details["change_points"]
    assert points and n <= points[0] <= n + 300, points
    assert shifted.metric("error_stream_changes").verdict == "breach"  # type: ignore[union-attr]
    mae = shifted.metric("realised_mae")
    assert mae is not None and mae.threshold == pytest.approx(baseline * 1.05)
    realised = shifted.details["realised"]
    assert realised["value"] == pytest.approx(
        np.abs(predicted - np.concatenate([calm, risen])).mean()
    )
    assert (mae.verdict == "breach") == (realised["lower"] > mae.threshold)
    with pytest.raises(InputError, match="one of each per prediction"):
        monitor.monitor_concept_drift("amount", predicted, predicted, intervals=(lower[:3], upper))


def test_inputs_that_cannot_be_judged_are_refused_with_one_line(traffic: Traffic) -> None:
    monitor = _monitor(traffic)
    with pytest.raises(InputError, match="unknown model 'fraud'"):
        monitor.monitor_data_drift("fraud", pd.DataFrame())
    with pytest.raises(InputError, match="lacks column"):
        monitor.monitor_data_drift("category", pd.DataFrame({"amount": [1.0]}))
    with pytest.raises(InputError, match="2 predictions but 3 actuals"):
        monitor.monitor_concept_drift("category", ["a", "b"], ["a", "b", "c"])
    with pytest.raises(InputError, match="timezone-aware"):
        monitor.load_window("category", datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(InputError, match="at or after its end"):
        now = datetime.now(UTC)
        monitor.load_window("category", now, now)
    with pytest.raises(InputError, match="window 'soon'"):
        parse_window("soon")
    with pytest.raises(InputError, match="longer than 10000 days"):
        parse_window("10001d")
    with pytest.raises(InputError, match="lack column"):
        monitor.monitor_prediction_quality("category", pd.DataFrame({"prediction": ["x"]}))


def test_direct_calls_match_the_task_list_signatures(traffic: Traffic) -> None:
    monitor = _monitor(traffic)
    # a shadow score (B scoring what A served) was never served: not part of the window
    with Store(monitor.settings).session() as session:
        served = session.scalars(select(Prediction).where(Prediction.ts >= traffic.after[0]))
        first = next(iter(served))
        session.add(
            Prediction(
                prediction_id=f"{first.prediction_id}:shadow",
                ts=first.ts,
                model_name=first.model_name,
                model_version="9",
                alias="challenger",
                arm="B",
                features=first.features,
                prediction=first.prediction,
                score=first.score,
                latency_ms=first.latency_ms,
            )
        )
    data = monitor.load_window("category", *traffic.after)
    assert len(data) == WINDOW_ROWS and "9" not in set(data.versions)
    drift = monitor.monitor_data_drift("category", data.inputs)
    assert (
        drift.drifted_features
        == monitor.run_window(
            "category", start=traffic.after[0], end=traffic.after[1], store_results=False
        ).drifted_features
    )
    concept = monitor.monitor_concept_drift("category", data.outputs["prediction"], data.actuals)
    assert concept.details["labelled"] == WINDOW_ROWS
    performance = monitor.monitor_model_performance("category", window=timedelta(days=1))
    assert performance.details["rows"] >= 2 * WINDOW_ROWS
    # amount: no traffic in the log, so latency cannot be judged and says so
    empty = monitor.monitor_model_performance("amount", window="1h")
    assert empty.metric("latency_p95_ms").verdict == "insufficient"  # type: ignore[union-attr]
    assert np.isfinite(monitor.reference("amount").metrics["mae"])


# ---------------------------------------------------------------- the CLI


def _env(home: Path) -> dict[str, str]:
    return {"TITANS_HOME": str(home), "TITANS_MONITOR__MIN_ROWS": "50"}


def test_cli_run_and_report_name_the_drifted_features(
    traffic: Traffic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env(traffic.home).items():
        monkeypatch.setenv(key, value)
    end = traffic.after[1].isoformat()
    seconds = f"{(traffic.after[1] - traffic.after[0]).total_seconds():.6f}"
    result = runner.invoke(
        app,
        ["monitor", "run", "--model", "category", "--window", seconds, "--end", end, "--no-alerts"],
    )
    assert result.exit_code == 0, result.output
    assert "drifted features:" in result.output
    assert "payment_method" in result.output and "breach" in result.output

    out = tmp_path / "report.html"
    result = runner.invoke(
        app,
        [
            "monitor",
            "report",
            "--model",
            "category",
            "--window",
            "1d",
            "--end",
            end,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "titans-category" in html and "payment_method" in html

    page = tmp_path / "quality.html"
    result = runner.invoke(
        app, ["monitor", "quality", "-w", "1d", "-m", "category", "-o", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert "quality score" in result.output and page.is_file()

    bad = runner.invoke(app, ["monitor", "run", "--model", "fraud"])
    assert bad.exit_code != 0
    assert isinstance(bad.exception, InputError)
    assert "unknown model 'fraud'" in str(bad.exception)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def exporter(traffic: Traffic) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = {**os.environ, **_env(traffic.home), "TITANS_MONITOR__WINDOW": "1d"}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("titans")),
            "monitor",
            "serve",
            "--port",
            str(port),
            "--model",
            "category",
            "--interval",
            "0.5",
            "--no-alerts",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.integration
def test_monitor_serve_exports_the_drift_gauges_and_stops_on_sigterm(
    exporter: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = exporter
    deadline = time.monotonic() + 90
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            text = ""
        if 'titans_drift_share{model="titans-category"}' in text:
            break
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        time.sleep(0.5)
    assert 'titans_drift_share{model="titans-category"}' in text
    assert 'titans_feature_drifted{feature="payment_method",model="titans-category"} 1.0' in text
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    output = process.stdout.read().decode()  # type: ignore[union-attr]
    assert "monitor stopped after" in output


# ---------------------------------------------------------------- /ui/report


def test_ui_report_needs_a_key_and_lists_the_drifted_features(traffic: Traffic) -> None:
    settings = _settings(traffic.home)
    drifted = (
        _monitor(traffic)
        .run_window("category", start=traffic.after[0], end=traffic.after[1], store_results=False)
        .drifted_features
    )
    with TestClient(create_app(settings, poll=False)) as client:
        assert client.get("/ui/report").status_code == 401
        page = client.get("/ui/report?model=category&window=1d", headers=AUTH)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        bad = client.get("/ui/report?model=category&window=soon", headers=AUTH)
        assert bad.status_code == 422
        long = client.get("/ui/report?model=category&window=999999d", headers=AUTH)
        assert long.status_code == 422
    html = page.text
    # a day-long window holds the calm and the drifted traffic: the drifted inputs still show
    for feature in ("payment_method", "log_abs_amount"):
        assert f'data-feature="{feature}"' in html
        assert feature in drifted


@pytest.fixture
def live_api(traffic: Traffic) -> Iterator[str]:
    """The API (uvicorn, in a thread) on a free loopback port; its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(_settings(traffic.home), poll=False),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.integration
def test_ui_report_opens_in_chromium_with_the_drift_drawn(live_api: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as browser:
        # the key goes in the Authorization header, as for any client (never in the URL)
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": AUTH})
        browser.get(f"{live_api}/ui/report?model=category&window=1d")
        WebDriverWait(browser, 60).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#drift-table tr.drifted"))
        )
        rows = browser.find_elements(By.CSS_SELECTOR, "#drift-table tbody tr.drifted")
        drifted = {row.get_attribute("data-feature") for row in rows}
        assert {"payment_method", "log_abs_amount"} <= drifted
        for feature in drifted:
            chart = browser.find_element(
                By.CSS_SELECTOR, f'svg.dist-chart[data-section="drift"][data-column="{feature}"]'
            )
            assert chart.rect["width"] > 100 and chart.rect["height"] > 100, feature
            bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
            assert bars and all(bar.rect["height"] > 0 for bar in bars), feature
        severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert severe == [], severe
        shot = tmp_path / "ui-report.png"
        assert browser.save_screenshot(str(shot))
    width, height = png_size(shot.read_bytes())
    assert width >= 800 and height >= 600
