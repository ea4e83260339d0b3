"""The observability stack end to end, every part real, all on 127.0.0.1.

Three models are trained and promoted in a real MLflow registry; a real ``titans serve`` answers
replayed traffic (with feedback); two ``titans monitor serve`` exporters (the model monitor and
the data-quality monitor, as deploy/prometheus/prometheus.yml expects them) judge the prediction
log; a real ``prometheus`` scrapes all three with deploy/prometheus's scrape jobs and alert
rules; a real ``alertmanager`` routes with deploy/alertmanager/alertmanager.yml to local
receivers standing in for Slack and PagerDuty, and to the API's own webhook intake.

Only timings and addresses differ from the shipped files: scrape and evaluation every second,
``for:`` durations and Alertmanager's group waits cut to seconds, targets on free ports, secret
files in a temp folder. Expressions, jobs, relabelling, routes and receivers are the shipped ones.

Then: (a) every scrape target is up, (b) drift injected into the replayed traffic reaches the
Slack stand-in and the API's alert intake (stored in the ops store) as TitansDataDrift through
Prometheus and Alertmanager, after a calm phase in which it did not fire, and (c) every Grafana
panel's PromQL returns data.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from _support import grafana
from _support.processes import require_tool
from _support.receivers import Recorder, recording_server
from _support.serving import promote, serving_settings
from titans.data.synth import generate
from titans.models.train import train_models
from titans.monitoring.replay import TrafficReplayer
from titans.serving.auth import generate_api_key
from titans.serving.process import ApiProcess, ServerProcess, free_port
from titans.store import Store
from titans.store.models import Alert

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL = "apt-get install --no-install-recommends prometheus prometheus-alertmanager"
RAW, KEY = generate_api_key("observability-test", ["predict"])
START = date(2024, 1, 1)
DAYS = 120
TRAIN_DAYS = 60
DRIFT_DAY = 90
DRIFTS = [
    f"amount_inflation@{START.replace(month=3, day=31)}:1.6",
    f"payment_mix_shift@{START.replace(month=3, day=31)}:0.6",
    f"new_merchants@{START.replace(month=3, day=31)}:0.5",
]
MODELS = ("category", "amount", "anomaly")
#: replayed periods: calm (after training, before the drift) and drifted
PERIODS = ((TRAIN_DAYS, DRIFT_DAY), (DRIFT_DAY, DAYS))
#: the monitors judge the last WINDOW of the log (about 25 replayed days at this replay speed);
#: calm rows leave it soon after the drifted days start
WINDOW = "45s"
#: below this many rows a window is "insufficient": a few replayed days are not a sample
MIN_ROWS = 600
#: Alertmanager's token for the Titans webhook: a real API key with the `alerts` role
ALERTS_RAW, ALERTS_KEY = generate_api_key("alertmanager", ["alerts"])


@dataclass
class Stack:
    api: ApiProcess
    prometheus: str
    alertmanager: str
    receiver: Recorder
    replayer: TrafficReplayer
    logs: Path
    store: Store


def _query(stack: Stack, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _shorten(duration: str) -> str:
    """A rule's `for:` cut to seconds: 2m -> 2s (the test cannot wait minutes)."""
    return duration[:-1] + "s" if duration.endswith("m") else "1s"


def _prometheus_config(tmp: Path, targets: dict[str, int], alertmanager_port: int) -> Path:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alert_rules.yml").read_text("utf-8"))
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = _shorten(rule.get("for", "0m"))
    (tmp / "alert_rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager_port}"]}
    ]
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _alertmanager_config(tmp: Path, receiver: Recorder, api_port: int) -> Path:
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "slack_api_url").write_text(f"{receiver.url}/slack", encoding="utf-8")
    (secrets / "pagerduty_routing_key").write_text("r" * 32, encoding="utf-8")
    (secrets / "smtp_password").write_text("unused", encoding="utf-8")
    (secrets / "titans_webhook_token").write_text(ALERTS_RAW, encoding="utf-8")
    text = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text("utf-8")
    text = text.replace("/etc/alertmanager/secrets/", f"{secrets}/")
    # the Titans webhook is the real API's intake route (port of the API started below)
    text = text.replace("http://127.0.0.1:8000/", f"http://127.0.0.1:{api_port}/")
    config = yaml.safe_load(text)
    config["route"].update(group_wait="1s", group_interval="2s")
    # no mail server here: SMTP to a closed loopback port fails fast instead of resolving DNS
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{free_port()}"
    for entry in config["receivers"]:
        for pagerduty in entry.get("pagerduty_configs", []):
            pagerduty["url"] = f"{receiver.url}/pagerduty"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _mixed_days(period: pd.DataFrame, first_day: int) -> pd.DataFrame:
    """The period's rows shuffled and re-dated over its days, so every replayed day is a fair
    sample of the whole period: a window of a few days then holds no month-start mix (rent,
    payroll) that a monitor would rightly call drift."""
    mixed = period.sample(frac=1.0, random_state=first_day).reset_index(drop=True)
    n_days = int(pd.to_datetime(period["date"]).dt.normalize().nunique())
    offsets = pd.to_timedelta(first_day + (mixed.index.to_numpy() % n_days), unit="D")
    return mixed.assign(date=pd.Timestamp(START) + offsets)


