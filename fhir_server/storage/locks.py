"""Short leases in the `locks` collection, shared by every server instance on the database.

Used where a check-then-write must not race across instances: conditional create (two clients
creating "the patient with this INS" at once must yield one resource) and, later, background jobs.
A lease is one document with a unique `_id`; it expires so that a crashed holder cannot block others.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from fhir_server.errors import FHIRError
from fhir_server.storage.database import Database
from fhir_server.storage.store import now_ms


@contextlib.asynccontextmanager
async def lease(
    database: Database, key: str, ttl: timedelta = timedelta(seconds=30), wait: float = 30.0
) -> AsyncIterator[None]:
    owner = secrets.token_hex(8)
    locks = database.locks
    deadline = asyncio.get_running_loop().time() + wait
    delay = 0.002
    while True:
        now = now_ms()
        try:
            await locks.insert_one({"_id": key, "owner": owner, "exp": now + ttl})
            break
        except DuplicateKeyError:
            # Take over an expired lease atomically: only one taker can match its old expiry.
            await locks.delete_one({"_id": key, "exp": {"$lt": now}})
        if asyncio.get_running_loop().time() > deadline:
            raise FHIRError(503, f"resource busy ({key}); retry", code="transient")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    try:
        yield
    finally:
        await locks.delete_one({"_id": key, "owner": owner})
