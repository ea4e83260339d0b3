"""Monitoring overhead: the API's req/s with the prediction log and metrics on vs off.

In one run, against the same category model version in a throw-away TITANS_HOME, two servers
(benchmarks/monitoring_app.py) are up side by side: ``on`` is what ``titans serve`` runs
(prediction log to the SQLite ops store, request and prediction metrics), ``off`` the same app
with those taken out. Both take the same API key, the rate limit raised out of the way, one
uvicorn process each. wrk loads them in turns, ``-c16`` (the serving goal's connection count),
in the order on, off, off, on, on, off, ... so a machine that slows down or speeds up during the
run weighs on both alike; between turns the benchmark waits (bounded) until the ``on`` server's
prediction log has written everything it queued, so its background writes do not fall into the
next turn. The overhead is 1 - (on req/s) / (off req/s) over all turns.

Afterwards the predictions table must hold exactly the 200s the ``on`` server counted (so the
``off`` server logged nothing) and ``off`` must have counted no request in its metrics.

Usage: python benchmarks/bench_monitoring.py [--rounds 3] [--seconds 10]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_serving  # noqa: E402
from benchmarks.bench_serving import (  # noqa: E402
    PromotedModel,
    Server,
    free_port,
    promoted_model,
    run_wrk,
)

APP = HERE / "monitoring_app.py"
#: the issue's goal: at most this much req/s lost to the prediction log and metrics
GOAL_MAX_LOSS = 0.05
CONNECTIONS = bench_serving.GOAL_CONNECTIONS
#: the longest to wait for the on server's log to be written between turns
SETTLE_TIMEOUT_S = 30.0


def _metrics(port: int) -> dict[str, float]:
    """From a server's /metrics: predict 200s counted, predictions counted, log queue depth."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    out = {"predict_200": 0.0, "predictions": 0.0, "queue_depth": 0.0, "log_written": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "titans_request_duration_seconds_count":
                if s.labels.get("route", "").startswith("/predict") and s.labels.get("status") == (
                    "200"
                ):
                    out["predict_200"] += s.value
            elif s.name == "titans_predictions_total":
                out["predictions"] += s.value
            elif s.name == "titans_prediction_log_queue_depth":
                out["queue_depth"] += s.value
            elif s.name == "titans_prediction_log_written_total":
                out["log_written"] += s.value
    return out


def _settle(on: Server) -> float:
    """Wait until ``on`` has answered what wrk left in flight and written its log; seconds."""
    started = time.monotonic()
    last = _metrics(on.port)
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        time.sleep(0.5)
        now = _metrics(on.port)
        if (
            now["queue_depth"] == 0
            and now["predict_200"] == last["predict_200"]
            and now["log_written"] == last["log_written"]
        ):
            break
        last = now
    return round(time.monotonic() - started, 2)


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    return {
        "runs": len(runs),
        "requests": requests,
        "seconds": round(seconds, 2),
        "requests_per_s": round(requests / seconds, 1) if seconds else None,
        "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
        "server_cpu_ms_per_request_median": statistics.median(
            r["server_cpu_ms_per_request"] or 0.0 for r in runs
        ),
        "flagged": any(r["flagged"] for r in runs),
    }


