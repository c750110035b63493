"""Revoked access tokens and grants, checked on every request without a database round trip each time.

A revocation is a document in `oauth_tokens` (`revoked:<jti>` or `grant:<id>`, with `exp` and `at`,
the revocation time in ms). Each instance keeps the set of live revocations in memory and asks the
database only for those recorded since its last look, at most once per `max_age` seconds
(FHIR_REVOCATION_CHECK_SECONDS, default 2): a revocation made on this instance applies at once, one
made on another instance within `max_age`. `max_age = 0` asks the database on every request.
Revocations are rare and short-lived (they expire with the token or grant), so the set stays small.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from pymongo.errors import DuplicateKeyError

# A revocation written by another instance just before our look may carry an `at` a little older than
# our watermark (clock skew between instances, insert latency): look back this far each time.
OVERLAP_MS = 5_000


def revocation_ids(claims: dict[str, Any]) -> list[str]:
    ids = []
    if claims.get("jti"):
        ids.append(f"revoked:{claims['jti']}")
    if claims.get("grant"):
        ids.append(f"grant:{claims['grant']}")
    return ids


class RevocationCache:
    def __init__(self, tokens: Any, max_age: float) -> None:
        self.tokens = tokens
        self.max_age = max_age
        self._revoked: dict[str, float] = {}  # id -> exp (epoch seconds)
        self._watermark_ms: int | None = None  # `at` of the last look; None = never looked
        self._checked_at = float("-inf")  # monotonic
        self._lock = asyncio.Lock()

    async def is_revoked(self, claims: dict[str, Any], *, strict: bool = False) -> bool:
        ids = revocation_ids(claims)
        if not ids:
            return False
        if strict or self.max_age <= 0:
            return await self.tokens.find_one({"_id": {"$in": ids}}) is not None
        if time.monotonic() - self._checked_at >= self.max_age:
            await self._refresh()
        now = time.time()
        return any(self._revoked.get(i, 0) > now for i in ids)

    async def revoke(self, rid: str, exp: int) -> None:
        """Record a revocation (`revoked:<jti>` or `grant:<id>`) in the database and here at once."""
        try:
            await self.tokens.insert_one({"_id": rid, "exp": exp, "at": _now_ms()})
        except DuplicateKeyError:
            pass
        self._revoked[rid] = exp

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._checked_at < self.max_age:
                return  # another request refreshed while we waited
            started = time.monotonic()
            now_ms = _now_ms()
            query: dict[str, Any] = {"_id": {"$regex": "^(revoked|grant):"}, "exp": {"$gt": time.time()}}
            if self._watermark_ms is not None:
                query["at"] = {"$gte": self._watermark_ms - OVERLAP_MS}
            docs = self.tokens.find(query, {"exp": 1})
            self._merge([(d["_id"], d["exp"]) async for d in docs])
            self._watermark_ms = now_ms
            self._checked_at = started

    def _merge(self, found: Iterable[tuple[str, float]]) -> None:
        now = time.time()
        self._revoked = {i: exp for i, exp in self._revoked.items() if exp > now}
        self._revoked.update(found)


def _now_ms() -> int:
    return int(time.time() * 1000)
