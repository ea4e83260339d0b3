"""Per-key token buckets: in process by default, shared by every replica through Redis.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; each request
takes one. :func:`make_rate_limiter` picks :class:`RedisRateLimiter` when
``Settings.redis_url`` (``TITANS_REDIS_URL``) is set, else :class:`InProcessRateLimiter`.

The Redis limiter runs one Lua script per check (one round trip, atomic) and reads the clock
with ``redis.call('TIME')``, so all replicas share the server's clock and one budget per key.
When Redis is unreachable it **fails open**: requests are let through unchecked, each one is
counted in ``titans_rate_limiter_fail_open_total`` and a warning is logged once per outage.
Serving predictions matters more than enforcing quotas for a while; an outage is visible on the
metric. After a failure Redis is not asked again for ``retry_interval`` seconds, so a hanging
Redis costs at most one socket timeout per interval, not one per request.

>>> now = [0.0]
>>> limiter = InProcessRateLimiter(rate=1.0, burst=2, clock=lambda: now[0])
>>> [limiter.check("ci").allowed for _ in range(3)]
[True, True, False]
>>> limiter.check("ci").retry_after_seconds
1.0
>>> now[0] = 1.0
>>> limiter.check("ci").allowed
True
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from titans.config import Settings
from titans.errors import ConfigError
from titans.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

DEFAULT_REDIS_PREFIX = "titans:ratelimit:"


@dataclass(frozen=True)
class Decision:
    """The verdict on one request: allowed or not, when to retry, tokens left afterwards."""

    allowed: bool
    retry_after_seconds: float
    remaining: float

    @property
    def retry_after_header(self) -> str:
        """The ``Retry-After`` value: whole seconds, at least 1 when refused (RFC 9110)."""
        if self.allowed:
            return "0"
        return str(max(1, math.ceil(self.retry_after_seconds)))


class RateLimiter(Protocol):
    """Anything that decides whether a key may make one more request now."""

    def check(self, key: str) -> Decision: ...


def _validate(rate: float, burst: float) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(
            f"rate limit of {rate} requests/s is not valid; set TITANS_RATE_LIMIT_PER_SECOND > 0"
        )
    if not burst >= 1:
        raise ConfigError(f"burst of {burst} is not valid; set TITANS_RATE_LIMIT_BURST >= 1")


def _take(tokens: float, elapsed: float, rate: float, burst: float) -> tuple[float, Decision]:
    """One token-bucket step: the tokens left and the decision (mirrors the Lua script)."""
    tokens = min(burst, tokens + max(elapsed, 0.0) * rate)
    if tokens >= 1.0:
        tokens -= 1.0
        return tokens, Decision(allowed=True, retry_after_seconds=0.0, remaining=tokens)
    retry_after = (1.0 - tokens) / rate
    return tokens, Decision(allowed=False, retry_after_seconds=retry_after, remaining=tokens)


class InProcessRateLimiter:
    """Token buckets in this process's memory (thread-safe); each replica has its own."""

    #: checking never waits for I/O (the API may call it on its event loop)
    blocking = False

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: ServingMetrics | None = None,
        max_keys: int = 100_000,
    ) -> None:
        _validate(rate, burst)
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.metrics = metrics
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> Decision:
        """Take one token from ``key``'s bucket if it has one."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens, decision = _take(tokens, now - last, self.rate, self.burst)
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:
                self._forget_full(now)
        if not decision.allowed and self.metrics is not None:
            self.metrics.rate_limited.inc()
        return decision

    def _forget_full(self, now: float) -> None:
        # a bucket that has refilled is the same as no bucket: memory stays bounded
        full_after = self.burst / self.rate
        for key in [k for k, (_, last) in self._buckets.items() if now - last >= full_after]:
            del self._buckets[key]


# KEYS[1] bucket; ARGV rate, burst. Returns {allowed, retry_after, remaining} (as strings:
# Lua numbers returned to Redis are truncated to integers).
_BUCKET_SCRIPT_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry), tostring(tokens)}
"""


class RedisRateLimiter:
    """Token buckets in Redis, shared by every replica that uses the same URL and prefix."""

    #: checking is a network round trip (the API calls it from its thread pool)
    blocking = True

    def __init__(
        self,
        redis_url: str,
        rate: float,
        burst: float,
        prefix: str = DEFAULT_REDIS_PREFIX,
        *,
        metrics: ServingMetrics | None = None,
        socket_timeout: float = 0.25,
        retry_interval: float = 1.0,
    ) -> None:
        import redis

        _validate(rate, burst)
        self.rate = float(rate)
        self.burst = float(burst)
        self.prefix = prefix
        self.metrics = metrics
        self.retry_interval = retry_interval
        try:
            self._client: Any = redis.Redis.from_url(
                redis_url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
        except ValueError as exc:
            raise ConfigError(
                f"TITANS_REDIS_URL is not a valid Redis URL ({exc}); use e.g. redis://host:6379/0"
            ) from exc
        self._script = self._client.register_script(_BUCKET_SCRIPT_LUA)
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._down_until = 0.0
        self._down = False
        self._state_lock = threading.Lock()

    def check(self, key: str) -> Decision:
        """Take one token from ``key``'s shared bucket; let the request through if Redis is down."""
        if self._down and time.monotonic() < self._down_until:
            return self._fail_open()
        try:
            allowed, retry, remaining = self._script(
                keys=[self.prefix + key], args=[repr(self.rate), repr(self.burst)]
            )
        except self._redis_errors as exc:
            self._mark_down(exc)
            return self._fail_open()
        if self._down:
            with self._state_lock:
                if self._down:
                    self._down = False
                    log.info("rate-limit store is reachable again; shared limits enforced")
        decision = Decision(
            allowed=int(allowed) == 1,
            retry_after_seconds=float(retry),
            remaining=float(remaining),
        )
        if not decision.allowed and self.metrics is not None:
            self.metrics.rate_limited.inc()
        return decision

    def _mark_down(self, exc: BaseException) -> None:
        with self._state_lock:
            first = not self._down
            self._down = True
            self._down_until = time.monotonic() + self.retry_interval
        if first:
            log.warning(
                "rate-limit store unreachable (%s); letting requests through unchecked until "
                "it answers (counted in titans_rate_limiter_fail_open_total)",
                exc,
            )

    def _fail_open(self) -> Decision:
        if self.metrics is not None:
            self.metrics.rate_limiter_fail_open.inc()
        return Decision(allowed=True, retry_after_seconds=0.0, remaining=self.burst)

    def close(self) -> None:
        """Close the connections to Redis."""
        self._client.close()


def make_rate_limiter(
    settings: Settings, metrics: ServingMetrics | None = None
) -> InProcessRateLimiter | RedisRateLimiter:
    """The limiter the settings ask for: Redis when TITANS_REDIS_URL is set, else in process."""
    if settings.redis_url:
        return RedisRateLimiter(
            settings.redis_url,
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            metrics=metrics,
        )
    return InProcessRateLimiter(
        settings.rate_limit_per_second, settings.rate_limit_burst, metrics=metrics
    )
