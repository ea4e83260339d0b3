"""A/B tests as the API and an operator use them: routing, metrics from the log, decisions."""

from __future__ import annotations

import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, insert
from typer.testing import CliRunner

from titans.cli import _register_groups, app, main
from titans.config import Settings
from titans.errors import InputError
from titans.experiments.ab_testing import (
    ABTestingFramework,
    buckets_of,
    shadow_prediction_id,
)
from titans.governance.audit import AuditLogger
from titans.store import Store
from titans.store.models import Feedback, Prediction, utcnow

MODEL = "titans-category"
runner = CliRunner()
_register_groups()


def _framework(store: Store, **settings: Any) -> ABTestingFramework:
    base = store.settings.model_dump(include={"home"})
    s = Settings(**base, TITANS_DATABASE_URL=store.url, **settings)
    return ABTestingFramework(s, store, seed=7)


def _log(
    store: Store,
    model: str,
    arm: str,
    version: str,
    predicted: list[Any],
    actual: list[dict[str, Any] | None],
    *,
    errors: int = 0,
    latency_ms: float = 5.0,
    ts_shift: timedelta = timedelta(0),
    ids: list[str] | None = None,
) -> list[str]:
    """Write predictions (and feedback where ``actual`` is given) as the serving log would."""
    ids = ids or [uuid.uuid4().hex for _ in predicted]
    ts = utcnow() + ts_shift
    rows = [
        {
            "prediction_id": pid,
            "ts": ts,
            "model_name": model,
            "model_version": version,
            "alias": "production",
            "arm": arm,
            "entity_id": f"c-{i}",
            "features": {"amount": -10.0},
            "prediction": (
                {"error": "model failed"}
                if i < errors
                else value
                if isinstance(value, dict)
                else {"prediction": value}
            ),
            "score": None,
            "latency_ms": latency_ms + (i % 10),
        }
        for i, (pid, value) in enumerate(zip(ids, predicted, strict=True))
    ]
    feedback = [
        {"prediction_id": pid, "ts": ts, "actual": act}
        for pid, act in zip(ids, actual, strict=True)
        if act is not None
    ]
    with store.session() as session:
        session.execute(insert(Prediction), rows)
        if feedback:
            session.execute(insert(Feedback), feedback)
    return ids


def _category_outcomes(n: int, correct: int) -> tuple[list[str], list[dict[str, Any] | None]]:
    predicted = ["Groceries"] * n
    actual: list[dict[str, Any] | None] = [
        {"category": "Groceries" if i < correct else "Rent"} for i in range(n)
    ]
    return predicted, actual


# ---------------------------------------------------------------- set up, persist, refuse


def test_a_test_is_persisted_and_a_second_running_test_per_model_is_refused(
    store: Store,
) -> None:
    fw = _framework(store)
    created = fw.setup_ab_test("cat-v4", f"models:/{MODEL}/3", (MODEL, 4), 0.2)
    assert created.status == "running" and created.mode == "split"

    again = ABTestingFramework(store=store).get_test("cat-v4")  # a fresh instance reads it
    assert (again.model_name, again.model_a_version, again.model_b_version) == (MODEL, "3", "4")
    assert again.traffic_split == pytest.approx(0.2)
    assert len(again.salt) == 32

    with pytest.raises(InputError, match=r"'cat-v4' is already running for titans-category"):
        fw.setup_ab_test("cat-v5", (MODEL, 3), (MODEL, 5), 0.1)
    with pytest.raises(InputError, match="already exists"):
        fw.setup_ab_test("cat-v4", ("titans-amount", 1), ("titans-amount", 2), 0.1)
    # another model may run its own test at the same time
    fw.setup_ab_test("amount-v2", ("amount", 1), ("amount", 2), 0.5)

    fw.stop_test("cat-v4", "B's latency too high")
    assert fw.get_test("cat-v4").status == "stopped"
    assert fw.setup_ab_test("cat-v5", (MODEL, 3), (MODEL, 5), 0.1).status == "running"
    assert [t.name for t in fw.list_tests(status="running")] == ["cat-v5", "amount-v2"]


