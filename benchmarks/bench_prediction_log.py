"""Prediction log benchmark: sustained ingest (records/s) of PredictionLogWriter into the ops store.

Producer threads call ``log()`` as fast as the writer lets them (a refused record is retried
after 0.2 ms, so nothing is dropped and the rate is what the writer sustains); time runs from
the first ``log()`` until ``stop()`` has written the last row. Also reports the request-path
cost of one ``log()`` call (p50/p99). Postgres joins when a URL is given.

Usage: python benchmarks/bench_prediction_log.py [RECORDS] [--producers P] [--batch-size B]
       [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from titans.config import Settings  # noqa: E402
from titans.serving.prediction_log import PredictionLogWriter, PredictionRecord  # noqa: E402
from titans.store.db import Store  # noqa: E402
from titans.store.testing import postgres_schema_url  # noqa: E402


def _record(i: int) -> PredictionRecord:
    return PredictionRecord(
        model_name="titans-category",
        model_version="3",
        alias="production",
        arm="A" if i % 2 else "B",
        entity_id=f"cust-{i % 1000}",
        features={
            "date": "2026-11-26",
            "type": "Expense",
            "description": f"Coffee shop purchase {i}",
            "amount": -4.5 - i % 50,
            "payment_method": "Credit Card",
            "status": "completed",
            "reference": f"REF{i:08d}",
        },
        prediction={"category": "Food & Dining", "probabilities": {"Food & Dining": 0.91}},
        score=0.91,
        latency_ms=1.7,
    )


def _measure(store: Store, records: int, producers: int, batch_size: int) -> dict[str, Any]:
    writer = PredictionLogWriter(store, queue_size=10_000, batch_size=batch_size).start()
    per_thread = records // producers
    prepared = [[_record(t * per_thread + i) for i in range(per_thread)] for t in range(producers)]
    call_ns: list[int] = []
    lock = threading.Lock()

    def produce(batch: list[PredictionRecord]) -> None:
        mine: list[int] = []
        for record in batch:
            while True:
                t0 = time.perf_counter_ns()
                ok = writer.log(record)
                mine.append(time.perf_counter_ns() - t0)
                if ok:
                    break
                time.sleep(0.0002)  # queue full: the writer is the bottleneck, as intended
        with lock:
            call_ns.extend(mine)

    threads = [threading.Thread(target=produce, args=(b,)) for b in prepared]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = writer.stop(timeout=300)
    seconds = time.perf_counter() - started
    call_ns.sort()
    total = per_thread * producers
    return {
        "records": total,
        "written": stats.written,
        # log() calls refused because the queue was full, each retried until accepted
        "refused_then_retried": stats.dropped,
        "seconds": round(seconds, 3),
        "records_per_s": round(stats.written / seconds),
        "log_call_p50_us": round(call_ns[len(call_ns) // 2] / 1000, 2),
        "log_call_p99_us": round(call_ns[int(len(call_ns) * 0.99)] / 1000, 2),
    }


def run(
    records: int = 50_000,
    producers: int = 4,
    batch_size: int = 500,
    postgres_url: str | None = None,
) -> dict[str, Any]:
    """Sustained ingest into SQLite (and Postgres when a URL is given), one fresh store each."""
    out: dict[str, Any] = {"producers": producers, "batch_size": batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Settings(home=Path(tmp), TITANS_DATABASE_URL=f"sqlite:///{tmp}/ops.db"))
        store.upgrade()
        out["sqlite"] = _measure(store, records, producers, batch_size)
        store.dispose()
        if postgres_url:
            with postgres_schema_url(postgres_url) as url:
                pg = Store(Settings(home=Path(tmp), TITANS_DATABASE_URL=url))
                pg.upgrade()
                out["postgresql"] = _measure(pg, records, producers, batch_size)
                pg.dispose()
    command = f"python benchmarks/bench_prediction_log.py {records} --producers {producers}"
    command += f" --batch-size {batch_size}"
    if postgres_url:
        command += f" --postgres-url {postgres_url}"
    out["command"] = command
    return out


def main() -> None:
    logging.getLogger("titans.serving.prediction_log").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("records", nargs="?", type=int, default=50_000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.records, args.producers, args.batch_size, args.postgres_url)))


if __name__ == "__main__":
    main()
