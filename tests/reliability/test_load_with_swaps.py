"""A real `titans serve` under continuous load while production is promoted and rolled back
several times and an A/B test starts and stops: no request fails, every response comes from
version 1 or 2, and after SIGTERM every 200 response has exactly one prediction-log row.

The load generator, the server runner and the row count are test_zero_downtime's (imported,
not copied); this test adds the A/B start/stop and more swaps.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from _support.figures import Figures
from _support.serving import bearer, promote, serving_settings
from integration.test_zero_downtime import (
    CATEGORY,
    KEY,
    RAW,
    Load,
    _logged_rows,
    _wait_for,
    titans_serve,
)
from titans.experiments.ab_testing import ABTestingFramework
from titans.registry.registry_manager import ModelRegistryManager
from titans.serving.process import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD_SECONDS = 20.0
CLIENT_THREADS = 3
SWAPS_BEFORE_AB = 2


def _challengers(url: str, deadline: float, held: bool) -> bool:
    """True once /models lists a challenger (``held``) or none (not ``held``), bounded."""
    with httpx.Client(base_url=url, headers=bearer(RAW), timeout=10.0) as client:
        while time.monotonic() < deadline:
            if bool(client.get("/models").json()["challengers"]) == held:
                return True
            time.sleep(0.1)
    return False


def test_promotions_rollbacks_and_an_ab_test_under_load_drop_nothing(
    registry_copy: Callable[[str], Path], tmp_path: Path, figures: Figures
) -> None:
    home = registry_copy("load")
    settings = serving_settings(home, [KEY])
    manager = ModelRegistryManager(settings)
    before = _logged_rows(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    steps: list[tuple[str, bool]] = []
    fast = {"TITANS_MODEL_POLL_SECONDS": "0.5", "TITANS_AB_ROUTE_REFRESH_SECONDS": "0.5"}
    with titans_serve(home, port, tmp_path / "serve.log", **fast) as proc:
        with Load(url, threads=CLIENT_THREADS) as load:
            end = time.monotonic() + LOAD_SECONDS
            time.sleep(1.0)
            for _ in range(SWAPS_BEFORE_AB):
                promote(settings, CATEGORY, "2")
                steps.append(("promote 2", _wait_for(load, "2", time.monotonic() + 15)))
                assert manager.rollback_model(CATEGORY, "1", "ann", "reliability: load")
                steps.append(("rollback 1", _wait_for(load, "1", time.monotonic() + 15)))
            ab = ABTestingFramework(settings)
            ab.setup_ab_test("reliability-load", (CATEGORY, "1"), (CATEGORY, "2"), 0.5)
            steps.append(("ab held", _challengers(url, time.monotonic() + 15, held=True)))
            steps.append(("ab serves B", _wait_for(load, "2", time.monotonic() + 15)))
            ab.stop_test("reliability-load", "reliability: load test done")
            steps.append(("ab released", _challengers(url, time.monotonic() + 15, held=False)))
            promote(settings, CATEGORY, "2")
            steps.append(("promote 2", _wait_for(load, "2", time.monotonic() + 15)))
            assert manager.rollback_model(CATEGORY, "1", "ann", "reliability: load")
            steps.append(("rollback 1", _wait_for(load, "1", time.monotonic() + 15)))
            time.sleep(max(0.0, end - time.monotonic()))
            seconds = LOAD_SECONDS + max(0.0, time.monotonic() - end)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)  # graceful shutdown drains the prediction log
        proc.wait(timeout=30)
    served = Counter(version for version, _ in load.ok)
    rows = _logged_rows(settings) - before
    name = "load with swaps + A/B"
    figures.record(name, "load seconds / client threads", f"{seconds:.0f} / {CLIENT_THREADS}")
    moves = f"{len(steps) - 3} / 1"
    figures.record(name, "alias moves (promotions + rollbacks) / A/B start+stop", moves)
    figures.record(
        name, "200 responses (v1 / v2)", f"{len(load.ok)} ({served['1']} / {served['2']})"
    )
    figures.record(name, "failed requests", len(load.failures))
    figures.record(name, "prediction-log rows after SIGTERM", rows)
    assert load.failures == [], load.failures[:5]
    assert all(ok for _, ok in steps), steps
    assert set(served) == {"1", "2"}, served
    assert len(load.ok) > 100, served
    assert len({pid for _, pid in load.ok}) == len(load.ok)
    assert rows == len(load.ok)