@pytest.mark.parametrize(
    ("model_a", "model_b", "split", "message"),
    [
        ((MODEL, 3), (MODEL, 4), 0.0, "strictly between 0 and 1"),
        ((MODEL, 3), (MODEL, 4), 1.0, "strictly between 0 and 1"),
        ((MODEL, 3), ("titans-amount", 4), 0.5, "one registered model"),
        ((MODEL, 3), (MODEL, 3), 0.5, "two different versions"),
        (f"models:/{MODEL}@production", (MODEL, 4), 0.5, "not models:/<name>/<version>"),
    ],
)
def test_bad_test_definitions_are_refused_with_what_to_do(
    store: Store, model_a: Any, model_b: Any, split: float, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        ABTestingFramework(store=store).setup_ab_test("t", model_a, model_b, split)
    assert ABTestingFramework(store=store).list_tests() == []


def test_stopping_needs_a_running_test_and_a_reason(store: Store) -> None:
    fw = _framework(store)
    with pytest.raises(InputError, match="no A/B test named 'nope'"):
        fw.stop_test("nope", "x")
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    with pytest.raises(InputError, match="reason"):
        fw.stop_test("t", " ")
    fw.stop_test("t", "done")
    with pytest.raises(InputError, match="is stopped, not running"):
        fw.stop_test("t", "again")


# ---------------------------------------------------------------- routing


def test_same_entity_gets_the_same_arm_on_every_instance(store: Store) -> None:
    ABTestingFramework(store=store).setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    replica_1, replica_2 = ABTestingFramework(store=store), ABTestingFramework(store=store)
    requests = [{"model_name": MODEL, "entity_id": f"customer-{i}"} for i in range(500)]
    arms_1 = [replica_1.route_prediction_request(r) for r in requests]
    arms_2 = [replica_2.route_prediction_request(r) for r in requests]
    assert arms_1 == arms_2
    assert {"A", "B"} == set(arms_1)
    again = [replica_1.route_prediction_request(r) for r in requests]
    assert again == arms_1


@pytest.mark.parametrize("split", [0.1, 0.5])
def test_realised_split_over_10000_ids_is_within_2_points(store: Store, split: float) -> None:
    fw = _framework(store)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), split)
    ids = [f"cust-{i}" for i in range(10_000)]
    arms = np.array(
        [fw.route_prediction_request({"model_name": MODEL, "entity_id": i}) for i in ids]
    )
    share_b = float((arms == "B").mean())
    assert abs(share_b - split) <= 0.02, share_b
    # the vectorised bucket function agrees with the router, id for id
    expected = np.where(buckets_of(fw.get_test("t").salt, ids) < split, "B", "A")
    assert (arms == expected).all()


def test_requests_without_an_id_are_split_per_request(store: Store) -> None:
    fw = _framework(store)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.3)
    arms = [fw.route_prediction_request({"model_name": MODEL}) for _ in range(10_000)]
    assert abs(arms.count("B") / 10_000 - 0.3) <= 0.02
    empty = [
        fw.route_prediction_request({"model_name": MODEL, "entity_id": ""}) for _ in range(200)
    ]
    assert {"A", "B"} == set(empty)  # an empty id is no id: not everyone in one arm


def test_no_running_test_means_a_and_the_assignment_names_the_version(store: Store) -> None:
    fw = _framework(store)
    assert fw.route_prediction_request({"model_name": MODEL, "entity_id": "c"}) == "A"
    assert fw.assign({"model_name": MODEL, "entity_id": "c"}) is None
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    assignments = {fw.assign({"model_name": "category", "entity_id": f"c{i}"}) for i in range(50)}
    assert {(a.arm, a.serve_version) for a in assignments if a} == {("A", "1"), ("B", "2")}
    with pytest.raises(InputError, match="model_name"):
        fw.route_prediction_request({"entity_id": "c"})
    fw.stop_test("t", "done")
    assert fw.route_prediction_request({"model_name": MODEL, "entity_id": "c"}) == "A"


def test_shadow_mode_always_answers_a_and_asks_for_b_on_its_share(store: Store) -> None:
    fw = _framework(store)
    fw.setup_ab_test("shadow", (MODEL, 1), (MODEL, 2), 0.25, mode="shadow")
    requests = [{"model_name": MODEL, "entity_id": f"c{i}"} for i in range(4000)]
    assert {fw.route_prediction_request(r) for r in requests} == {"A"}
    shadowed = [fw.shadow_arm(r) for r in requests]
    assert abs(sum(shadowed) / len(shadowed) - 0.25) <= 0.03
    assignment = next(a for r in requests if (a := fw.assign(r)) and a.shadow_version)
    assert (assignment.arm, assignment.serve_version, assignment.shadow_version) == ("A", "1", "2")


def test_routing_reads_the_store_once_per_refresh_not_per_request(store: Store) -> None:
    fw = _framework(store, ab_route_refresh_seconds=3600)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for i in range(1000):
        fw.route_prediction_request({"model_name": MODEL, "entity_id": i})
    assert statements == []
    # another replica stops the test: this one sees it at its next refresh
    ABTestingFramework(store=store).stop_test("t", "done")
    assert fw.running_test(MODEL) == "t"
    fw.refresh_routes()
    assert fw.running_test(MODEL) is None


