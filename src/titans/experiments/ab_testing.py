"""A/B and shadow tests between two versions of one registered model: routing, metrics, decisions.

Lifecycle: :meth:`ABTestingFramework.setup_ab_test` stores a running test in the ops store
(``ab_tests``; the database allows one running test per model); the prediction API asks
:meth:`~ABTestingFramework.assign` (or the seed's ``route_prediction_request``) which arm serves
each request and logs the arm with the prediction; :meth:`~ABTestingFramework.analyze_ab_results`
reads the prediction log and feedback, and decides ``promote_b``, ``keep_a`` or ``continue``
with the always-valid mSPRT (:mod:`titans.experiments.sequential`), so it may be called after
every batch. A decision is persisted on the test and audited (``ab.decided``); acting on it
(promoting B) stays with the registry's gated promotion.

Routing never touches the database per request: running tests are cached and re-read every
``Settings.ab_route_refresh_seconds`` (or on :meth:`~ABTestingFramework.refresh_routes`); if the
store is unreachable the last known routes keep serving. A request with an entity id goes to B
when ``SHA-256(salt + entity_id)`` mapped to [0, 1) is below the split, so one customer always
sees the same arm, on every replica; a request without an id is split at random.

What the prediction log must hold (the JSON shapes read here):

* ``predictions`` rows of a test: ``model_name`` = the test's model; ``arm`` = ``"A"`` or
  ``"B"``; ``model_version`` = that arm's version (rows of other versions are ignored);
  ``ts`` within the test's lifetime; ``latency_ms``.
* ``prediction`` JSON as the API logs it: category ``{"prediction": "Groceries", ...}``, amount
  ``{"prediction": 42.5, ...}`` (the absolute amount), anomaly ``{"is_anomaly": true,
  "score": ...}``. A failed prediction carries a non-null ``"error"`` key
  (``{"error": "message"}``): it counts in ``error_rate`` and is left out of outcome metrics.
* ``feedback.actual`` JSON, per model: category ``{"category": "Groceries"}`` → accuracy;
  amount ``{"amount": -42.5}`` → absolute error of the magnitudes ``||pred| - |actual||``
  (the amount model predicts the absolute amount; lower is better); anomaly
  ``{"is_anomaly": true}`` → accuracy. A cashflow forecast has no per-prediction outcome: its
  tests compare traffic, latency and errors only (decision ``continue``). Models with other
  names use the first of ``category``, ``is_anomaly``, ``amount`` their feedback holds, against
  ``prediction["prediction"]``.
* Shadow mode: the API returns A and also scores B (when :meth:`shadow_arm` says so), logging
  B's row with arm ``"B"`` and prediction id :func:`shadow_prediction_id` of A's id; feedback
  posted for A's id is then joined to both rows.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from titans.config import MODEL_KEYS, Settings
from titans.errors import InputError
from titans.experiments.sequential import (
    always_valid_ci_halfwidth,
    effective_n,
    msprt_log_lr,
    proportions_z,
    welch_z,
)
from titans.governance.audit import AuditLogger
from titans.store.db import Store, StoreError
from titans.store.models import ABTest, Feedback, Prediction, utcnow

__all__ = [
    "SHADOW_SUFFIX",
    "ABTestingFramework",
    "Assignment",
    "bucket_of",
    "buckets_of",
    "parse_model_ref",
    "shadow_prediction_id",
]

log = logging.getLogger(__name__)

#: appended to the served prediction id to form the shadow (B) row's id
SHADOW_SUFFIX = ":shadow"

Arm = Literal["A", "B"]
Decision = Literal["promote_b", "keep_a", "continue"]
ModelRef = str | tuple[str, str | int] | list[str | int]


@dataclass(frozen=True)
class OutcomeSpec:
    """How one model's feedback becomes an outcome per prediction."""

    metric: Literal["accuracy", "absolute_error"]
    #: key of ``feedback.actual`` holding the true value
    actual_key: str
    #: key of the logged ``prediction`` JSON holding the predicted value
    predicted_key: str = "prediction"
    #: compare absolute values (the amount model predicts |amount|, feedback is signed)
    magnitude: bool = False

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"


