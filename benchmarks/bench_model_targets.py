"""Issue 3's model targets on `titans data generate --rows 200000 --seed 7` (default scenario).

Fits each spec on the time split and scores it and its baseline on the held-out period, with
no MLflow in the way: the figures the targets are judged by.
"""

from __future__ import annotations

import json
import sys
import time

from titans.config import Settings
from titans.data.synth import generate
from titans.models.base import get_spec, model_names

TARGETS = {
    "category": ("macro_f1 ≥ 0.85", lambda ev: ev.score >= 0.85),
    "amount": (
        "MAE ≥ 25% lower than per-category median",
        lambda ev: ev.score <= 0.75 * ev.baseline_score,
    ),
    "anomaly": ("PR-AUC ≥ 0.5", lambda ev: ev.score >= 0.5),
    "cashflow": ("MAE lower than seasonal naive", lambda ev: ev.score < ev.baseline_score),
}


def run(rows: int = 200_000, seed: int = 7) -> list[dict]:
    frame = generate(rows, seed=seed)
    settings = Settings()
    out = []
    for key in model_names():
        spec = get_spec(key, settings)
        started = time.perf_counter()
        train, test = spec.split(frame)
        trained = spec.fit(train, seed)
        ev = spec.evaluation(trained, train, test)
        goal, check = TARGETS[key]
        out.append(
            {
                "model": key,
                "metric": ev.primary_metric,
                "score": round(ev.score, 4),
                "baseline": round(ev.baseline_score, 4),
                "relative_to_baseline": round(ev.score / ev.baseline_score, 4)
                if ev.baseline_score
                else None,
                "goal": goal,
                "met": bool(check(ev)),
                "seconds": round(time.perf_counter() - started, 1),
                "train_rows": len(train),
                "test_rows": len(test),
            }
        )
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000), indent=2))
