"""HTTP hardening: security headers on every response, CORS, and a per-client rate limit.

The rate limit is a token bucket per client (the token's client_id, else the network address) kept in
this instance's memory: with N instances behind a load balancer a client gets up to N times the limit,
which is the usual trade against a database write per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.errors import FHIRError

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    # Health data must not be kept by shared caches; conditional reads (ETag/304) still work.
    (b"cache-control", b"no-store"),
]
EXPOSED_HEADERS = ["Location", "Content-Location", "ETag", "Last-Modified", "X-Progress", "Retry-After", "X-Request-Id"]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.headers = list(SECURITY_HEADERS)
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(per_minute, 1))
        self.buckets: dict[str, _Bucket] = {}

    def check(self, client: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        bucket = self.buckets.get(client)
        if bucket is None:
            if len(self.buckets) > 100_000:  # bound memory against many one-off clients
                self.buckets.clear()
            bucket = self.buckets[client] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = max(1, int((1 - bucket.tokens) / self.rate) + 1)
            raise FHIRError(429, "too many requests: slow down", code="throttled", headers={"Retry-After": str(wait)})
        bucket.tokens -= 1
