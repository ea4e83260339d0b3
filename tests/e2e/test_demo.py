"""`titans demo --fast` end to end, as a user runs it: a real API process serving replayed
traffic, the drift injected on day 90 detected (with the features named), the alert delivered
once, a retrain triggered, the challenger A/B-tested and promoted only if it won, the audit
chain intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from titans.config import Settings
from titans.governance.audit import AuditLogger
from titans.monitoring.model_monitor import CALENDAR_COLUMNS
from titans.registry.registry_manager import ModelRegistryManager
from titans.store import Store
from titans.store.models import ABTest, Alert, MonitorMetric

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: features the demo's drift scenarios move (amount inflation, payment shift, new merchants)
INJECTED = {"amount", "log_abs_amount", "payment_method", "reference"}


def test_demo_detects_the_injected_drift_and_delivers_the_alert(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))}
    env.update(TITANS_HOME=str(home), COLUMNS="200")
    titans = Path(sys.executable).with_name("titans")
    done = subprocess.run(
        [str(titans), "demo", "--fast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    flat = " ".join(output.split())  # rich wraps long lines
    for step in (
        "serve + replay + monitor",
        "drift detected",
        "alert delivered",
        "retrain + A/B test",
        "challenger decided",
        "monitoring report",
        "audit chain",
    ):
        assert f"✓ {step}" in flat, step
    assert "0 failed requests" in flat
    detected = flat.split("✓ drift detected", 1)[1][:80]
    assert "days 88–94" in detected  # the first window holding drifted days, not earlier
    assert "drifted features: amount," in flat

    settings = Settings(home=home)
    with Store(settings).session() as session:
        drift_rows = session.scalars(
            select(MonitorMetric)
            .where(MonitorMetric.model_name == "titans-category")
            .where(MonitorMetric.metric == "drift_share")
            .order_by(MonitorMetric.window_end)
        ).all()
        verdicts = [row.verdict for row in drift_rows]
        drifted_rows = session.scalars(
            select(MonitorMetric.metric)
            .where(MonitorMetric.model_name == "titans-category")
            .where(MonitorMetric.verdict == "breach")
            .where(MonitorMetric.metric.like("drift:%"))
        ).all()
        alerts = session.scalars(select(Alert).where(Alert.name.like("data_drift%"))).all()
        alert_rows = [(a.name, a.details) for a in alerts]
    # nine weekly windows: four calm ones (days 60-87), then drift from the window with day 90
    assert verdicts[:4] == ["ok"] * 4, verdicts
    assert verdicts[4:] == ["breach"] * (len(verdicts) - 4), verdicts
    drifted = {name.removeprefix("drift:") for name in drifted_rows}
    assert drifted >= INJECTED
    assert not drifted & set(CALENDAR_COLUMNS)  # weekly windows never compare calendar features
    # the drift alert: one alert, delivered (not re-sent each window), naming the features
    drift_alerts = [d for n, d in alert_rows if n == "data_drift_share_high - titans-category"]
    assert len(drift_alerts) == 1
    assert drift_alerts[0]["notified"] is True
    assert {"amount", "payment_method"} <= set(drift_alerts[0]["annotations"]["drifted_features"])

    # the challenger: trained after the alert, tested against v1, promoted only if it won
    with Store(settings).session() as session:
        (test,) = session.scalars(select(ABTest)).all()
        decision = dict(test.decision or {})
    tags = ModelRegistryManager(settings).get_version("titans-category", "2")["tags"]
    assert tags["titans.parent_version"] == "1"
    assert "drift" in tags["titans.trigger_reason"]
    production = ModelRegistryManager(settings).get_alias_version("titans-category", "production")
    assert test.status == "decided" and decision["decision"] in ("promote_b", "keep_a")
    if decision["decision"] == "promote_b":
        assert decision["difference"]["estimate"] > 0  # B's accuracy above A's
        assert production == "2"
    else:
        assert production == "1"
    assert AuditLogger(Store(settings)).verify().ok
    report = home / "reports" / "demo-monitoring.html"
    assert "payment_method" in report.read_text(encoding="utf-8")