def test_stale_routes_are_refreshed_in_the_background(store: Store) -> None:
    fw = _framework(store, ab_route_refresh_seconds=0.05)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    assert fw.running_test(MODEL) == "t"
    ABTestingFramework(store=store).stop_test("t", "done")  # another replica stops it
    deadline = time.monotonic() + 10
    while fw.running_test(MODEL) == "t" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fw.running_test(MODEL) is None


def test_routes_survive_an_unreachable_store(store: Store) -> None:
    fw = _framework(store, ab_route_refresh_seconds=0.001)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    before = [fw.route_prediction_request({"model_name": MODEL, "entity_id": i}) for i in range(50)]
    fw.store = Store(url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    after = [fw.route_prediction_request({"model_name": MODEL, "entity_id": i}) for i in range(50)]
    assert after == before and "B" in after


# ---------------------------------------------------------------- metrics and decisions


def test_metrics_per_arm_from_the_log_and_feedback(store: Store) -> None:
    fw = _framework(store)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    predicted, actual = _category_outcomes(200, correct=140)
    _log(store, MODEL, "A", "1", predicted, actual, errors=10, latency_ms=5.0)
    predicted, actual = _category_outcomes(100, correct=90)
    actual[50:] = [None] * 50  # half of B's feedback has not arrived
    _log(store, MODEL, "B", "2", predicted, actual, latency_ms=20.0)
    # not part of the test: before it started, another version, another model
    _log(store, MODEL, "A", "1", *_category_outcomes(30, 0), ts_shift=timedelta(hours=-1))
    _log(store, MODEL, "B", "9", *_category_outcomes(30, 0))
    _log(store, "titans-amount", "B", "2", *_category_outcomes(30, 0))

    metrics = fw.collect_ab_metrics("t")
    a, b = metrics["arms"]["A"], metrics["arms"]["B"]
    assert metrics["metric"] == "accuracy" and metrics["higher_is_better"] is True
    assert (a["traffic"], b["traffic"]) == (200, 100)
    assert metrics["realised_split"] == pytest.approx(100 / 300)
    assert a["errors"] == 10 and a["error_rate"] == pytest.approx(0.05)
    assert b["error_rate"] == 0
    # errored predictions have no outcome: 190 of A's count, 130 of them correct
    assert a["outcomes"] == 190 and a["accuracy"] == pytest.approx(130 / 190)
    assert b["outcomes"] == 50 and b["accuracy"] == pytest.approx(1.0)
    assert a["latency_ms"]["p50"] == pytest.approx(9.5)
    assert b["latency_ms"]["mean"] == pytest.approx(24.5)
    assert b["latency_ms"]["p95"] > b["latency_ms"]["p50"]


def test_clearly_better_b_is_promoted_and_the_decision_is_recorded(store: Store) -> None:
    fw = _framework(store)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5, actor="ann")
    _log(store, MODEL, "A", "1", *_category_outcomes(600, correct=420))  # 0.70
    _log(store, MODEL, "B", "2", *_category_outcomes(600, correct=510))  # 0.85

    result = fw.analyze_ab_results("t", actor="ann")
    assert result["decision"] == "promote_b", result["reason"]
    assert "better" in result["reason"]
    diff = result["difference"]
    assert diff["test"] == "two-proportion z-test"
    assert diff["estimate"] == pytest.approx(0.15)
    assert 0.10 < diff["ci_low"] < 0.15 < diff["ci_high"] < 0.20
    seq = result["sequential"]
    assert seq["always_valid_p"] < 0.05
    low, high = seq["always_valid_ci"]
    assert low < diff["ci_low"] and high > diff["ci_high"]  # always valid costs width

    stored = ABTestingFramework(store=store).get_test("t")
    assert stored.status == "decided" and stored.stopped_at is not None
    assert stored.decision is not None and stored.decision["decision"] == "promote_b"
    assert fw.route_prediction_request({"model_name": MODEL, "entity_id": "x"}) == "A"

    audit = AuditLogger(store)
    actions = [(e.action, e.actor) for e in audit.entries(model_name=MODEL)]
    assert actions == [("ab.created", "ann"), ("ab.decided", "ann")]
    assert audit.entries()[-1].details["decision"] == "promote_b"
    assert audit.verify().ok
    # analysing a decided test again reports, but records and audits nothing new
    again = fw.analyze_ab_results("t")
    assert again["decision"] == "promote_b" and again["persisted"] is False
    assert len(audit.entries()) == 2


