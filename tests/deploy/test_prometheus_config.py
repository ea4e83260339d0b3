"""Prometheus and Alertmanager configuration, checked by the real promtool and amtool.

``promtool check config`` / ``check rules`` / ``test rules`` and ``amtool check-config`` run on
the files in deploy/; broken copies prove the tools really judge them. Every ``titans_*`` metric
an alert names must be one the platform exports (titans.monitoring.metric_names). The last test
starts a real Prometheus on the shipped rules and watches the drift alert go pending.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from titans.monitoring import metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alert_rules.yml"
ALERT_RULES_TEST = PROMETHEUS_DIR / "alert_rules_test.yml"
ALERTMANAGER_YML = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
INSTALL = "apt-get install prometheus prometheus-alertmanager (Debian packages)"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing; CI must {INSTALL}")
        pytest.skip(f"{name} is not installed ({INSTALL})")
    return found


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool(args[0]), *args[1:]], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(ALERT_RULES)["groups"] for rule in group["rules"]]


# ---- Prometheus


def test_promtool_accepts_the_prometheus_config_and_finds_the_rule_file() -> None:
    result = _run("promtool", "check", "config", str(PROMETHEUS_YML))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "SUCCESS: 1 rule files found" in out
    assert f"SUCCESS: {len(_rules())} rules found" in out


def test_promtool_accepts_the_alert_rules() -> None:
    result = _run("promtool", "check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    result = _run("promtool", "test", "rules", ALERT_RULES_TEST.name, cwd=PROMETHEUS_DIR)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "SUCCESS" in out and "FAILED" not in out


def test_promtool_refuses_a_rule_with_a_bad_expression(tmp_path: Path) -> None:
    text = ALERT_RULES.read_text(encoding="utf-8")
    broken = text.replace("max by (model) (titans_drift_share) > 0.30", "max by (model (", 1)
    assert broken != text
    (tmp_path / "alert_rules.yml").write_text(broken, encoding="utf-8")
    result = _run("promtool", "check", "rules", str(tmp_path / "alert_rules.yml"))
    assert result.returncode != 0
    assert "TitansDataDrift" in result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_an_expectation_is_wrong(tmp_path: Path) -> None:
    shutil.copy(ALERT_RULES, tmp_path / "alert_rules.yml")
    tests = _load(ALERT_RULES_TEST)
    drift = tests["tests"][0]["alert_rule_test"][0]
    assert drift == {"eval_time": "1m", "alertname": "TitansDataDrift", "exp_alerts": []}
    # amount's drift share is 0.7 from the start: it must not fire before its 2 minutes are up
    drift["exp_alerts"] = [
        {"exp_labels": {"model": "titans-amount", "severity": "critical", "category": "drift"}}
    ]
    (tmp_path / "alert_rules_test.yml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = _run("promtool", "test", "rules", "alert_rules_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "TitansDataDrift" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test_for_each_severity() -> None:
    fired: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for case in _load(ALERT_RULES_TEST)["tests"]:
        for check in case["alert_rule_test"]:
            expected = check.get("exp_alerts") or []
            if not expected:
                quiet.add(check["alertname"])
            for alert in expected:
                fired.add((check["alertname"], alert["exp_labels"]["severity"]))
    declared = {(rule["alert"], rule["labels"]["severity"]) for rule in _rules()}
    assert declared - fired == set(), "alerts without a test where they fire"
    assert {name for name, _ in declared} - quiet == set(), "alerts never tested quiet"


def test_alerts_carry_a_known_severity_and_say_what_happened() -> None:
    rules = _rules()
    assert len(rules) >= 15
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 40, rule["alert"]
        assert "for" in rule, rule["alert"]
    # a warning and its critical twin share one name so Alertmanager's inhibition can pair them
    by_name: dict[str, set[str]] = {}
    for rule in rules:
        by_name.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert by_name["TitansDataDrift"] == {"warning", "critical"}
    assert by_name["TitansCategoryMacroF1Low"] == {"warning", "critical"}


def _exported_names() -> set[str]:
    names: set[str] = set()
    for metric in metric_names.METRICS.values():
        if metric.kind == "histogram":
            names.update(f"{metric.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(metric.exported_name)
    return names


def test_every_metric_an_alert_reads_is_one_the_platform_exports() -> None:
    named = set(re.findall(r"\btitans_[a-z0-9_]+", "\n".join(r["expr"] for r in _rules())))
    assert len(named) >= 12  # the scan really found the metrics
    assert named - _exported_names() == set()
    # counters in rate()/increase() use the exported _total name
    assert "titans_prediction_log_dropped_total" in named
    assert "titans_monitor_runs_total" in named


def test_the_unit_tests_feed_only_exported_metrics() -> None:
    series = [
        s["series"]
        for case in _load(ALERT_RULES_TEST)["tests"]
        for s in case.get("input_series", [])
    ]
    named = {s.split("{", 1)[0] for s in series}
    assert named - _exported_names() == {"up"}


def test_the_thresholds_mirror_the_apps_own_rules() -> None:
    app_rules = _load(ROOT / "src" / "titans" / "monitoring" / "alerts" / "default_rules.yaml")[
        "rules"
    ]
    exprs = {(r["alert"], r["labels"]["severity"]): r["expr"] for r in _rules()}
    mirrored = {
        "data_drift_share_high": ("TitansDataDrift", "titans_drift_share"),
        "data_drift_share_critical": ("TitansDataDrift", "titans_drift_share"),
        "category_macro_f1_low": ("TitansCategoryMacroF1Low", "titans_category_macro_f1"),
        "category_macro_f1_critical": ("TitansCategoryMacroF1Low", "titans_category_macro_f1"),
        "amount_mae_high": ("TitansAmountMaeHigh", "titans_amount_mae"),
        "category_estimated_accuracy_low": (
            "TitansEstimatedAccuracyLow",
            "titans_estimated_accuracy",
        ),
        "data_missing_share_high": ("TitansDataMissingShareHigh", "titans_missing_share"),
        "data_bad_row_share_high": ("TitansDataBadRowShareHigh", "titans_bad_row_share"),
        "anomaly_flag_rate_high": ("TitansAnomalyFlagRateHigh", "titans_anomaly_flag_rate"),
    }
    for app_rule in app_rules:
        if app_rule["name"] not in mirrored:
            continue
        alert, metric = mirrored[app_rule["name"]]
        expr = exprs[(alert, app_rule["severity"])]
        assert metric in expr
        match = re.search(r"([<>])\s*([0-9.]+)\s*$", expr)
        assert match is not None, expr
        assert match.group(1) == app_rule["comparison"], alert
        assert float(match.group(2)) == pytest.approx(float(app_rule["threshold"])), alert


def test_prometheus_scrapes_the_api_and_both_monitors_and_alerts_alertmanager() -> None:
    config = _load(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"titans-api", "model-monitor", "data-monitor"}
    assert jobs["titans-api"]["metrics_path"] == "/metrics"
    assert jobs["titans-api"]["scrape_interval"] == "5s"
    targets = {name: job["static_configs"][0]["targets"] for name, job in jobs.items()}
    assert targets == {
        "titans-api": ["127.0.0.1:8000"],
        "model-monitor": ["127.0.0.1:9102"],
        "data-monitor": ["127.0.0.1:9103"],
    }
    assert config["rule_files"] == ["alert_rules.yml"]
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert managers == ["127.0.0.1:9093"]


# ---- Alertmanager


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = _run("amtool", "check-config", str(ALERTMANAGER_YML))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "SUCCESS" in out
    assert "1 inhibit rules" in out and "3 receivers" in out


def test_amtool_refuses_a_route_to_an_unknown_receiver(tmp_path: Path) -> None:
    broken = tmp_path / "alertmanager.yml"
    text = ALERTMANAGER_YML.read_text(encoding="utf-8")
    broken.write_text(text.replace("receiver: titans-critical", "receiver: nobody", 1), "utf-8")
    result = _run("amtool", "check-config", str(broken))
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["severity=critical", "alertname=TitansDataDrift", "model=titans-category"],
            "titans-critical",
        ),
        (
            ["severity=warning", "alertname=TitansDataDrift", "model=titans-category"],
            "titans-warning",
        ),
        (["alertname=Watchdog"], "titans-webhook"),
    ],
)
def test_alerts_are_routed_by_severity(labels: list[str], receiver: str) -> None:
    result = _run(
        "amtool",
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YML}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_receivers_match_the_apps_routes_and_hold_no_secret() -> None:
    config = _load(ALERTMANAGER_YML)
    receivers = {r["name"]: r for r in config["receivers"]}
    channels = {
        name: {key.removesuffix("_configs") for key in r if key.endswith("_configs")}
        for name, r in receivers.items()
    }
    assert channels["titans-critical"] == {"pagerduty", "slack", "email", "webhook"}
    assert channels["titans-warning"] == {"slack", "webhook"}
    assert config["route"]["group_by"] == ["alertname", "model"]
    inhibit = config["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert set(inhibit["equal"]) == {"alertname", "model"}
    assert receivers["titans-critical"]["pagerduty_configs"][0]["routing_key_file"]
    assert config["global"]["slack_api_url_file"] and config["global"]["smtp_auth_password_file"]
    text = ALERTMANAGER_YML.read_text(encoding="utf-8")
    for secret_field in ("api_url:", "routing_key:", "service_key:", "auth_password:"):
        assert not re.search(rf"^\s*(slack_)?{secret_field}", text, flags=re.MULTILINE)
    assert "hooks.slack.com" not in text


# ---- a real Prometheus on the shipped rules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Exposition(http.server.BaseHTTPRequestHandler):
    body = (
        b"# HELP titans_drift_share Share of a model's input features that drifted.\n"
        b"# TYPE titans_drift_share gauge\n"
        b'titans_drift_share{model="titans-category"} 0.9\n'
        b'titans_drift_share{model="titans-amount"} 0.1\n'
    )

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def exporter() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exposition)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.integration
def test_a_real_prometheus_scrapes_drift_and_raises_the_drift_alert(
    tmp_path: Path, exporter: int
) -> None:
    binary = _tool("prometheus")
    shutil.copy(ALERT_RULES, tmp_path / "alert_rules.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alert_rules.yml"],
        "scrape_configs": [
            {
                "job_name": "model-monitor",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        pending: list[dict[str, Any]] = []
        value: list[Any] = []
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                value = _get(f"{base}/query?query=titans_drift_share")["data"]["result"]
                alerts = _get(f"{base}/alerts")["data"]["alerts"]
            except OSError:
                time.sleep(0.5)
                continue
            pending = [a for a in alerts if a["labels"]["alertname"] == "TitansDataDrift"]
            if len(pending) == 2:
                break
            time.sleep(0.5)
        by_model = {r["metric"]["model"]: float(r["value"][1]) for r in value}
        assert by_model == {"titans-category": 0.9, "titans-amount": 0.1}
        # 0.9 breaches both thresholds; titans-amount (0.1) none; `for: 2m` keeps them pending
        assert sorted(
            (a["labels"]["model"], a["labels"]["severity"], a["state"]) for a in pending
        ) == [
            ("titans-category", "critical", "pending"),
            ("titans-category", "warning", "pending"),
        ]
        assert (
            pending[0]["annotations"]["summary"] == "titans-category: 90% of input features drifted"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
