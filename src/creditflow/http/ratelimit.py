"""Rate limits: a token bucket per API key, and per client address for requests without a known key.

A bucket holds up to ``rate_limit_burst`` tokens and refills at ``rate_limit_per_s`` tokens a second; each
request takes one. A request that finds its bucket empty is refused before it does anything: 429
problem+json ``rate_limited`` with ``Retry-After`` (whole seconds until a token is back). With
``rate_limit_per_s = 0`` nothing is limited. See docs/adr/0013-rate-limits-and-cors.md.

Where the buckets are charged, each request exactly once:

- **per API key**, where the principal becomes known: at the end of `caller` (`charge_principal`), or in
  `IdempotencyMiddleware` for a POST with ``Idempotency-Key`` (it authenticates first, so the 429 comes
  before a key is reserved). The bucket is the key's id (a page user's session counts as ``user:<id>``):
  one organisation's busy integration cannot starve another's, and two keys of one organisation are two
  budgets, as two integrations should be.
- **per client address** (`ClientRateLimitMiddleware`, the outermost layer but CORS): every request that
  does not carry an API key this process has already verified: no key, a wrong key, a key's first use,
  the public endpoints (/healthz, the log, telemetry). Guessing keys or hammering a public endpoint costs
  the caller's own budget before it costs the database a look-up. The address is the ASGI client: behind
  a reverse proxy, run uvicorn with ``--proxy-headers --forwarded-allow-ips=<proxy>`` so that it is the
  real client's.

The buckets live in this process's memory (one server: exact; N servers behind a balancer: at most N
times the rate). At most ``max_buckets`` are kept; the least recently used is dropped first (it starts
full if it comes back). The clock is injectable (monotonic seconds), so tests need not sleep.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from creditflow.config import Settings
from creditflow.http.problems import ProblemResponse, problem
from creditflow.identity.access import Principal

CODE = "rate_limited"
STATE_ATTR = "rate_limiter"
MAX_BUCKETS = 100_000


class RateLimiter:
    """Token buckets by key. ``acquire(key)`` takes a token: 0.0 if granted, else the seconds to wait.
    Thread-safe (one lock; each call is a few arithmetic operations)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ):
        if rate_per_s < 0 or burst < 1 or max_buckets < 1:
            raise ValueError("rate_per_s must be >= 0, burst and max_buckets >= 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.clock = clock
        self.max_buckets = max_buckets
        # key -> (tokens left, when they were counted); least recently used first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> RateLimiter:
        return cls(settings.rate_limit_per_s, settings.rate_limit_burst, clock=clock)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def acquire(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (self.burst, now))
            # max(0, ...): a clock that steps back refills nothing rather than draining the bucket
            tokens = min(self.burst, tokens + max(0.0, now - stamp) * self.rate_per_s)
            granted = tokens >= 1.0
            if granted:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        return 0.0 if granted else (1.0 - tokens) / self.rate_per_s

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait_s: float) -> str:
    """``Retry-After`` in whole seconds, at least 1 (a client that retries sooner is refused again)."""
    return str(max(1, math.ceil(wait_s)))


def rate_limited(wait_s: float, instance: str | None) -> ProblemResponse:
    """The 429 problem for a request that found its bucket empty."""
    return problem(
        429,
        CODE,
        f"too many requests: retry in {retry_after(wait_s)} s",
        instance=instance,
        headers={"Retry-After": retry_after(wait_s)},
    )


def limiter_of(app: object) -> RateLimiter | None:
    """The limiter `create_app` put on the application's state (None: built without one)."""
    limiter = getattr(getattr(app, "state", None), STATE_ATTR, None)
    return limiter if isinstance(limiter, RateLimiter) else None


def key_bucket(principal: Principal) -> str:
    return f"key:{principal.key_id}"


def client_bucket(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


def principal_wait(app: object, principal: Principal) -> float:
    """Take a token from the principal's bucket: 0.0 if granted, else the seconds to wait."""
    limiter = limiter_of(app)
    return 0.0 if limiter is None else limiter.acquire(key_bucket(principal))


def charge_principal(request: Request, principal: Principal) -> None:
    """Take a token from the principal's bucket, or raise 429 ``rate_limited`` (with ``Retry-After``)."""
    wait = principal_wait(request.app, principal)
    if wait > 0:
        raise HTTPException(
            429, detail=f"too many requests: retry in {retry_after(wait)} s", headers={"Retry-After": retry_after(wait)}
        )


class ClientRateLimitMiddleware:
    """Charges the client address's bucket for every request that does not carry an API key this process
    has already verified (``known(headers)``); the others are charged per key once authenticated."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, known: Callable[[Headers], bool]):
        self.app = app
        self.limiter = limiter
        self.known = known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limiter.enabled or self.known(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.acquire(client_bucket(scope))
        if wait > 0:
            await rate_limited(wait, scope.get("path"))(scope, receive, send)
            return
        await self.app(scope, receive, send)
