"""Token buckets per API key: in process (injected clock) and shared through the local Redis."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from titans.config import Settings
from titans.errors import ConfigError
from titans.serving.metrics import ServingMetrics
from titans.serving.ratelimit import (
    Decision,
    InProcessRateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
)

REDIS_URL = os.environ.get("TITANS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


class FakeClock:
    """A clock the test moves by hand (the limiter's clock is injectable by design)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ in process


def test_burst_then_refusal_with_retry_after() -> None:
    clock = FakeClock()
    metrics = ServingMetrics()
    limiter = InProcessRateLimiter(rate=2.0, burst=5, clock=clock, metrics=metrics)
    decisions = [limiter.check("client") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused.retry_after_seconds == pytest.approx(0.5)  # one token at 2/s
    assert refused.retry_after_header == "1"
    assert metrics.registry.get_sample_value("titans_rate_limited_total") == 1.0


def test_refill_over_time_up_to_burst() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(rate=10.0, burst=3, clock=clock)
    for _ in range(3):
        assert limiter.check("k").allowed
    assert not limiter.check("k").allowed
    clock.now += 0.1  # one token back
    assert limiter.check("k").allowed
    assert not limiter.check("k").allowed
    clock.now += 60  # a long pause refills to burst, not beyond
    assert sum(limiter.check("k").allowed for _ in range(10)) == 3


def test_keys_are_isolated() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(rate=1.0, burst=2, clock=clock)
    assert [limiter.check("a").allowed for _ in range(3)] == [True, True, False]
    assert [limiter.check("b").allowed for _ in range(3)] == [True, True, False]


def test_thread_safe_under_concurrent_checks() -> None:
    clock = FakeClock()  # frozen: exactly `burst` requests may pass, whatever the interleaving
    limiter = InProcessRateLimiter(rate=1.0, burst=100, clock=clock)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [limiter.check("shared").allowed for _ in range(50)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(allowed) == 400 and sum(allowed) == 100


def test_memory_stays_bounded_with_many_keys() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(rate=100.0, burst=1, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.check(f"k{i}")
        clock.now += 0.02  # every earlier bucket has refilled by now
    assert len(limiter._buckets) <= 101


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (float("inf"), 5), (1, 0)])
def test_invalid_limits_are_config_errors(rate: float, burst: float) -> None:
    with pytest.raises(ConfigError):
        InProcessRateLimiter(rate=rate, burst=burst)


def test_allowed_decision_header_is_zero() -> None:
    assert Decision(True, 0.0, 3.0).retry_after_header == "0"
    assert Decision(False, 0.01, 0.0).retry_after_header == "1"
    assert Decision(False, 2.2, 0.0).retry_after_header == "3"


def test_make_rate_limiter_follows_settings(tmp_path) -> None:
    local = make_rate_limiter(
        Settings(home=tmp_path, rate_limit_per_second=7, rate_limit_burst=9, redis_url=None)
    )
    assert isinstance(local, InProcessRateLimiter)
    assert (local.rate, local.burst) == (7.0, 9.0)
    shared = make_rate_limiter(Settings(home=tmp_path, redis_url=REDIS_URL))
    assert isinstance(shared, RedisRateLimiter)
    shared.close()


# ------------------------------------------------------------------ Redis


def _redis_reachable() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


@pytest.fixture
def redis_url() -> str:
    if not _redis_reachable():
        if _in_ci():
            pytest.fail(f"Redis at {REDIS_URL} is not reachable, and CI=true requires it")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable (set TITANS_TEST_REDIS_URL)")
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    import redis

    p = f"titans-test:{uuid.uuid4().hex}:"
    yield p
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=p + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def _limiter(url: str, prefix: str, rate: float, burst: float, **kw) -> RedisRateLimiter:
    return RedisRateLimiter(url, rate, burst, prefix, **kw)


def test_redis_burst_then_refusal(redis_url: str, prefix: str) -> None:
    metrics = ServingMetrics()
    limiter = _limiter(redis_url, prefix, rate=1.0, burst=3, metrics=metrics)
    decisions = [limiter.check("client") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].remaining == pytest.approx(2.0, abs=0.01)
    refused = decisions[-1]
    assert 0 < refused.retry_after_seconds <= 1.0
    assert refused.retry_after_header == "1"
    assert metrics.registry.get_sample_value("titans_rate_limited_total") == 1.0
    limiter.close()


def test_redis_refills_over_time(redis_url: str, prefix: str) -> None:
    limiter = _limiter(redis_url, prefix, rate=20.0, burst=2)
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, False]
    refused = limiter.check("k")
    assert not refused.allowed
    time.sleep(refused.retry_after_seconds + 0.05)  # ≤ 0.1 s at 20/s
    assert limiter.check("k").allowed
    limiter.close()


def test_two_replicas_share_one_budget(redis_url: str, prefix: str) -> None:
    replica_a = _limiter(redis_url, prefix, rate=0.5, burst=4)
    replica_b = _limiter(redis_url, prefix, rate=0.5, burst=4)
    results = [r.check("client").allowed for r in (replica_a, replica_b) * 4]
    assert sum(results) == 4  # not 8: one bucket across both processes' limiters
    assert not replica_a.check("client").allowed
    assert not replica_b.check("client").allowed
    replica_a.close()
    replica_b.close()


def test_redis_keys_are_isolated(redis_url: str, prefix: str) -> None:
    limiter = _limiter(redis_url, prefix, rate=0.5, burst=2)
    assert [limiter.check("a").allowed for _ in range(3)] == [True, True, False]
    assert [limiter.check("b").allowed for _ in range(3)] == [True, True, False]
    limiter.close()


def test_redis_concurrent_checks_never_overspend(redis_url: str, prefix: str) -> None:
    limiter = _limiter(redis_url, prefix, rate=0.01, burst=50)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [limiter.check("shared").allowed for _ in range(25)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(allowed) == 100 and sum(allowed) == 50
    limiter.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def test_unreachable_redis_fails_open_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = ServingMetrics()
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{_closed_port()}/0", rate=1.0, burst=1, metrics=metrics
    )
    with caplog.at_level(logging.WARNING, logger="titans.serving.ratelimit"):
        started = time.perf_counter()
        decisions = [limiter.check("client") for _ in range(20)]
        elapsed = time.perf_counter() - started
    assert all(d.allowed for d in decisions)  # burst 1, yet all 20 pass: fail open
    assert metrics.registry.get_sample_value("titans_rate_limiter_fail_open_total") == 20.0
    assert metrics.registry.get_sample_value("titans_rate_limited_total") == 0.0
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request
    assert elapsed < 5.0  # one failed connect, then no retry within retry_interval
    limiter.close()


def test_recovers_when_redis_answers_again(redis_url: str, prefix: str) -> None:
    """After the retry interval the limiter asks Redis again and enforces the budget."""
    limiter = _limiter(redis_url, prefix, rate=0.5, burst=1, retry_interval=0.05)
    limiter._mark_down(ConnectionError("simulated earlier outage"))
    assert limiter.check("client").allowed  # within the interval: fail open, Redis not asked
    time.sleep(0.06)
    assert limiter.check("client").allowed  # Redis asked: first token
    assert not limiter.check("client").allowed  # enforced again
    limiter.close()


def test_survives_a_redis_restart_that_flushed_the_script_cache(
    redis_url: str, prefix: str
) -> None:
    import redis

    limiter = _limiter(redis_url, prefix, rate=0.5, burst=2)
    assert limiter.check("client").allowed
    admin = redis.Redis.from_url(redis_url)
    admin.script_flush()  # what a restart of a Redis without persistence does
    admin.close()
    assert limiter.check("client").allowed  # script re-loaded, state kept
    assert not limiter.check("client").allowed
    limiter.close()