def test_identical_arms_keep_the_test_running(store: Store) -> None:
    fw = _framework(store)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    _log(store, MODEL, "A", "1", *_category_outcomes(500, correct=400))
    _log(store, MODEL, "B", "2", *_category_outcomes(500, correct=400))
    result = fw.analyze_ab_results("t")
    assert result["decision"] == "continue"
    assert "no difference shown yet" in result["reason"]
    assert result["difference"]["estimate"] == 0
    assert result["difference"]["p_value"] == pytest.approx(1.0)
    assert fw.get_test("t").status == "running"
    assert [e.action for e in AuditLogger(store).entries()] == ["ab.created"]


def test_a_decision_waits_for_the_minimum_outcomes_per_arm(store: Store) -> None:
    fw = _framework(store, ab_min_samples_per_arm=100)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    assert fw.analyze_ab_results("t")["decision"] == "continue"  # no data at all
    _log(store, MODEL, "A", "1", *_category_outcomes(60, correct=10))
    _log(store, MODEL, "B", "2", *_category_outcomes(60, correct=60))
    result = fw.analyze_ab_results("t")
    assert result["decision"] == "continue"
    assert "each arm needs 100" in result["reason"]


def test_amount_model_b_with_lower_absolute_error_wins_by_welch(store: Store) -> None:
    fw = _framework(store)
    model = "titans-amount"
    fw.setup_ab_test("amount", (model, 1), (model, 2), 0.5)
    rng = np.random.default_rng(0)
    truth = rng.uniform(-200, -50, 800)  # signed expenses, as feedback reports them
    actual: list[dict[str, Any] | None] = [{"amount": float(t)} for t in truth]
    # the amount model predicts the absolute amount: errors compare magnitudes
    _log(store, model, "A", "1", list(-truth[:400] + rng.normal(0, 20, 400)), actual[:400])
    _log(store, model, "B", "2", list(-truth[400:] + rng.normal(0, 10, 400)), actual[400:])
    result = fw.analyze_ab_results("amount")
    assert result["metric"] == "absolute_error" and result["higher_is_better"] is False
    assert result["difference"]["test"] == "Welch's t-test"
    assert result["difference"]["estimate"] < 0 and result["difference"]["ci_high"] < 0
    a, b = result["arms"]["A"], result["arms"]["B"]
    # mean |N(0, s)| = s * sqrt(2 / pi): ≈ 16 for A's noise, ≈ 8 for B's
    assert a["mean_absolute_error"] == pytest.approx(20 * np.sqrt(2 / np.pi), rel=0.1)
    assert b["mean_absolute_error"] == pytest.approx(10 * np.sqrt(2 / np.pi), rel=0.1)
    assert result["decision"] == "promote_b", result["reason"]


def test_worse_b_is_kept_out(store: Store) -> None:
    fw = _framework(store)
    fw.setup_ab_test("t", (MODEL, 1), (MODEL, 2), 0.5)
    _log(store, MODEL, "A", "1", *_category_outcomes(600, correct=510))
    _log(store, MODEL, "B", "2", *_category_outcomes(600, correct=420))
    result = fw.analyze_ab_results("t")
    assert result["decision"] == "keep_a" and "worse" in result["reason"]
    assert fw.get_test("t").decision["decision"] == "keep_a"  # type: ignore[index]


def test_shadow_rows_get_outcomes_from_the_served_predictions_feedback(store: Store) -> None:
    fw = _framework(store)
    fw.setup_ab_test("shadow", (MODEL, 1), (MODEL, 2), 0.5, mode="shadow")
    served_ids = [uuid.uuid4().hex for _ in range(150)]
    predicted, actual = _category_outcomes(150, correct=100)
    _log(store, MODEL, "A", "1", predicted, actual, ids=served_ids)
    # B scored the same requests; its rows carry the shadow id and no feedback of their own
    b_predicted = ["Groceries"] * 120 + ["Rent"] * 30
    _log(
        store,
        MODEL,
        "B",
        "2",
        b_predicted,
        [None] * 150,
        ids=[shadow_prediction_id(p) for p in served_ids],
    )
    metrics = fw.collect_ab_metrics("shadow")
    assert metrics["realised_split"] == pytest.approx(1.0)  # B scored every served request
    assert metrics["arms"]["B"]["outcomes"] == 150
    # B is right on the first 100 (Groceries) and on the last 30 (Rent): 130 of 150
    assert metrics["arms"]["B"]["accuracy"] == pytest.approx(130 / 150)
    assert metrics["arms"]["A"]["accuracy"] == pytest.approx(100 / 150)