_OUTCOMES: dict[str, OutcomeSpec | None] = {
    "category": OutcomeSpec("accuracy", "category"),
    "amount": OutcomeSpec("absolute_error", "amount", magnitude=True),
    "anomaly": OutcomeSpec("accuracy", "is_anomaly", predicted_key="is_anomaly"),
    "cashflow": None,
}
#: for models without a known key: the first of these the feedback holds decides the metric
_ACTUAL_KEYS: tuple[str, ...] = ("category", "is_anomaly", "amount")
#: keys of the prediction JSON read as the predicted value
_PREDICTED_KEYS: tuple[str, ...] = ("prediction", "is_anomaly")

_TEST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_MODEL_URI = re.compile(r"^models:/([^/@]+)/([^/@]+)$")


def shadow_prediction_id(prediction_id: str) -> str:
    """Prediction id of B's shadow row for the served prediction ``prediction_id``.

    >>> shadow_prediction_id("p-123")
    'p-123:shadow'
    """
    return f"{prediction_id}{SHADOW_SUFFIX}"


def bucket_of(salt: str, entity_id: object) -> float:
    """The entity's uniform number in [0, 1): SHA-256 of salt + id, top 53 bits.

    >>> bucket_of("s", "customer-1") == bucket_of("s", "customer-1")
    True
    >>> round(bucket_of("s", "customer-1"), 6)
    0.555265
    """
    digest = hashlib.sha256(f"{salt}{entity_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) * 2.0**-53


def buckets_of(salt: str, entity_ids: Iterable[object]) -> np.ndarray:
    """:func:`bucket_of` for many ids at once (one digest per id, one numpy conversion)."""
    raw = b"".join(hashlib.sha256(f"{salt}{e}".encode()).digest()[:8] for e in entity_ids)
    top = np.frombuffer(raw, dtype=">u8") >> np.uint64(11)
    return top.astype(np.float64) * 2.0**-53


def parse_model_ref(ref: ModelRef, settings: Settings | None = None) -> tuple[str, str]:
    """``(registered name, version)`` from ``models:/<name>/<version>`` or ``(name, version)``.

    A bare model key (``category``) becomes its registered name (``titans-category``).

    >>> parse_model_ref("models:/titans-category/3")
    ('titans-category', '3')
    >>> parse_model_ref(("category", 4))
    ('titans-category', '4')
    """
    if isinstance(ref, str):
        match = _MODEL_URI.match(ref.strip())
        if match is None:
            raise InputError(
                f"model reference {ref!r} is not models:/<name>/<version>; pass e.g. "
                "models:/titans-category/3 (a version number, not an alias)"
            )
        name, version = match.group(1), match.group(2)
    elif isinstance(ref, tuple | list) and len(ref) == 2:
        name, version = str(ref[0]).strip(), str(ref[1]).strip()
    else:
        raise InputError(
            f"model reference {ref!r} is neither models:/<name>/<version> nor (name, version)"
        )
    if not name or not version or len(version) > 50:
        raise InputError(f"model reference {ref!r} needs a model name and a version (≤ 50 chars)")
    return _registered_name(name, settings), version


def _registered_name(name: str, settings: Settings | None) -> str:
    if name in MODEL_KEYS:
        return (settings or Settings()).registered_name(name)
    return name


@dataclass(frozen=True)
class _Route:
    """A running test as the router needs it (immutable, shared between request threads)."""

    test_name: str
    model_name: str
    version_a: str
    version_b: str
    traffic_split: float
    mode: str
    salt: str


@dataclass(frozen=True)
class Assignment:
    """What a request handler does for one request under a running test."""

    test_name: str
    #: the arm whose prediction is returned to the client (always "A" in shadow mode)
    arm: Arm
    #: version to serve the request with
    serve_version: str
    #: version to also score and log as arm "B" (shadow mode only; None = no shadow scoring)
    shadow_version: str | None = None


def _finite(value: Any) -> float | None:
    """A JSON-safe float: None for NaN/inf/None."""
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(timespec="seconds")


class ABTestingFramework:
    """A/B and shadow tests: set up, route, measure, decide, stop.

    >>> fw = ABTestingFramework(store=Store(url="sqlite://"))
    >>> test = fw.setup_ab_test("cat-v4", "models:/titans-category/3", ("titans-category", 4), 0.5)
    >>> fw.route_prediction_request({"model_name": "titans-category", "entity_id": "c-1"}) in "AB"
    True
    >>> fw.route_prediction_request({"model_name": "titans-amount", "entity_id": "c-1"})
    'A'
    >>> fw.analyze_ab_results("cat-v4")["decision"]
    'continue'
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        if settings is None:
            settings = store.settings if store is not None else Settings()
        self.settings = settings
        self.store = store if store is not None else Store(settings)
        self.audit = AuditLogger(self.store)
        # per-request split of id-less requests; seeded per instance when asked (tests)
        self._rng = random.Random(seed if seed is not None else secrets.randbits(64))  # nosec B311
        self._routes: dict[str, _Route] = {}
        self._routes_loaded_at: float | None = None
        self._routes_lock = threading.Lock()

    # ------------------------------------------------------------------ set up / stop

    def setup_ab_test(
        self,
        test_name: str,
        model_a: ModelRef,
        model_b: ModelRef,
        traffic_split: float,
        mode: Literal["split", "shadow"] = "split",
        *,
        actor: str = "system",
    ) -> ABTest:
        """Start a test sending ``traffic_split`` of traffic to B (in shadow mode: scoring that
        share with B too); persisted, audited ``ab.created``. One running test per model."""
        if not isinstance(test_name, str) or not _TEST_NAME.match(test_name):
            raise InputError(
                f"A/B test name {test_name!r} must be 1-200 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        name_a, version_a = parse_model_ref(model_a, self.settings)
        name_b, version_b = parse_model_ref(model_b, self.settings)
        if name_a != name_b:
            raise InputError(
                f"A and B must be versions of one registered model, got {name_a} and {name_b}"
            )
        if version_a == version_b:
            raise InputError(f"A and B are both version {version_a}; pick two different versions")
        try:
            split = float(traffic_split)
        except (TypeError, ValueError) as exc:
            raise InputError(f"traffic split {traffic_split!r} is not a number") from exc
        if mode not in ("split", "shadow"):
            raise InputError(f"mode {mode!r} must be 'split' or 'shadow'")
        if mode == "shadow" and not 0.0 < split <= 1.0:
            raise InputError(
                f"traffic split {split} must be above 0 and at most 1 (share B also scores)"
            )
        if mode == "split" and not 0.0 < split < 1.0:
            raise InputError(f"traffic split {split} must be strictly between 0 and 1 (share to B)")
        test = ABTest(
            name=test_name,
            model_name=name_a,
            model_a_version=version_a,
            model_b_version=version_b,
            traffic_split=split,
            mode=mode,
            salt=secrets.token_hex(16),
            status="running",
            created_at=utcnow(),
        )
        try:
            with self.store.session() as session:
                self._refuse_duplicates(session, test_name, name_a)
                session.add(test)
                session.flush()
                self.audit.log(
                    "ab.created",
                    actor,
                    name_a,
                    version_b,
                    {
                        "test": test_name,
                        "model_a_version": version_a,
                        "model_b_version": version_b,
                        "traffic_split": split,
                        "mode": mode,
                    },
                    session=session,
                )
        except IntegrityError as exc:  # a concurrent creator won the race past our check
            with self.store.session() as session:
                self._refuse_duplicates(session, test_name, name_a)
            raise InputError(f"A/B test {test_name!r} could not be created ({exc.orig})") from exc
        self.refresh_routes()
        return test

    @staticmethod
    def _refuse_duplicates(session: Session, test_name: str, model_name: str) -> None:
        if session.scalar(select(ABTest.id).where(ABTest.name == test_name)) is not None:
            raise InputError(f"an A/B test named {test_name!r} already exists; pick another name")
        running = session.scalar(
            select(ABTest.name).where(ABTest.model_name == model_name, ABTest.status == "running")
        )
        if running is not None:
            raise InputError(
                f"A/B test {running!r} is already running for {model_name}; stop it first "
                f"(`titans ab stop {running} --reason ...`)"
            )

    def stop_test(self, test_name: str, reason: str, *, actor: str = "system") -> ABTest:
        """Stop a running test without a decision (traffic returns to A); audited ``ab.stopped``."""
        if not reason or not reason.strip():
            raise InputError("say why the test stops: pass a non-empty reason")
        now = utcnow()
        with self.store.session() as session:
            test = self._get(session, test_name)
            done = session.execute(
                update(ABTest)
                .where(ABTest.id == test.id, ABTest.status == "running")
                .values(
                    status="stopped",
                    stopped_at=now,
                    decision={"decision": "stopped", "reason": reason, "by": actor},
                )
            ).rowcount  # type: ignore[attr-defined]
            if done != 1:
                raise InputError(
                    f"A/B test {test_name!r} is {test.status}, not running; nothing to stop"
                )
            self.audit.log(
                "ab.stopped",
                actor,
                test.model_name,
                test.model_b_version,
                {"test": test_name, "reason": reason},
                session=session,
            )
        self.refresh_routes()
        return self.get_test(test_name)

    # ------------------------------------------------------------------ reading tests

    @staticmethod
    def _get(session: Session, test_name: str) -> ABTest:
        test = session.scalar(select(ABTest).where(ABTest.name == test_name))
        if test is None:
            raise InputError(f"no A/B test named {test_name!r}; `titans ab status` lists them")
        return test

    def get_test(self, test_name: str) -> ABTest:
        """The stored test named ``test_name`` (InputError if there is none)."""
        with self.store.session() as session:
            return self._get(session, test_name)

    def list_tests(self, status: str | None = None) -> list[ABTest]:
        """Stored tests, newest first; optionally only those with ``status``."""
        stmt = select(ABTest).order_by(ABTest.created_at.desc(), ABTest.id.desc())
        if status is not None:
            stmt = stmt.where(ABTest.status == status)
        with self.store.session() as session:
            return list(session.scalars(stmt))

    # ------------------------------------------------------------------ routing

    def refresh_routes(self) -> None:
        """Re-read the running tests now (the router also does it every refresh interval)."""
        with self._routes_lock:
            self._load_routes()

    def _load_routes(self) -> None:
        try:
            with self.store.session() as session:
                rows = session.scalars(select(ABTest).where(ABTest.status == "running")).all()
        except (StoreError, SQLAlchemyError) as exc:
            # keep serving the last known routes; try again after the interval
            log.warning("could not refresh A/B routes, keeping the last ones: %s", exc)
            self._routes_loaded_at = time.monotonic()
            return
        self._routes = {
            r.model_name: _Route(
                r.name,
                r.model_name,
                r.model_a_version,
                r.model_b_version,
                r.traffic_split,
                r.mode,
                r.salt,
            )
            for r in rows
        }
        self._routes_loaded_at = time.monotonic()

    def _current_routes(self) -> dict[str, _Route]:
        """The running tests as last read. The first call reads the store; later, stale routes
        are re-read by one background thread while callers go on with the routes they have, so
        a request (possibly on the API's event loop) never waits for the store."""
        loaded = self._routes_loaded_at
        if loaded is None:
            with self._routes_lock:
                if self._routes_loaded_at is None:
                    self._load_routes()
            return self._routes
        stale = time.monotonic() - loaded >= self.settings.ab_route_refresh_seconds
        if stale and self._routes_lock.acquire(blocking=False):
            threading.Thread(
                target=self._refresh_in_background, name="titans-ab-routes", daemon=True
            ).start()
        return self._routes

    def _refresh_in_background(self) -> None:
        try:
            self._load_routes()
        except Exception:  # keep the last routes; the next stale read tries again
            log.exception("A/B route refresh failed")
            self._routes_loaded_at = time.monotonic()
        finally:
            self._routes_lock.release()

    def running_test(self, model_name: str) -> str | None:
        """Name of the running test for ``model_name`` as the router currently sees it."""
        route = self._current_routes().get(_registered_name(model_name, self.settings))
        return None if route is None else route.test_name

    def versions_in_tests(self) -> dict[str, set[str]]:
        """Registered name -> both arms' versions of its running test (what the API must hold)."""
        return {
            name: {route.version_a, route.version_b}
            for name, route in self._current_routes().items()
        }

    def assign(self, request: Mapping[str, Any]) -> Assignment | None:
        """The arm, the version to serve and any shadow version for one request; None when no
        test runs for the request's model (serve production, log no arm)."""
        model_name = request.get("model_name")
        if not isinstance(model_name, str) or not model_name:
            raise InputError("the request needs a 'model_name' to be routed")
        route = self._current_routes().get(_registered_name(model_name, self.settings))
        if route is None:
            return None
        entity = request.get("entity_id")
        if entity is None or entity == "":
            entity = request.get("customer_id")
        no_id = entity is None or entity == ""
        u = self._rng.random() if no_id else bucket_of(route.salt, entity)
        to_b = u < route.traffic_split
        if route.mode == "shadow":
            return Assignment(
                route.test_name, "A", route.version_a, route.version_b if to_b else None
            )
        if to_b:
            return Assignment(route.test_name, "B", route.version_b)
        return Assignment(route.test_name, "A", route.version_a)

    def route_prediction_request(self, request: Mapping[str, Any]) -> str:
        """``"A"`` or ``"B"``: the arm whose prediction the client gets (``"A"`` with no test
        running and always in shadow mode)."""
        assignment = self.assign(request)
        return "A" if assignment is None else assignment.arm

    def shadow_arm(self, request: Mapping[str, Any]) -> bool:
        """True when the caller should also score (and log) B for this request (shadow mode).

        For requests without an entity id this draws afresh: call :meth:`assign` once per
        request to get the arm and the shadow decision together.
        """
        assignment = self.assign(request)
        return assignment is not None and assignment.shadow_version is not None

    # ------------------------------------------------------------------ metrics

    def _outcome_spec(self, model_name: str, frame: pd.DataFrame) -> OutcomeSpec | None:
        prefix = self.settings.model_name_prefix
        key = model_name.removeprefix(prefix) if model_name.startswith(prefix) else model_name
        if key in _OUTCOMES:
            return _OUTCOMES[key]
        for actual_key in _ACTUAL_KEYS:
            if frame[f"actual_{actual_key}"].notna().any():
                return OutcomeSpec(
                    "absolute_error" if actual_key == "amount" else "accuracy", actual_key
                )
        return None

    def _frame(self, test: ABTest) -> pd.DataFrame:
        """One row per logged prediction of the test: arm, latency, error flag, outcome inputs."""
        pid = Prediction.prediction_id
        feedback_id: ColumnElement[str] = pid.expression
        if test.mode == "shadow":
            # B's shadow row takes the feedback of the served row it shadows; the key is
            # computed on the prediction side so the feedback primary key serves the join
            parent = func.substr(pid, 1, func.length(pid) - len(SHADOW_SUFFIX))
            feedback_id = case((pid.endswith(SHADOW_SUFFIX), parent), else_=pid)
        conditions = [
            Prediction.model_name == test.model_name,
            or_(
                and_(Prediction.arm == "A", Prediction.model_version == test.model_a_version),
                and_(Prediction.arm == "B", Prediction.model_version == test.model_b_version),
            ),
            Prediction.ts >= test.created_at,
        ]
        if test.stopped_at is not None:
            conditions.append(Prediction.ts <= test.stopped_at)
        stmt = (
            select(
                Prediction.arm,
                Prediction.latency_ms,
                Prediction.prediction["error"].label("error"),
                *(Prediction.prediction[k].label(f"predicted_{k}") for k in _PREDICTED_KEYS),
                *(Feedback.actual[k].label(f"actual_{k}") for k in _ACTUAL_KEYS),
            )
            .select_from(Prediction)
            .outerjoin(Feedback, Feedback.prediction_id == feedback_id)
            .where(*conditions)
        )
        with self.store.session() as session:
            result = session.execute(stmt)
            columns = list(result.keys())
            rows = result.all()
        return pd.DataFrame(rows, columns=columns)

    @staticmethod
    def _outcomes(frame: pd.DataFrame, spec: OutcomeSpec) -> pd.Series:
        """Per-prediction outcome (1/0 correct, or absolute error); NaN without feedback."""
        actual = frame[f"actual_{spec.actual_key}"]
        usable = actual.notna() & frame["error"].isna()
        predicted = frame[f"predicted_{spec.predicted_key}"]
        if spec.metric == "accuracy":
            correct = (predicted == actual).astype(np.float64)
            return correct.where(usable)
        guess = pd.to_numeric(predicted, errors="coerce")
        true = pd.to_numeric(actual, errors="coerce")
        if spec.magnitude:
            guess, true = guess.abs(), true.abs()
        # a prediction without a number has no outcome rather than a NaN error
        return (guess - true).abs().where(usable & guess.notna() & true.notna())

    def _collect(self, test: ABTest) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        frame = self._frame(test)
        spec = self._outcome_spec(test.model_name, frame)
        outcomes = (
            self._outcomes(frame, spec)
            if spec is not None
            else pd.Series(np.nan, index=frame.index, dtype=np.float64)
        )
        arms: dict[str, Any] = {}
        samples: dict[str, np.ndarray] = {}
        for arm, version in (("A", test.model_a_version), ("B", test.model_b_version)):
            mask = (frame["arm"] == arm).to_numpy()
            latency = frame.loc[mask, "latency_ms"].to_numpy(dtype=np.float64)
            errors = int(frame.loc[mask, "error"].notna().sum())
            values = outcomes[mask].dropna().to_numpy(dtype=np.float64)
            samples[arm] = values
            traffic = int(mask.sum())
            entry: dict[str, Any] = {
                "version": version,
                "traffic": traffic,
                "latency_ms": {
                    "mean": _finite(latency.mean()) if traffic else None,
                    "p50": _finite(np.percentile(latency, 50)) if traffic else None,
                    "p95": _finite(np.percentile(latency, 95)) if traffic else None,
                },
                "errors": errors,
                "error_rate": errors / traffic if traffic else None,
                "outcomes": len(values),
            }
            if spec is not None:
                value = _finite(values.mean()) if len(values) else None
                entry["accuracy" if spec.metric == "accuracy" else "mean_absolute_error"] = value
            arms[arm] = entry
        # in shadow mode every request is served by A and B scores a share of them
        total = arms["A"]["traffic"] + (0 if test.mode == "shadow" else arms["B"]["traffic"])
        metrics = {
            "test": test.name,
            "model_name": test.model_name,
            "mode": test.mode,
            "status": test.status,
            "traffic_split": test.traffic_split,
            "window": {"start": _iso(test.created_at), "end": _iso(test.stopped_at)},
            "metric": None if spec is None else spec.metric,
            "higher_is_better": None if spec is None else spec.higher_is_better,
            "realised_split": arms["B"]["traffic"] / total if total else None,
            "arms": arms,
        }
        return metrics, samples

    def collect_ab_metrics(self, test_name: str) -> dict[str, Any]:
        """Per arm: traffic, latency (mean/p50/p95 ms), error rate, outcomes with feedback and
        the outcome metric (``accuracy`` or ``mean_absolute_error``); JSON-ready."""
        return self._collect(self.get_test(test_name))[0]

    # ------------------------------------------------------------------ analysis

    def analyze_ab_results(self, test_name: str, *, actor: str = "system") -> dict[str, Any]:
        """B − A with a fixed-horizon confidence interval, the always-valid mSPRT, and a
        decision (``promote_b`` / ``keep_a`` / ``continue``) with its reason.

        The decision comes from the mSPRT alone, so calling this after every batch keeps the
        false-positive rate at ``ab_alpha``. A decision on a running test is stored on it (the
        test ends, traffic returns to A) and audited ``ab.decided``.
        """
        test = self.get_test(test_name)
        metrics, samples = self._collect(test)
        alpha = self.settings.ab_alpha
        tau = self.settings.ab_msprt_tau
        minimum = self.settings.ab_min_samples_per_arm
        a, b = samples["A"], samples["B"]
        result: dict[str, Any] = {
            **metrics,
            "alpha": alpha,
            "min_samples_per_arm": minimum,
            "difference": None,
            "sequential": None,
        }
        if metrics["metric"] is None:
            result["decision"] = "continue"
            result["reason"] = (
                f"{test.model_name} has no per-prediction outcome to compare (no category, "
                "is_anomaly or amount feedback): judge it on traffic, latency and errors"
            )
            return self._finish(test, result, actor)
        if len(a) < 2 or len(b) < 2:
            result["decision"] = "continue"
            result["reason"] = (
                f"not enough outcomes yet (A {len(a)}, B {len(b)}; each arm needs "
                f"{minimum}): keep collecting feedback"
            )
            return self._finish(test, result, actor)
        higher_is_better = metrics["higher_is_better"]
        diff = float(b.mean() - a.mean())
        se = float(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
        n_eff = float(effective_n(len(a), len(b)))
        quantile = float(stats.norm.ppf(1 - alpha / 2))
        if metrics["metric"] == "accuracy":
            z = float(proportions_z(a.sum(), len(a), b.sum(), len(b)))
            result["difference"] = {
                "estimate": diff,
                "ci_low": diff - quantile * se,
                "ci_high": diff + quantile * se,
                "confidence": 1 - alpha,
                "test": "two-proportion z-test",
                "statistic": z,
                "p_value": _finite(2 * stats.norm.sf(abs(z))),
            }
        else:
            z = float(welch_z(a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b)))
            welch = stats.ttest_ind(b, a, equal_var=False)
            ci = welch.confidence_interval(1 - alpha)
            result["difference"] = {
                "estimate": diff,
                "ci_low": _finite(ci.low),
                "ci_high": _finite(ci.high),
                "confidence": 1 - alpha,
                "test": "Welch's t-test",
                "statistic": _finite(welch.statistic),
                "p_value": _finite(welch.pvalue),
            }
        log_lr = float(msprt_log_lr(z, n_eff, tau))
        half = float(always_valid_ci_halfwidth(se, n_eff, tau, alpha))
        result["sequential"] = {
            "method": "mSPRT (normal mixture on the standardised effect)",
            "tau": tau,
            "z": z,
            "log_likelihood_ratio": log_lr,
            "threshold": 1 / alpha,
            "always_valid_p": min(1.0, math.exp(-log_lr)),
            "always_valid_ci": [_finite(diff - half), _finite(diff + half)],
        }
        name = metrics["metric"].replace("_", " ")
        shown = f"B {b.mean():.4g} vs A {a.mean():.4g} (B − A {diff:+.4g})"
        p_seq = result["sequential"]["always_valid_p"]
        if len(a) < minimum or len(b) < minimum:
            decision: Decision = "continue"
            reason = (
                f"{len(a)} outcomes for A and {len(b)} for B; each arm needs {minimum} before "
                f"a decision ({name}: {shown})"
            )
        elif log_lr >= math.log(1 / alpha):
            b_better = diff > 0 if higher_is_better else diff < 0
            decision = "promote_b" if b_better else "keep_a"
            reason = (
                f"{name}: {shown}; B is {'better' if b_better else 'worse'} "
                f"(always-valid p = {p_seq:.3g} ≤ alpha {alpha})"
            )
        else:
            decision = "continue"
            reason = (
                f"no difference shown yet ({name}: {shown}; always-valid p = {p_seq:.3g} > "
                f"alpha {alpha}): keep collecting"
            )
        result["decision"] = decision
        result["reason"] = reason
        return self._finish(test, result, actor)

    def _finish(self, test: ABTest, result: dict[str, Any], actor: str) -> dict[str, Any]:
        """Persist and audit a decision reached on a running test."""
        result["persisted"] = False
        if result["decision"] == "continue" or test.status != "running":
            return result
        now = utcnow()
        record = {
            "decision": result["decision"],
            "reason": result["reason"],
            "metric": result["metric"],
            "difference": result["difference"],
            "always_valid_p": result["sequential"]["always_valid_p"],
            "outcomes": {arm: result["arms"][arm]["outcomes"] for arm in ("A", "B")},
            "decided_at": _iso(now),
            "by": actor,
        }
        with self.store.session() as session:
            done = session.execute(
                update(ABTest)
                .where(ABTest.id == test.id, ABTest.status == "running")
                .values(status="decided", stopped_at=now, decision=record)
            ).rowcount  # type: ignore[attr-defined]
            if done == 1:  # another analyser may have decided first: only one audit entry
                self.audit.log(
                    "ab.decided",
                    actor,
                    test.model_name,
                    test.model_b_version,
                    {"test": test.name, **record},
                    session=session,
                )
        if done == 1:
            result["persisted"] = True
            result["status"] = "decided"
            self.refresh_routes()
        return result