def _titans(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("titans")), *args]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_tool("prometheus", INSTALL)
    alertmanager_bin = require_tool("prometheus-alertmanager", INSTALL)
    tmp = tmp_path_factory.mktemp("observability")
    home = tmp / "home"
    home.mkdir()
    settings = serving_settings(home, [KEY])
    frame = generate(9_000, seed=5, start=START, days=DAYS, drifts=DRIFTS)
    days = (pd.to_datetime(frame["date"]) - pd.Timestamp(START)).dt.days
    # all four: the API is ready only when every model has a production version
    for result in train_models(frame[days < TRAIN_DAYS], seed=5, settings=settings):
        promote(settings, result.registered_name, result.version)
    frame = pd.concat(
        [_mixed_days(frame[(days >= a) & (days < b)], a) for a, b in PERIODS], ignore_index=True
    )
    logs = tmp / "logs"
    env = {
        "TITANS_HOME": str(home),
        "TITANS_API_KEYS": f"[{KEY.model_dump_json()}, {ALERTS_KEY.model_dump_json()}]",
        "TITANS_RATE_LIMIT_PER_SECOND": "100000",
        "TITANS_RATE_LIMIT_BURST": "100000",
        "TITANS_PREDICTION_LOG_FLUSH_SECONDS": "0.1",
    }
    ports = {name: free_port() for name in ("titans-api", "model-monitor", "data-monitor")}
    am_port, prom_port = free_port(), free_port()
    with recording_server() as receiver:
        monitor_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))},
            **env,
            "TITANS_MONITOR__MIN_ROWS": str(MIN_ROWS),
            "TITANS_MONITOR__MIN_LABELS": "30",
            # the platform's own alert manager tells the webhook too (titans_alerts_sent_total)
            "TITANS_ALERTS__WEBHOOK_URL": f"{receiver.url}/titans",
        }
        models = [arg for m in MODELS for arg in ("--model", m)]
        exporters = [
            ServerProcess(
                _titans(
                    "monitor",
                    "serve",
                    "--port",
                    str(ports["model-monitor"]),
                    "--window",
                    WINDOW,
                    "--interval",
                    "1",
                    *models,
                ),
                ready_url=f"http://127.0.0.1:{ports['model-monitor']}/metrics",
                log_path=logs / "model-monitor.log",
                env=monitor_env,
            ),
            ServerProcess(
                _titans(
                    "monitor",
                    "serve",
                    "--port",
                    str(ports["data-monitor"]),
                    "--window",
                    WINDOW,
                    "--interval",
                    "1",
                    "--no-alerts",
                    *models,
                ),
                ready_url=f"http://127.0.0.1:{ports['data-monitor']}/metrics",
                log_path=logs / "data-monitor.log",
                env=monitor_env,
            ),
        ]
        alertmanager = ServerProcess(
            [
                alertmanager_bin,
                f"--config.file={_alertmanager_config(tmp, receiver, ports['titans-api'])}",
                f"--storage.path={tmp / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            ready_url=f"http://127.0.0.1:{am_port}/-/ready",
            log_path=logs / "alertmanager.log",
        )
        prometheus = ServerProcess(
            [
                prometheus_bin,
                f"--config.file={_prometheus_config(tmp, ports, am_port)}",
                f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
            log_path=logs / "prometheus.log",
        )
        api = ApiProcess(env, log_path=logs / "api.log", port=ports["titans-api"])
        started: list[Any] = []
        try:
            for server in (api, *exporters, alertmanager, prometheus):
                server.start()
                started.append(server)
            with TrafficReplayer(
                api.url, RAW, frame, start_date=START, feedback_delay_days=0, batch_size=50
            ) as replayer:
                yield Stack(
                    api,
                    f"http://127.0.0.1:{prom_port}",
                    f"http://127.0.0.1:{am_port}",
                    receiver,
                    replayer,
                    logs,
                    Store(settings),
                )
        finally:
            for server in reversed(started):
                server.stop()


def _replay_until(stack: Stack, days: range, done: Any, seconds: float) -> None:
    """Replay ``days`` over and over (one day per call) until ``done()`` or the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for day in days:
            stack.replayer.replay(day, day, MODELS)
            assert not stack.replayer.failures, stack.replayer.failures[:3]
            if done():
                return
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"not reached within {seconds:.0f} s; logs in {stack.logs}")


def _drift_alerts(stack: Stack) -> list[Alert]:
    """TitansDataDrift alerts Alertmanager delivered to the API's intake route (ops store)."""
    with stack.store.session() as session:
        rows = list(session.scalars(select(Alert).where(Alert.name == "TitansDataDrift")))
        session.expunge_all()
    return [r for r in rows if r.details.get("source") == "alertmanager"]


def _slack_drift(stack: Stack) -> list[dict[str, Any]]:
    return [
        body
        for body in stack.receiver.bodies("/slack")
        if any("TitansDataDrift" in a.get("title", "") for a in body.get("attachments", []))
    ]


def test_every_target_is_up_and_calm_traffic_raises_no_drift_alert(stack: Stack) -> None:
    def calm_and_judged() -> bool:
        return len(_query(stack, "titans_drift_share")) == len(MODELS)

    _replay_until(stack, range(TRAIN_DAYS, DRIFT_DAY), calm_and_judged, seconds=150)
    targets = httpx.get(f"{stack.prometheus}/api/v1/targets", timeout=10).json()["data"]
    active = {(t["labels"]["job"], t["health"]) for t in targets["activeTargets"]}
    assert active == {("titans-api", "up"), ("model-monitor", "up"), ("data-monitor", "up")}
    shares = {
        r["metric"]["model"]: float(r["value"][1]) for r in _query(stack, "titans_drift_share")
    }
    assert shares and max(shares.values()) <= 0.30, shares
    assert _query(stack, 'ALERTS{alertname="TitansDataDrift"}') == []
    assert _drift_alerts(stack) == []


def test_injected_drift_reaches_the_webhook_and_slack_through_alertmanager(stack: Stack) -> None:
    _replay_until(
        stack,
        range(DRIFT_DAY, DAYS),
        lambda: bool(_drift_alerts(stack)) and bool(_slack_drift(stack)),
        seconds=180,
    )
    # the Titans webhook: the real API accepted Alertmanager's payload (version 4, validated by
    # the route; Alertmanager's token is a key with the alerts role) and stored each alert
    (alert, *_) = _drift_alerts(stack)
    assert alert.status == "firing" and alert.fingerprint.startswith("am:")
    assert alert.severity in {"warning", "critical"}
    labels = alert.details["labels"]
    assert labels["model"].startswith("titans-")
    assert labels["platform"] == "titans"  # Prometheus' external label travelled along
    assert "of input features drifted" in alert.details["annotations"]["summary"]
    assert alert.details["receiver"] in {"titans-warning", "titans-critical"}
    # Slack's incoming-webhook payload as Alertmanager sends it: channel and attachments
    (slack, *_) = _slack_drift(stack)
    assert slack["channel"] == "#titans-alerts"
    (attachment, *_) = slack["attachments"]
    assert attachment["title"].startswith("[FIRING] TitansDataDrift titans-")
    assert "of input features drifted" in attachment["text"]
    # the drift was judged on features the monitor names
    drifted = _query(stack, "titans_feature_drifted == 1")
    assert {r["metric"]["feature"] for r in drifted} & {
        "amount",
        "log_abs_amount",
        "payment_method",
    }


def test_every_grafana_panel_returns_data_from_the_live_stack(stack: Stack) -> None:
    # after the drift test: the alert counters and every gauge have values by now. Real
    # traffic also has clients' mistakes: an unknown key and a malformed body
    for headers, body in (({"Authorization": "Bearer wrong"}, {}), (None, {"amount": "x"})):
        response = stack.replayer.client.post("/predict/category", json=body, headers=headers)
        assert response.status_code in (401, 422), response.text
    deadline = time.monotonic() + 30
    while not _query(stack, "titans_errors_total") and time.monotonic() < deadline:
        time.sleep(0.5)
    empty = []
    checked = 0
    for path in grafana.DASHBOARDS:
        board = grafana.load(path)
        values = grafana.all_values(board)
        for query in (q for q in grafana.queries() if q.dashboard == board["uid"]):
            checked += 1
            if not _query(stack, query.substituted(values)):
                empty.append(f"{query.dashboard} / {query.panel} / {query.ref_id}: {query.expr}")
    assert checked >= 30
    assert not empty, "panels without data:\n" + "\n".join(empty)