# ---------------------------------------------------------------- CLI


def test_cli_create_status_analyze_stop(
    titans_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    created = runner.invoke(
        app, ["ab", "create", "cat-v2", "--model", "category", "--a", "1", "--b", "2",
              "--split", "0.1"],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "started" in created.output and "10.0%" in created.output

    store = Store(Settings())
    _log(store, MODEL, "A", "1", *_category_outcomes(300, correct=240))
    _log(store, MODEL, "B", "2", *_category_outcomes(300, correct=241))

    listed = runner.invoke(app, ["ab", "status"])
    assert listed.exit_code == 0 and "cat-v2" in listed.output and "running" in listed.output
    detail = runner.invoke(app, ["ab", "status", "cat-v2"])
    assert detail.exit_code == 0, detail.output
    assert "0.8033" in detail.output and "realised share of B: 50.0%" in detail.output

    analyzed = runner.invoke(app, ["ab", "analyze", "cat-v2"])
    assert analyzed.exit_code == 0, analyzed.output
    assert "decision: continue" in analyzed.output and "mSPRT" in analyzed.output

    # errors reach the user as one line and exit code 2 through the real entry point
    monkeypatch.setattr(
        sys, "argv", ["titans", "ab", "create", "cat-v3", "--model", "category", "--a", "1",
                      "--b", "3"],
    )  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "error:" in message and "'cat-v2' is already running" in message
    assert "Traceback" not in message

    stopped = runner.invoke(app, ["ab", "stop", "cat-v2", "--reason", "enough"])
    assert stopped.exit_code == 0, stopped.output
    assert "stopped" in stopped.output

    # the model is free again: a clearly better challenger is decided and recorded
    assert (
        runner.invoke(
            app, ["ab", "create", "cat-v3", "-m", "category", "--a", "1", "--b", "3"]
        ).exit_code
        == 0
    )
    _log(store, MODEL, "A", "1", *_category_outcomes(500, correct=350))
    _log(store, MODEL, "B", "3", *_category_outcomes(500, correct=450))
    decided = runner.invoke(app, ["ab", "analyze", "cat-v3", "--as", "ann"])
    assert decided.exit_code == 0, decided.output
    assert "decision: promote_b" in decided.output
    assert "promote version 3" in decided.output and "titans registry promote" in decided.output
    final = runner.invoke(app, ["ab", "status"])
    assert "decided" in final.output and "stopped" in final.output
    actions = [e.action for e in AuditLogger(store).entries()]
    assert actions == ["ab.created", "ab.stopped", "ab.created", "ab.decided"]
    assert AuditLogger(store).verify().ok
    store.dispose()


def test_anomaly_outcomes_compare_the_logged_flag(store: Store) -> None:
    fw = _framework(store)
    model = "titans-anomaly"
    fw.setup_ab_test("anomaly", (model, 1), (model, 2), 0.5)
    flags = [i % 5 == 0 for i in range(200)]
    actual: list[dict[str, Any] | None] = [{"is_anomaly": f} for f in flags]
    # A flags nothing (right on the 160 normal ones); B matches every label
    _log(store, model, "A", "1", [{"is_anomaly": False, "score": 0.1}] * 200, actual)
    _log(store, model, "B", "2", [{"is_anomaly": f, "score": 0.5} for f in flags], actual)
    metrics = fw.collect_ab_metrics("anomaly")
    assert metrics["metric"] == "accuracy"
    assert metrics["arms"]["A"]["accuracy"] == pytest.approx(0.8)
    assert metrics["arms"]["B"]["accuracy"] == pytest.approx(1.0)


def test_cashflow_tests_compare_operations_only(store: Store) -> None:
    fw = _framework(store)
    model = "titans-cashflow"
    fw.setup_ab_test("cashflow", (model, 1), (model, 2), 0.5)
    forecast = {"forecast": [{"date": "2026-12-01", "prediction": 10.0}]}
    _log(store, model, "A", "1", [forecast] * 150, [{"amount": 12.0}] * 150)
    _log(store, model, "B", "2", [forecast] * 150, [{"amount": 12.0}] * 150, errors=15)
    result = fw.analyze_ab_results("cashflow")
    assert result["metric"] is None and result["decision"] == "continue"
    assert "no per-prediction outcome" in result["reason"]
    assert result["arms"]["B"]["error_rate"] == pytest.approx(0.1)
    assert result["arms"]["A"]["traffic"] == 150
