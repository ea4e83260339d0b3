"""The demo loop: data → validate → train → promote → serve live traffic → monitor → alert.

120 days of synthetic transactions are generated with a drift injected from day 90 (pricier
expenses, a payment-method shift, merchants never seen before). The models are trained on the
first 60 days and promoted through their gates; a real API process then serves days 60–119 as
live traffic, a week at a time, the actual outcomes arriving days later as feedback. After
each week the ModelMonitor judges that week's window of the prediction log, and the alert
rules decide whom to tell: here a local webhook receiver (and the console, through the CLI).

Library code: it yields step results and never prints; `titans demo` renders them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from titans.config import Settings

#: the generated period and the drift injected into its last month
START = date(2024, 1, 1)
DAYS = 120
TRAIN_DAYS = 60
DRIFT_DAY = 90
DRIFTS = (
    "amount_inflation@{day}:1.5",
    "payment_mix_shift@{day}:0.5",
    "new_merchants@{day}:0.5",
)
#: replayed as live traffic, in windows of WINDOW_DAYS; labels arrive FEEDBACK_DELAY_DAYS late
REPLAY_FIRST_DAY = 60
WINDOW_DAYS = 7
FEEDBACK_DELAY_DAYS = 3
MONITORED_MODELS = ("category", "amount", "anomaly")
#: how often the demo's API re-reads the running A/B tests
AB_ROUTE_REFRESH_SECONDS = 1.0


def drift_specs() -> list[str]:
    """The drift scenarios of the demo, starting on DRIFT_DAY."""
    first = (START + timedelta(days=DRIFT_DAY)).isoformat()
    return [spec.format(day=first) for spec in DRIFTS]


@dataclass
class StepResult:
    """What one step of the loop did."""

    name: str
    ok: bool
    detail: str
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoContext:
    """State handed from step to step."""

    settings: Settings
    rows: int
    seed: int
    fast: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    on_progress: Callable[[str], None] = lambda _msg: None


Step = Callable[[DemoContext], tuple[str, dict[str, Any]]]


def _generate(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from titans.data.io import write_transactions
    from titans.data.synth import generate

    frame = generate(ctx.rows, seed=ctx.seed, start=START, days=DAYS, drifts=drift_specs())
    path = write_transactions(frame, ctx.settings.ensure_home() / "data" / "demo_export.csv")
    ctx.values["export_path"] = path
    return (
        f"{len(frame):,} transactions over {DAYS} days, drift injected from day {DRIFT_DAY} "
        f"({', '.join(d.split('@')[0] for d in DRIFTS)}) → {path}",
        {"rows": len(frame), "path": str(path), "drifts": drift_specs()},
    )


def _validate(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from titans.data.io import read_raw
    from titans.data.schema import validate_frame
    from titans.data.versions import data_version
    from titans.errors import DataValidationError

    report = validate_frame(read_raw(ctx.values["export_path"]))
    if not report.passed(ctx.settings.max_bad_row_share):
        raise DataValidationError(
            f"{report.bad_share:.1%} of rows failed validation "
            f"(limit {ctx.settings.max_bad_row_share:.1%}); run `titans data validate` for the list"
        )
    ctx.values["frame"] = report.valid
    version = data_version(report.valid)
    ctx.values["data_version"] = version
    return (
        f"{len(report.valid):,} valid, {len(report.rejected):,} quarantined, "
        f"data version {version}",
        {"valid": len(report.valid), "rejected": len(report.rejected), "data_version": version},
    )


def _train(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    import pandas as pd

    from titans.models.train import train_models
    from titans.retraining.data_manager import TrainingDataManager

    frame = ctx.values["frame"]
    cutoff = pd.Timestamp(START + timedelta(days=TRAIN_DAYS))
    training = frame[pd.to_datetime(frame["date"]) < cutoff]
    # kept as a data version: a later retrain builds on exactly what these models learned from
    TrainingDataManager(ctx.settings).manage_data_versions(training)
    results = train_models(
        training,
        seed=ctx.seed,
        settings=ctx.settings,
        data_source=str(ctx.values["export_path"]),
        progress=lambda key, step: ctx.on_progress(f"train {key}: {step}"),
    )
    ctx.values["training"] = results
    losers = [r.model_key for r in results if not r.evaluation.beats_baseline]
    if losers:
        raise RuntimeError(f"models did not beat their baselines: {', '.join(losers)}")
    names = ", ".join(f"{r.registered_name} v{r.version}" for r in results)
    return (
        f"trained on days 0–{TRAIN_DAYS - 1}, registered {names}",
        {"models": [r.to_dict() for r in results]},
    )


def _promote(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    """Every new version: validation gates → policy approval → staging → production."""
    from titans.registry.registry_manager import ModelRegistryManager

    registry = ModelRegistryManager(ctx.settings)
    promoted, refused = [], []
    for result in ctx.values["training"]:
        for stage in ("Staging", "Production"):
            ctx.on_progress(f"promote {result.registered_name} v{result.version} → {stage}")
            if not registry.promote_model(result.registered_name, result.version, stage, "demo"):
                refusal = registry.last_refusal
                refused.append(f"{result.registered_name} v{result.version}: {refusal}")
                break
        else:
            promoted.append(registry.get_production_model(result.registered_name))
    if refused:
        raise RuntimeError("promotion refused: " + "; ".join(refused))
    return f"in production: {', '.join(promoted)}", {"production": promoted}


def _wait_for_log(ctx: DemoContext, window: Any, models: tuple[str, ...]) -> None:
    """Wait (bounded) until the API's prediction log holds every prediction of ``window``."""
    from sqlalchemy import func, select

    from titans.store import Store
    from titans.store.models import Prediction

    store = ctx.values.setdefault("store", Store(ctx.settings))
    wanted = sum(window.predictions.get(m, 0) for m in models)
    deadline = time.monotonic() + 30
    while True:
        with store.session() as session:
            count = session.scalar(
                select(func.count())
                .select_from(Prediction)
                .where(Prediction.ts >= window.start, Prediction.ts <= window.end)
            )
        if int(count or 0) >= wanted or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _serve_and_monitor(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    """Serve days 60–119 through a real API, a week at a time, monitoring each week."""
    import httpx

    from titans.monitoring.alerts import AlertManager
    from titans.monitoring.alerts.channels import WebhookChannel
    from titans.monitoring.model_monitor import ModelMonitor
    from titans.monitoring.replay import LocalReceiver, TrafficReplayer
    from titans.retraining.pipeline import AutoRetrainingPipeline
    from titans.serving.auth import generate_api_key
    from titans.serving.process import ApiProcess
    from titans.store import Store

    settings = ctx.settings
    raw, key = generate_api_key("demo-replay", ["predict"])
    env = {
        "TITANS_HOME": str(settings.home_dir),
        "TITANS_API_KEYS": f"[{key.model_dump_json()}]",
        "TITANS_RATE_LIMIT_PER_SECOND": "100000",
        "TITANS_RATE_LIMIT_BURST": "100000",
        "TITANS_PREDICTION_LOG_FLUSH_SECONDS": "0.1",
        "TITANS_MODEL_POLL_SECONDS": "1",
        "TITANS_AB_ROUTE_REFRESH_SECONDS": str(AB_ROUTE_REFRESH_SECONDS),
    }
    if settings.tracking_uri_override:
        env["TITANS_TRACKING_URI"] = settings.tracking_uri_override
    if settings.database_url_override:
        env["TITANS_DATABASE_URL"] = settings.database_url_override
    models = ("category",) if ctx.fast else MONITORED_MODELS
    ctx.values["models"] = models
    receiver = LocalReceiver()
    store = Store(settings)
    windows: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    log_path = settings.home_dir / "logs" / "demo-api.log"
    with receiver, ApiProcess(env, log_path=log_path) as api:
        ctx.on_progress(f"API pid {api.pid} ready at {api.url}")
        manager = AlertManager(
            settings,
            store,
            channels={"webhook": WebhookChannel(receiver.url, timeout=5.0)},
        )
        monitor = ModelMonitor(settings, store=store, alert_manager=manager)
        # the challenger is tested in shadow: it scores every request the champion answers,
        # so users never get an unproven model's answer and both are judged on the same rows
        shadowed = settings.model_copy(
            update={
                "retraining": settings.retraining.model_copy(
                    update={"ab_mode": "shadow", "ab_traffic_split": 1.0}
                )
            }
        )
        pipeline = AutoRetrainingPipeline(shadowed, store=store, progress=ctx.on_progress)
        loop: dict[str, Any] = {"retrain": None, "decision": None, "checks": []}
        with TrafficReplayer(
            api.url,
            raw,
            ctx.values["frame"],
            start_date=START,
            feedback_delay_days=FEEDBACK_DELAY_DAYS,
        ) as replayer:
            for first in range(REPLAY_FIRST_DAY, DAYS, WINDOW_DAYS):
                last = min(first + WINDOW_DAYS, DAYS) - 1
                ctx.on_progress(f"replaying days {first}–{last} through {api.url}")
                window = replayer.replay(first, first, models)
                for day in range(first + 1, last + 1):
                    # while the challenger is tested, the sequential analysis may look daily
                    if loop["retrain"] is not None and loop["decision"] is None:
                        _wait_for_log(ctx, window, models)
                        _decide(ctx, pipeline, api.url, raw, f"day {day - 1}", loop)
                    window.extend(replayer.replay(day, day, models))
                _wait_for_log(ctx, window, models)
                row: dict[str, Any] = {
                    "days": window.label,
                    "first_date": window.first_date.isoformat(),
                    "last_date": window.last_date.isoformat(),
                    "predictions": sum(window.predictions.values()),
                    "feedback": window.feedback,
                    "failed": window.failed,
                    "start": window.start.isoformat(),
                    "end": window.end.isoformat(),
                }
                for model in models:
                    ctx.on_progress(f"monitoring {model}, {window.label}")
                    report = monitor.run_window(model, start=window.start, end=window.end)
                    figures = _figures(report)
                    row[model] = figures
                    for event in report.alerts:
                        if event["notified"]:
                            alerts.append({**event, "model": model, "days": window.label})
                windows.append(row)
                _close_the_loop(ctx, pipeline, api.url, raw, window, row, alerts, loop)
            health = httpx.get(f"{api.url}/ready", timeout=5).status_code
            failures = list(replayer.failures)
            sent, feedback = replayer.sent, replayer.feedback_sent
    ctx.values.update(
        windows=windows,
        alerts=alerts,
        received=receiver.alerts(),
        replay_failures=failures,
        loop=loop,
    )
    if failures:
        raise RuntimeError(f"{len(failures)} replayed requests failed, first: {failures[0]}")
    return (
        f"{sent:,} predictions and {feedback:,} late labels over days {REPLAY_FIRST_DAY}–"
        f"{DAYS - 1} in {len(windows)} windows, 0 failed requests, API /ready {health}",
        {"windows": windows, "predictions": sent, "feedback": feedback, "failed": 0},
    )


def _served(url: str, key: str, version: str, *, challenger: bool) -> bool:
    """Wait (bounded) until the API serves ``version`` of the category model."""
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            body = httpx.get(
                f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=5
            ).json()
        except httpx.HTTPError:
            body = {}
        pool = body.get("challengers" if challenger else "models", [])
        if any(m["model"] == "category" and m["version"] == version for m in pool):
            return True
        time.sleep(0.3)
    return False


def _close_the_loop(
    ctx: DemoContext,
    pipeline: Any,
    url: str,
    key: str,
    window: Any,
    row: dict[str, Any],
    alerts: list[dict[str, Any]],
    loop: dict[str, Any],
) -> None:
    """After a window: retrain once the drift alert went out and the triggers fire; while the
    challenger's A/B test runs, let the sequential analysis decide."""
    if loop["retrain"] is None:
        alerted = any(a["model"] == "category" and a["metric"] == "drift_share" for a in alerts)
        check = pipeline.check_triggers("category")
        loop["checks"].append({"days": row["days"], "fire": check.fire, "reasons": check.reasons})
        if not (alerted and check.fire):
            return
        ctx.on_progress("retraining category: " + "; ".join(check.reasons))
        outcome = pipeline.trigger_retraining(
            "category", "; ".join(check.reasons), cutoff_date=window.last_date, actor="demo"
        )
        retrain: dict[str, Any] = {**outcome.to_dict(), "after": row["days"]}
        if outcome.ok and outcome.new_version is not None:
            retrain["served"] = _served(url, key, outcome.new_version, challenger=True)
            # the API re-reads its A/B routes every AB_ROUTE_REFRESH_SECONDS: let it see the test
            time.sleep(2 * AB_ROUTE_REFRESH_SECONDS)
        loop["retrain"] = retrain
        return
    _decide(ctx, pipeline, url, key, row["days"], loop)


def _decide(
    ctx: DemoContext, pipeline: Any, url: str, key: str, when: str, loop: dict[str, Any]
) -> None:
    """While the challenger's A/B test runs: let the sequential analysis decide (it may be
    read as often as we like: its error rate holds under continuous monitoring)."""
    if loop["decision"] is not None or (loop["retrain"] or {}).get("status") != "ab_started":
        return
    result = pipeline.decide("category", actor="demo")
    if result["decision"] not in ("promote_b", "keep_a"):
        loop["last_analysis"] = {"after": when, "reason": result.get("reason")}
        return
    decision: dict[str, Any] = {
        "decision": result["decision"],
        "action": result["action"],
        "reason": result.get("reason"),
        "after": when,
        "arms": {
            arm: {
                k: result["arms"][arm].get(k)
                for k in ("version", "traffic", "outcomes", "accuracy")
            }
            for arm in ("A", "B")
        },
        "difference": result.get("difference"),
        "always_valid_p": (result.get("sequential") or {}).get("always_valid_p"),
    }
    if result["decision"] == "promote_b" and "promoted" in result["action"]:
        ctx.on_progress(f"promoting v{result['model_b_version']}: {result['action']}")
        decision["served"] = _served(url, key, str(result["model_b_version"]), challenger=False)
    loop["decision"] = decision


def _figures(report: Any) -> dict[str, Any]:
    """The headline figures of one model's window, as computed."""
    out: dict[str, Any] = {
        "predictions": report.predictions,
        "drifted_features": report.drifted_features,
    }
    for result in report.results:
        for m in result.metrics:
            if m.metric in (
                "drift_share",
                "estimated_accuracy",
                "realised_accuracy",
                "realised_mae",
                "error_stream_changes",
                "anomaly_rate",
            ):
                out[m.metric] = {"value": m.value, "verdict": m.verdict, "threshold": m.threshold}
    return out


def _drift_detected(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    """The first window whose inputs drifted, and which features; none before the drift day."""
    windows = ctx.values["windows"]
    drift_date = (START + timedelta(days=DRIFT_DAY)).isoformat()
    early = [
        w["days"]
        for w in windows
        if w["last_date"] < drift_date
        and any(w[m]["drift_share"]["verdict"] == "breach" for m in ctx.values["models"])
    ]
    if early:
        raise RuntimeError(f"drift reported before day {DRIFT_DAY}: {', '.join(early)}")
    for w in windows:
        breached = {
            m: w[m]["drifted_features"]
            for m in ctx.values["models"]
            if w[m]["drift_share"]["verdict"] == "breach"
        }
        if breached:
            category = w["category"]
            before = windows[0]["category"].get("estimated_accuracy", {}).get("value")
            now = category.get("estimated_accuracy", {}).get("value")
            shares = ", ".join(f"{m} {w[m]['drift_share']['value']:.0%}" for m in breached)
            features = sorted({f for fs in breached.values() for f in fs})
            detail = (
                f"{w['days']} ({w['first_date']} – {w['last_date']}): drift share {shares}; "
                f"drifted features: {', '.join(features)}"
            )
            if before is not None and now is not None:
                detail += f"; category accuracy estimated without labels {before:.3f} → {now:.3f}"
            return detail, {
                "window": w["days"],
                "features": features,
                "drifted_models": list(breached),
            }
    raise RuntimeError("the monitor did not detect the injected drift in any window")


def _alert_delivered(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    """The drift alert reached the webhook receiver (and only once per alert)."""
    received = ctx.values["received"]
    drift_alerts = [
        a for a in ctx.values["alerts"] if a["metric"] == "drift_share" and a["state"] == "firing"
    ]
    if not drift_alerts:
        raise RuntimeError("no drift alert fired")
    invalid = [r for r in received if not r.valid]
    if invalid:
        raise RuntimeError(f"{len(invalid)} payloads at the receiver lack the webhook fields")
    payloads = [r.body for r in received if r.body.get("metric") == "drift_share"]
    if not payloads:
        raise RuntimeError("the drift alert was not delivered to the webhook receiver")
    fingerprints = [p["fingerprint"] for p in payloads if p["status"] == "firing"]
    if len(fingerprints) != len(set(fingerprints)):
        raise RuntimeError("an alert was delivered more than once while firing")
    first = payloads[0]
    return (
        f"{first['title']} ({first['severity']}) delivered to the webhook receiver in "
        f"{drift_alerts[0]['days']}; {len(received)} notification(s) received in all, "
        f"each alert once",
        {
            "alerts": drift_alerts,
            "received": [r.body for r in received],
            "text": first["text"],
        },
    )


def _retrained(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    """The drift alert led to a retrain: a validated challenger in staging, A/B-tested."""
    retrain = ctx.values["loop"]["retrain"]
    if retrain is None:
        checks = ctx.values["loop"]["checks"]
        raise RuntimeError(
            "no retrain was triggered; last check: "
            + ("; ".join(checks[-1]["reasons"]) or "nothing past its threshold")
            if checks
            else "no retrain was triggered"
        )
    if retrain["status"] != "ab_started":
        raise RuntimeError(f"the retrain ended {retrain['status']}: {retrain['detail']}")
    if not retrain.get("served"):
        raise RuntimeError(f"the API never loaded challenger v{retrain['new_version']}")
    steps = {s["name"]: s["detail"] for s in retrain["steps"]}
    return (
        f"after {retrain['after']} ({retrain['trigger_reason']}): v{retrain['new_version']} "
        f"trained on {steps['prepare data']}, {steps['version data'].split(' →')[0]}; "
        f"{steps['compare with production']}; A/B test {retrain['ab_test']} started",
        {"retrain": retrain},
    )


def _decided(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    """The sequential test decided; the winner serves; no request failed during the swap."""
    from titans.registry.registry_manager import ModelRegistryManager

    loop = ctx.values["loop"]
    decision = loop["decision"]
    production = ModelRegistryManager(ctx.settings).get_alias_version(
        ctx.settings.registered_name("category"), "production"
    )
    if decision is None:
        last = loop.get("last_analysis") or {}
        raise RuntimeError(
            f"the A/B test had not decided by day {DAYS - 1} ({last.get('reason', 'no analysis')})"
            f"; v{production} stays in production"
        )
    arms = decision["arms"]
    figures = ", ".join(
        f"{arm} v{arms[arm]['version']} accuracy {arms[arm]['accuracy']:.3f} "
        f"on {arms[arm]['outcomes']:,} labels"
        for arm in ("A", "B")
        if arms[arm]["accuracy"] is not None
    )
    if decision["decision"] == "promote_b" and not decision.get("served"):
        raise RuntimeError("B won but the API never served it")
    return (
        f"after {decision['after']}: {decision['decision']} ({figures}; always-valid p "
        f"{decision['always_valid_p']:.2g}) → {decision['action']}; production is "
        f"v{production}; {len(ctx.values['replay_failures'])} failed requests during the swap",
        {"decision": decision, "production": production},
    )


def _report(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from datetime import datetime

    from titans.monitoring.model_monitor import ModelMonitor
    from titans.monitoring.report import write_report

    windows = ctx.values["windows"]
    monitor = ModelMonitor(ctx.settings)
    data = monitor.build_report(
        "category",
        start=datetime.fromisoformat(windows[-2]["start"]),
        end=datetime.fromisoformat(windows[-1]["end"]),
    )
    path = write_report(data, ctx.settings.home_dir / "reports" / "demo-monitoring.html")
    drifted = (data.get("drift") or {}).get("drifted_features") or []
    return (
        f"{path} (category, last two weeks: {data['predictions']:,} predictions, "
        f"drifted: {', '.join(drifted) or 'none'})",
        {"report": str(path)},
    )


def _audit(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from titans.governance.audit import AuditLogger

    audit = AuditLogger(ctx.settings)
    result = audit.verify()
    if not result.ok:
        raise RuntimeError(
            f"audit chain broken at entry {result.first_broken_seq}: {result.reason}"
        )
    return (
        f"{result.entries_checked} entries, chain verifies, head {result.head_hash}",
        {"entries": result.entries_checked, "head": result.head_hash, "verified": result.ok},
    )


STEPS: list[tuple[str, Step]] = [
    ("generate", _generate),
    ("validate data", _validate),
    ("train + register", _train),
    ("validate + approve + promote", _promote),
    ("serve + replay + monitor", _serve_and_monitor),
    ("drift detected", _drift_detected),
    ("alert delivered", _alert_delivered),
    ("retrain + A/B test", _retrained),
    ("challenger decided", _decided),
    ("monitoring report", _report),
    ("audit chain", _audit),
]


def run_demo(
    settings: Settings | None = None,
    rows: int | None = None,
    seed: int | None = None,
    on_progress: Callable[[str], None] | None = None,
    fast: bool = False,
) -> Iterator[StepResult]:
    """Run the loop step by step; stop after the first failed step (its result says why)."""
    settings = settings or Settings()
    ctx = DemoContext(
        settings=settings,
        rows=rows or settings.ci_rows,
        seed=settings.seed if seed is None else seed,
        fast=fast,
        on_progress=on_progress or (lambda _msg: None),
    )
    for name, step in STEPS:
        started = time.perf_counter()
        try:
            detail, data = step(ctx)
        except Exception as exc:  # reported as a failed step; the CLI exits non-zero
            yield StepResult(
                name, False, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
            )
            return
        yield StepResult(name, True, detail, time.perf_counter() - started, data)
    ctx.values.pop("frame", None)
    store = ctx.values.pop("store", None)
    if store is not None:
        store.dispose()


def demo_context_results(results: list[StepResult]) -> dict[str, Any]:
    """All step data in one dict (for JSON output)."""
    return {r.name: {"ok": r.ok, "detail": r.detail, **r.data} for r in results}