def run(
    rounds: int = 3,
    seconds: int = 10,
    rows: int | None = None,
    seed: int = 7,
    model: PromotedModel | None = None,
) -> dict[str, Any]:
    """Train and promote the category model (unless ``model`` is given), serve it twice,
    alternate wrk turns; the figures."""
    if model is None:
        with promoted_model(rows, seed) as made:
            return run(rounds, seconds, rows, seed, made)
    from titans.config import ApiKey
    from titans.serving.auth import generate_api_key

    started = time.perf_counter()
    home, version, rows = model.home, model.version, model.rows
    rows_before = bench_serving._count_predictions(home, "titans-category", missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="titans-bench-monitoring-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        raw_key, api_key = generate_api_key("bench", ["predict"])
        assert isinstance(api_key, ApiKey)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))}
        env.update(
            {
                "PYTHONPATH": str(ROOT / "src"),
                "TITANS_HOME": str(home),
                "TITANS_API_KEYS": json.dumps([api_key.model_dump()]),
                "TITANS_RATE_LIMIT_PER_SECOND": "1000000000",
                "TITANS_RATE_LIMIT_BURST": "1000000000",
            }
        )
        servers = {
            mode: Server(
                name=f"monitoring-{mode}",
                label=f"API with monitoring {mode}",
                argv=[sys.executable, str(APP), "--monitoring", mode, "--log-level", "warning"],
                env=env,
                port=free_port(),
                path="/predict/category",
                body=bench_serving.TRANSACTION,
                headers={"Authorization": f"Bearer {raw_key}"},
                predicted=lambda a: a["prediction"]["prediction"],
            )
            for mode in ("on", "off")
        }
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(bench_serving.TRANSACTION))
        turns: list[dict[str, Any]] = []
        check: dict[str, Any] = {}
        try:
            for server in servers.values():
                server.argv = [*server.argv, "--port", str(server.port)]
                server.start(logs)
            for server in servers.values():
                server.wait_ready()
                server.verify()
            order = [
                m for i in range(rounds) for m in (("on", "off") if i % 2 == 0 else ("off", "on"))
            ]
            for turn, mode in enumerate(order):
                result = run_wrk(servers[mode], CONNECTIONS, seconds, body_file)
                result["turn"] = turn
                result["monitoring"] = mode
                result["settle_seconds"] = _settle(servers["on"])
                turns.append(result)
            check["on_metrics"] = _metrics(servers["on"].port)
            check["off_metrics"] = _metrics(servers["off"].port)
            check["on_own_requests_200"] = servers["on"].ok_posts
        finally:
            for server in servers.values():
                server.stop()
        rows_logged = bench_serving._count_predictions(home, "titans-category") - rows_before
    on = _pooled([t for t in turns if t["monitoring"] == "on"])
    off = _pooled([t for t in turns if t["monitoring"] == "off"])
    ratio = round(on["requests_per_s"] / off["requests_per_s"], 4)
    pairs = [
        round(a["requests_per_s"] / b["requests_per_s"], 4)
        for a, b in zip(
            [t for t in turns if t["monitoring"] == "on"],
            [t for t in turns if t["monitoring"] == "off"],
            strict=True,
        )
    ]
    on_counted = check["on_metrics"]["predict_200"]
    check.update(
        {
            "rows_in_predictions_table": rows_logged,
            "on_counted_predict_200": on_counted,
            # the off server counts nothing and logs nothing
            "off_counted_predict_200": check["off_metrics"]["predict_200"],
            "off_counted_predictions": check["off_metrics"]["predictions"],
            "complete": rows_logged == on_counted
            and check["off_metrics"]["predict_200"] == 0
            and check["off_metrics"]["predictions"] == 0,
        }
    )
    return {
        "model": f"models:/titans-category/{version}",
        "training_rows": rows,
        "connections": CONNECTIONS,
        "rounds": rounds,
        "seconds_per_turn": seconds,
        "order": [t["monitoring"] for t in turns],
        "on": on,
        "off": off,
        "on_off_ratio": ratio,
        "loss": round(1 - ratio, 4),
        "pair_ratios": pairs,
        "goal_max_loss": GOAL_MAX_LOSS,
        "met": ratio >= 1 - GOAL_MAX_LOSS and not on["flagged"] and not off["flagged"],
        "turns": turns,
        "check": check,
        "wrk": f"wrk -t{bench_serving.WRK_THREADS} -c{CONNECTIONS} -d{seconds}s --latency "
        f"--timeout {bench_serving.WRK_TIMEOUT} -s benchmarks/wrk_post.lua URL",
        "seconds": round(time.perf_counter() - started, 1),
        "command": f"python benchmarks/bench_monitoring.py --rounds {rounds} --seconds {seconds}",
    }


def markdown(result: dict[str, Any]) -> str:
    """The turns in order and the log/metrics check."""
    lines = [
        f"Model {result['model']}; `{result['wrk']}`; {result['rounds']} rounds, turns in the "
        f"order {', '.join(result['order'])}; per-pair on/off ratios "
        f"{', '.join(f'{p:.3f}' for p in result['pair_ratios'])}.",
        "",
        "| turn | monitoring | req/s | p50 ms | p99 ms | requests | errors | server CPU ms/req "
        "| log settled after (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in result["turns"]:
        lines.append(
            f"| {t['turn']} | {t['monitoring']} | {t['requests_per_s']:,.0f} | {t['p50_ms']:.2f} "
            f"| {t['p99_ms']:.2f} | {t['requests']:,} | {t['non_2xx'] + t['socket_errors']} "
            f"| {t['server_cpu_ms_per_request']} | {t['settle_seconds']} |"
        )
    c = result["check"]
    lines += [
        "",
        f"Check: {c['rows_in_predictions_table']:,} rows in the predictions table, "
        f"{c['on_counted_predict_200']:,.0f} 200s counted by the on server; the off server "
        f"counted {c['off_counted_predict_200']:,.0f} requests and "
        f"{c['off_counted_predictions']:,.0f} predictions: "
        f"{'complete' if c['complete'] else '**INCOMPLETE**'}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="on+off pairs of wrk turns")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each turn")
    parser.add_argument("--rows", type=int, default=None, help="training rows (ci_rows)")
    parser.add_argument("--markdown", action="store_true", help="print the tables, not JSON")
    args = parser.parse_args()
    result = run(args.rounds, args.seconds, args.rows)
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
