"""Serving benchmark: single-transaction ``POST /predict/category`` under wrk, three servers.

In one run, against the same category model version in a throw-away TITANS_HOME:

- **ours**: ``titans serve`` with an API key, the prediction log on (SQLite ops store) and
  metrics on, the rate limit raised out of the way;
- **mlflow**: ``mlflow models serve --env-manager local`` of ``models:/titans-category/<v>``;
- **floor**: a bare FastAPI endpoint returning a constant (benchmarks/floor_app.py), the most
  any FastAPI endpoint sustains on this machine.

All three are one uvicorn process (1 worker) with uvicorn's default loop and HTTP implementation
and no access log, on 127.0.0.1. Each server is started, checked with one real request (200 and
a prediction), loaded with ``wrk -t2 -cN -dSs --latency --timeout 10s -s wrk_post.lua`` at each
connection count, then stopped (SIGTERM; ours drains its prediction log) before the next one
starts, so no server's background work overlaps another's measurement. Afterwards the rows in
the ops store's predictions table are compared with the 200s wrk saw and the 200s ours counted.

Needs the ``wrk`` binary (Debian package ``wrk``).

Usage: python benchmarks/bench_serving.py [--seconds 20] [--connections 16 64]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_post.lua"
FLOOR_APP = HERE / "floor_app.py"

#: wrk client threads (the machine has few cores; wrk shares them with the server)
WRK_THREADS = 2
#: a request slower than this counts as a wrk timeout (socket error), not a latency sample
WRK_TIMEOUT = "10s"
#: uvicorn processes per server (the same for all three)
WORKERS = 1
#: the longest a server may take from start to its first good answer
START_TIMEOUT_S = 120.0
#: the longest a stopped server may take to exit (ours drains its prediction log first)
STOP_TIMEOUT_S = 60.0
#: checked requests before timing, per server (each must answer 200 with a prediction)
VERIFY_REQUESTS = 3

#: the goals at 16 connections (issue): ours/mlflow req/s, ours p99 / mlflow p99, ours/floor
GOAL_VS_MLFLOW_RPS = 20.0
GOAL_VS_MLFLOW_P99 = 0.10
GOAL_VS_FLOOR_RPS = 0.40
GOAL_CONNECTIONS = 16

#: one transaction as our API takes it (schemas.Transaction)
TRANSACTION: dict[str, Any] = {
    "date": "2024-05-02",
    "type": "Expense",
    "description": "Adobe Creative Cloud subscription",
    "amount": -59.99,
    "payment_method": "Credit Card",
    "reference": "INV-1",
    "status": "Completed",
    "entity_id": "customer-7",
}
#: the same transaction as `mlflow models serve` takes it: one record in export headers
MLFLOW_BODY: dict[str, Any] = {
    "dataframe_records": [
        {
            "Date": TRANSACTION["date"],
            "Type": TRANSACTION["type"],
            "Description": TRANSACTION["description"],
            "Amount": TRANSACTION["amount"],
            "Payment Method": TRANSACTION["payment_method"],
            "Reference": TRANSACTION["reference"],
            "Status": TRANSACTION["status"],
        }
    ]
}

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


# ------------------------------------------------------------------------------ wrk output


#: validation gates a model trained on a few thousand rows passes (every gate still runs)
RELAXED_GATES: dict[str, float | None] = {
    "primary_floor": None,
    "min_margin_over_baseline": 0.0,
    "champion_tolerance": 100.0,
    "max_fairness_gap": 1.0,
    "max_flip_rate": 1.0,
    "max_relative_change": 100.0,
}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, p50/p99 (ms), requests, non-2xx and socket errors from ``wrk --latency``.

    >>> out = parse_wrk('''  Latency Distribution
    ...      50%  512.00us
    ...      99%    1.50s
    ...   1000 requests in 2.00s, 1.00MB read
    ...   Socket errors: connect 0, read 1, write 0, timeout 2
    ...   Non-2xx or 3xx responses: 4
    ... Requests/sec:    500.25''')
    >>> out["p50_ms"], out["p99_ms"], out["requests"], out["non_2xx"], out["socket_errors"]
    (0.512, 1500.0, 1000, 4, 3)
    """

    def duration(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+{_DURATION}\s*$", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"wrk printed no {label}% latency; its output was:\n{text}")
        return float(match.group(1)) * _UNIT_MS[match.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in " + _DURATION, text, re.MULTILINE)
    if rps is None or total is None:
        raise RuntimeError(f"wrk printed no request rate; its output was:\n{text}")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    if socket_errors is not None:
        errors = dict(zip(errors, map(int, socket_errors.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return {
        "requests_per_s": float(rps.group(1)),
        "p50_ms": round(duration("50"), 3),
        "p99_ms": round(duration("99"), 3),
        "requests": int(total.group(1)),
        "seconds": float(total.group(2)) * _UNIT_MS[total.group(3)] / 1e3,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(errors.values()),
        "socket_error_kinds": errors,
    }


# ------------------------------------------------------------------------------ processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _group_stats(pgid: int) -> list[list[str]]:
    """The /proc/PID/stat fields (from field 3 on) of every live process in group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
            members.append(fields)
    return members


def _cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    ticks = sum(int(f[11]) + int(f[12]) for f in _group_stats(pgid))  # fields 14, 15
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """One server under test: a subprocess in its own session (so its children stop with it)."""

    name: str
    label: str
    argv: list[str]
    env: dict[str, str]
    port: int
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    #: the predicted category in an answer (None when the answer holds no prediction)
    predicted: Callable[[Any], Any] = lambda _: None
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    #: 200 answers to this benchmark's own requests (readiness probe and checks, not wrk's)
    ok_posts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self, log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def post(self, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        """One request with the benchmark's body: (status, JSON answer)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(self.body).encode(),
            headers={"Content-Type": "application/json", **self.headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                payload = json.loads(answer.read() or b"null")
                self.ok_posts += answer.status == 200
                return answer.status, payload
        except urllib.error.HTTPError as exc:
            return exc.code, {"error": exc.read()[:500].decode(errors="replace")}

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until the server accepts the benchmark's request (bounded), then check the answer."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.proc.returncode} before it answered; "
                    f"its log ends:\n{self.log_tail()}"
                )
            try:
                self.post(timeout=5.0)
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.label} did not answer within {timeout:.0f} s; "
                        f"its log ends:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.5)

    def verify(self, n: int = VERIFY_REQUESTS) -> dict[str, Any]:
        """``n`` requests that must all answer 200 with a prediction; the last answer."""
        answer: dict[str, Any] = {}
        for _ in range(n):
            status, answer = self.post()
            if status != 200 or self._predicted(answer) is None:
                raise RuntimeError(
                    f"{self.label} answered {status} {json.dumps(answer)[:500]} to "
                    f"POST {self.path}; fix the request before timing it"
                )
        return answer

    def _predicted(self, answer: Any) -> Any:
        try:
            return self.predicted(answer)
        except (KeyError, IndexError, TypeError):
            return None

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return _cpu_seconds(self.proc.pid)

    def stop(self) -> int | None:
        """SIGTERM to the server's process group, wait (bounded), SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        pgid = self.proc.pid  # start_new_session: the group is ours alone
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return self.proc.wait(timeout=10)
        finally:
            # children that outlived the leader (a group id is not reused while it has members)
            if _group_stats(pgid):
                with suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)


def run_wrk(server: Server, connections: int, seconds: int, body_file: Path) -> dict[str, Any]:
    """One wrk run against ``server``; parsed figures plus the server's CPU per request."""
    argv = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(WRK_SCRIPT),
        server.url,
    ]
    env = {**os.environ, "WRK_BODY_FILE": str(body_file)}
    env["WRK_AUTHORIZATION"] = server.headers.get("Authorization", "")
    cpu_before = server.cpu_seconds()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu = server.cpu_seconds() - cpu_before
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed against {server.label}: {proc.stderr or proc.stdout}")
    result = parse_wrk(proc.stdout)
    result["ok_responses"] = result["requests"] - result["non_2xx"]
    result["flagged"] = bool(result["non_2xx"] or result["socket_errors"])
    result["server_cpu_ms_per_request"] = (
        round(cpu * 1e3 / result["requests"], 3) if result["requests"] else None
    )
    result["server_cpu_share"] = round(cpu / result["seconds"], 2) if result["seconds"] else None
    return {"server": server.name, "connections": connections, **result}


# ------------------------------------------------------------------------------ the model


def _train_and_promote(home: Path, rows: int, seed: int) -> str:
    """Train the category model on generated rows, register it and promote it to production
    through every gate (RELAXED_GATES for a small training set; ann requests, bob approves, as the
    serving tests do). Returns the version."""
    from titans.config import GovernanceIdentity, Settings, ValidationSettings
    from titans.data.synth import generate
    from titans.governance.governance import ModelGovernanceManager
    from titans.models.train import train_models
    from titans.registry.registry_manager import ModelRegistryManager

    policy = home / "policy.yaml"
    policy.write_text("version: 1\ndefault:\n  auto_approve:\n    enabled: false\n")
    settings = Settings(
        home=home,
        governance_policy_path=policy,
        governance_identities=[
            GovernanceIdentity(name="ann", roles=["requester"]),
            GovernanceIdentity(name="bob", roles=["approver"]),
        ],
        validation=ValidationSettings.model_validate({"category": RELAXED_GATES}),
    )
    (result,) = train_models(
        generate(rows, seed=seed), models=["category"], seed=seed, settings=settings
    )
    manager = ModelRegistryManager(settings)
    governance = ModelGovernanceManager(settings, manager.store)
    uri = f"models:/{result.registered_name}/{result.version}"
    request_id = governance.request_model_approval(uri, "serving benchmark", "ann")
    governance.approve(request_id, "bob", "serving benchmark")
    if not manager.promote_model(result.registered_name, result.version, "production", "ann"):
        raise RuntimeError(f"could not promote {uri}: {manager.last_refusal}")
    manager.store.dispose()
    return str(result.version)


def _count_predictions(home: Path, model_name: str, missing_ok: bool = False) -> int:
    """Rows of ``model_name`` in the ops store's predictions table (0 before it exists, when
    ``missing_ok``)."""
    with closing(sqlite3.connect(home / "titans.db")) as db:
        if (
            missing_ok
            and not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'predictions'"
            ).fetchone()
        ):
            return 0
        (count,) = db.execute(
            "SELECT COUNT(*) FROM predictions WHERE model_name = ?", (model_name,)
        ).fetchone()
    return int(count)


def _scrape(port: int) -> dict[str, int]:
    """From ours' /metrics: 200s answered on /predict/*, predictions counted, log drops."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    out = {"predict_200": 0.0, "predictions": 0.0, "log_dropped": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "titans_request_duration_seconds_count":
                if sample.labels.get("route", "").startswith("/predict") and (
                    sample.labels.get("status") == "200"
                ):
                    out["predict_200"] += sample.value
            elif sample.name == "titans_predictions_total":
                out["predictions"] += sample.value
            elif sample.name == "titans_prediction_log_dropped_total":
                out["log_dropped"] += sample.value
    return {k: int(v) for k, v in out.items()}


def _scrape_when_idle(port: int, timeout: float = STOP_TIMEOUT_S) -> dict[str, int]:
    """Scrape ours' /metrics once the requests still queued when wrk stopped are answered:
    two scrapes a second apart that agree (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = _scrape(port)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _scrape(port)
        if now["predict_200"] == last["predict_200"]:
            return now
        last = now
    return last


# ------------------------------------------------------------------------------ the run


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def ratios(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per connection count: ours vs mlflow (req/s, p99) and ours vs the floor (req/s)."""
    by = {(r["server"], r["connections"]): r for r in runs}
    out = []
    for connections in sorted({r["connections"] for r in runs}):
        ours = by.get(("ours", connections))
        mlflow = by.get(("mlflow", connections))
        floor = by.get(("floor", connections))
        if ours is None:
            continue
        for measure, anchor, key, goal, better in (
            ("ours/mlflow req/s", mlflow, "requests_per_s", GOAL_VS_MLFLOW_RPS, "min"),
            ("ours p99 / mlflow p99", mlflow, "p99_ms", GOAL_VS_MLFLOW_P99, "max"),
            ("ours/floor req/s", floor, "requests_per_s", GOAL_VS_FLOOR_RPS, "min"),
        ):
            if anchor is None:
                continue
            ratio = _ratio(ours[key], anchor[key])
            met = None if ratio is None else (ratio >= goal if better == "min" else ratio <= goal)
            out.append(
                {
                    "connections": connections,
                    "measure": measure,
                    "ours": ours[key],
                    "anchor": anchor[key],
                    "anchor_server": anchor["server"],
                    "ratio": ratio,
                    "goal": f"{'≥' if better == 'min' else '≤'} {goal:g}",
                    # a run with errors does not meet a goal
                    "met": bool(met) and not ours["flagged"] and not anchor["flagged"],
                    "flagged": ours["flagged"] or anchor["flagged"],
                }
            )
    return out


@dataclass(frozen=True)
class PromotedModel:
    """A throw-away TITANS_HOME whose category model ``version`` is in production."""

    home: Path
    version: str
    rows: int
    train_seconds: float


@contextmanager
def promoted_model(rows: int | None = None, seed: int = 7) -> Iterator[PromotedModel]:
    """Train the category model on ``rows`` generated rows (ci_rows), promote it; removed after.
    The serving and monitoring benchmarks may share one."""
    from titans.config import Settings

    rows = Settings().ci_rows if rows is None else rows
    with tempfile.TemporaryDirectory(prefix="titans-bench-model-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        t0 = time.perf_counter()
        version = _train_and_promote(home, rows, seed)
        yield PromotedModel(home, version, rows, round(time.perf_counter() - t0, 1))


def run(
    seconds: int = 20,
    connections: Sequence[int] = (16, 64),
    rows: int | None = None,
    seed: int = 7,
    model: PromotedModel | None = None,
    start_together: bool = False,
) -> dict[str, Any]:
    """Train (unless ``model`` is given), serve three ways, load each with wrk; the runs, ratios
    and prediction log check. ``start_together`` starts the three servers at once (a smoke
    check's shortcut: a server's background work may then overlap another's measurement)."""
    if model is None:
        with promoted_model(rows, seed) as made:
            return run(seconds, connections, rows, seed, made, start_together)
    from titans.config import ApiKey
    from titans.serving.auth import generate_api_key

    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed; install the Debian package: apt-get install wrk")
    bin_dir = Path(sys.executable).parent
    started = time.perf_counter()
    home, version, rows, train_s = model.home, model.version, model.rows, model.train_seconds
    model_name = "titans-category"
    rows_before = _count_predictions(home, model_name, missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="titans-bench-serve-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        raw_key, api_key = generate_api_key("bench", ["predict"])
        assert isinstance(api_key, ApiKey)

        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))}
        base_env["PATH"] = f"{bin_dir}{os.pathsep}{base_env.get('PATH', '')}"
        tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        ours_env = {
            **base_env,
            "TITANS_HOME": str(home),
            "TITANS_API_KEYS": json.dumps([api_key.model_dump()]),
            # far above what one process can serve: the limiter checks, never refuses
            "TITANS_RATE_LIMIT_PER_SECOND": "1000000000",
            "TITANS_RATE_LIMIT_BURST": "1000000000",
        }
        mlflow_env = {
            **base_env,
            "MLFLOW_TRACKING_URI": tracking_uri,
            # the uvicorn CLI mlflow runs reads UVICORN_*: the same settings as ours
            "UVICORN_ACCESS_LOG": "false",
            "UVICORN_LOG_LEVEL": "warning",
        }
        servers = [
            Server(
                name="floor",
                label="bare FastAPI constant (floor)",
                argv=[sys.executable, str(FLOOR_APP), "--log-level", "warning", "--port"],
                env=base_env,
                port=0,
                path="/predict/category",
                body=TRANSACTION,
                predicted=lambda a: a["prediction"],
            ),
            Server(
                name="ours",
                label="titans serve",
                argv=[str(bin_dir / "titans"), "serve", "--log-level", "warning", "--port"],
                env=ours_env,
                port=0,
                path="/predict/category",
                body=TRANSACTION,
                headers={"Authorization": f"Bearer {raw_key}"},
                predicted=lambda a: a["prediction"]["prediction"],
            ),
            Server(
                name="mlflow",
                label="mlflow models serve",
                argv=[
                    str(bin_dir / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    f"models:/{model_name}/{version}",
                    "--env-manager",
                    "local",
                    "--workers",
                    str(WORKERS),
                    "-h",
                    "127.0.0.1",
                    "-p",
                ],
                env=mlflow_env,
                port=0,
                path="/invocations",
                body=MLFLOW_BODY,
                predicted=lambda a: a["predictions"][0]["prediction"],
            ),
        ]
        runs: list[dict[str, Any]] = []
        samples: dict[str, Any] = {}
        log_check: dict[str, Any] = {}
        try:
            for server in servers:
                server.port = free_port()
                server.argv = [*server.argv, str(server.port)]
                if start_together:
                    server.start(logs)
            for server in servers:
                body_file = Path(tmp) / f"{server.name}.json"
                body_file.write_text(json.dumps(server.body))
                try:
                    if server.proc is None:
                        server.start(logs)
                    server.wait_ready()
                    samples[server.name] = server._predicted(server.verify())
                    for c in connections:
                        runs.append(run_wrk(server, c, seconds, body_file))
                    if server.name == "ours":
                        log_check["metrics_before_stop"] = _scrape_when_idle(server.port)
                        log_check["own_requests_answered_200"] = server.ok_posts
                finally:
                    code = server.stop()
                if server.name == "ours":
                    log_check["exit_code"] = code
        finally:
            for server in servers:
                server.stop()
        ours_runs = [r for r in runs if r["server"] == "ours"]
        wrk_ok = sum(r["ok_responses"] for r in ours_runs)
        own_ok = log_check.get("own_requests_answered_200", 0)
        rows_logged = _count_predictions(home, model_name) - rows_before
        metrics = log_check.get("metrics_before_stop", {})
        log_check.update(
            {
                "rows_in_predictions_table": rows_logged,
                "wrk_2xx_responses": wrk_ok,
                # wrk stops counting at its deadline; the requests then in flight are still
                # answered (and logged) by the server, unseen by wrk: at most one per connection
                "unseen_by_wrk": rows_logged - wrk_ok - own_ok,
                "in_flight_at_wrk_deadline_max": sum(connections),
                "server_counted_200": metrics.get("predict_200"),
                "complete": rows_logged == metrics.get("predict_200")
                and metrics.get("log_dropped") == 0
                and 0 <= rows_logged - wrk_ok - own_ok <= sum(connections),
            }
        )
    return {
        "model": f"models:/{model_name}/{version}",
        "training_rows": rows,
        "train_seconds": round(train_s, 1),
        "seconds_per_run": seconds,
        "connections": list(connections),
        "wrk": f"wrk -t{WRK_THREADS} -cN -d{seconds}s --latency --timeout {WRK_TIMEOUT} "
        "-s benchmarks/wrk_post.lua URL",
        "servers": {
            "ours": "titans serve (uvicorn.run, prediction log to SQLite, metrics, API key)",
            "mlflow": f"mlflow models serve --env-manager local --workers {WORKERS} "
            "(uvicorn CLI, UVICORN_ACCESS_LOG=false)",
            "floor": "benchmarks/floor_app.py: async FastAPI route returning a constant "
            "(uvicorn.run as titans serve)",
        },
        "started_together": start_together,
        "uvicorn": f"{WORKERS} worker process each, loop/http 'auto' (uvloop, httptools when "
        "installed), no access log",
        "runs": runs,
        "ratios": ratios(runs),
        "prediction_log": log_check,
        # the category each server answered the checked request with (floor: its constant)
        "predicted_category": samples,
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python benchmarks/bench_serving.py --seconds "
        f"{seconds} --connections {' '.join(map(str, connections))}",
    }


def markdown(result: dict[str, Any]) -> str:
    """The per-server table, the ratios and the prediction log check, as markdown."""
    lines = [
        f"Model {result['model']} (category, trained on {result['training_rows']:,} generated "
        f"rows); `{result['wrk']}`, {result['seconds_per_run']} s per run, one run each. "
        f"Servers: {result['uvicorn']}.",
        "",
        "| server | connections | req/s | p50 ms | p99 ms | requests | non-2xx | socket errors "
        "| server CPU ms/req | flagged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['server']} | {r['connections']} "
            f"| {r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['requests']:,} | {r['non_2xx']} | {r['socket_errors']} "
            f"| {r['server_cpu_ms_per_request']} | {'**yes**' if r['flagged'] else 'no'} |"
        )
    lines += ["", *(f"- {name}: {what}" for name, what in result["servers"].items())]
    lines += [
        "",
        "| connections | measure | ours | anchor | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for q in result["ratios"]:
        met = "yes" if q["met"] else "**no**"
        if q["flagged"]:
            met += " (flagged: errors)"
        note = "" if q["connections"] == GOAL_CONNECTIONS else " (goal is set at 16)"
        lines.append(
            f"| {q['connections']} | {q['measure']} | {q['ours']:,.2f} | {q['anchor']:,.2f} "
            f"({q['anchor_server']}) | {q['ratio']:.3f} | {q['goal']}{note} | {met} |"
        )
    p = result["prediction_log"]
    lines += [
        "",
        "Prediction log after ours stopped (SIGTERM, then uvicorn's graceful shutdown drains "
        f"the log and re-raises the signal: exit code {p.get('exit_code')}): "
        f"{p['rows_in_predictions_table']:,} rows in the predictions table; ours answered "
        f"{p['server_counted_200']:,} 200s on /predict (its own count) and dropped "
        f"{p.get('metrics_before_stop', {}).get('log_dropped')} log records; wrk saw "
        f"{p['wrk_2xx_responses']:,} 2xx, the checks before timing "
        f"{p.get('own_requests_answered_200')}, and {p['unseen_by_wrk']} were answered after "
        f"wrk's deadlines (at most {p['in_flight_at_wrk_deadline_max']}, one per connection): "
        f"{'complete' if p['complete'] else '**INCOMPLETE**'}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="wrk duration of each run")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rows", type=int, default=None, help="training rows (ci_rows)")
    parser.add_argument("--markdown", action="store_true", help="print the tables, not JSON")
    args = parser.parse_args()
    result = run(args.seconds, args.connections, args.rows)
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
