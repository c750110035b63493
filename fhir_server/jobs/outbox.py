"""A durable delivery queue in MongoDB: at-least-once, retried with back-off, shared by every instance.

What goes out of the server (Subscription rest-hooks, e-mails, SMS) is first written to the `outbox`
collection, so the write or workflow step that caused it only pays one insert and never waits for (or
fails because of) a remote peer. An item is

    {_id, kind, state: queued|running|done|failed, due, attempts, lease, worker, created, data, error}

Like jobs/queue.py, an instance claims a due item (or a running one whose lease expired: its instance
died) with one conditional update, so two instances never deliver the same item at the same time, and
an item survives restarts. A handler that returns marks the item done; one that raises is retried after
`retry_seconds * 2**(attempts-1)` (capped at an hour) until `max_attempts`, then the kind's `on_failure`
callback runs (a Subscription goes to `error`, a notice is recorded as not sent). `Permanent` skips the
retries. Delivery is at-least-once: a handler that dies after its peer accepted the item is run again,
so handlers record what they already did (`OutboxItem.update`) where a duplicate would matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from fhir_server.aio import wait_event
from fhir_server.storage.clock import now_ms
from fhir_server.storage.database import Database

log = logging.getLogger(__name__)

OUTBOX = "outbox"
LEASE = timedelta(seconds=120)  # longer than any one delivery (HTTP and SMTP calls time out first)
MAX_BACKOFF = timedelta(hours=1)
RETENTION = timedelta(days=7)  # done and failed items are kept this long for diagnosis, then purged
INDEXES = [
    # The claim query: due queued items and expired running ones, oldest due first.
    IndexModel([("state", ASCENDING), ("due", ASCENDING)], name="state_due"),
    IndexModel([("state", ASCENDING), ("lease", ASCENDING)], name="state_lease"),
    IndexModel([("state", ASCENDING), ("finished", ASCENDING)], name="state_finished"),
]


class Permanent(Exception):
    """Raised by a handler when retrying cannot help (bad address, subscription gone...)."""


class OutboxItem:
    """What a handler gets: the item's data, and a way to record progress on it."""

    def __init__(self, outbox: Outbox, doc: dict[str, Any]) -> None:
        self.outbox = outbox
        self.doc = doc
        self.id: str = doc["_id"]
        self.data: dict[str, Any] = doc.get("data") or {}
        self.attempts: int = doc.get("attempts", 0)

    async def update(self, **fields: Any) -> None:
        """Save fields in `data` (e.g. "already sent"), so a re-run after a crash does not repeat them."""
        self.data.update(fields)
        await self.outbox.collection.update_one(
            {"_id": self.id, "worker": self.outbox.worker_id},
            {"$set": {f"data.{k}": v for k, v in fields.items()}},
        )


Handler = Callable[[OutboxItem], Awaitable[None]]
FailureHandler = Callable[[OutboxItem, str], Awaitable[None]]


@dataclass
class Kind:
    handler: Handler
    on_failure: FailureHandler | None = None


@dataclass
class Outbox:
    database: Database
    max_attempts: int = 8
    retry_seconds: float = 30.0
    kinds: dict[str, Kind] = field(default_factory=dict)
    # Called every `poll` seconds by the loop (e.g. refreshing caches other instances may have changed).
    periodic: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    worker_id: str = field(default_factory=lambda: secrets.token_hex(8))
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def collection(self) -> Any:
        return self.database.db[OUTBOX]

    async def ensure_indexes(self) -> None:
        # List first: FerretDB v1.24 panics when asked to create an existing multi-key index again.
        existing = {ix["name"] async for ix in self.collection.list_indexes()}
        missing = [m for m in INDEXES if m.document["name"] not in existing]
        if missing:
            try:
                await self.collection.create_indexes(missing)
            except OperationFailure as exc:  # pragma: no cover - depends on the backend
                log.warning("outbox index creation failed", extra={"error": str(exc)})

    # ---- producers --------------------------------------------------------------------------------

    async def enqueue(self, kind: str, data: dict[str, Any], *, item_id: str | None = None) -> str:
        """Queue one delivery; `item_id` makes it idempotent (a second enqueue of the same id is a no-op)."""
        now = now_ms()
        doc = {
            "_id": item_id or secrets.token_hex(16),
            "kind": kind,
            "state": "queued",
            "due": now,
            "attempts": 0,
            "created": now,
            "data": data,
        }
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.insert_one(doc)
        self.wakeup.set()
        return doc["_id"]

    async def enqueue_many(self, kind: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue several deliveries `(item_id, data)` in one round trip (ids already queued are skipped)."""
        if not items:
            return
        now = now_ms()
        docs = [
            {"_id": i, "kind": kind, "state": "queued", "due": now, "attempts": 0, "created": now, "data": d}
            for i, d in items
        ]
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
        self.wakeup.set()

    # ---- the worker -------------------------------------------------------------------------------

    async def claim(self) -> dict[str, Any] | None:
        now = now_ms()
        candidates = (
            self.collection.find(
                {
                    "$or": [{"state": "queued", "due": {"$lte": now}}, {"state": "running", "lease": {"$lt": now}}],
                    "kind": {"$in": list(self.kinds)},
                }
            )
            .sort("due", 1)
            .limit(10)
        )
        async for doc in candidates:
            taken = await self.collection.update_one(
                {"_id": doc["_id"], "state": doc["state"], "lease": doc.get("lease")},
                {"$set": {"state": "running", "worker": self.worker_id, "lease": now + LEASE}, "$inc": {"attempts": 1}},
            )
            if taken.matched_count == 1:
                doc.update(state="running", worker=self.worker_id, attempts=doc.get("attempts", 0) + 1)
                return doc
        return None

    def backoff(self, attempts: int) -> timedelta:
        delay = timedelta(seconds=self.retry_seconds * 2 ** max(attempts - 1, 0))
        return min(delay, MAX_BACKOFF)

    async def run_one(self, doc: dict[str, Any]) -> datetime | None:
        """Deliver one claimed item; the time of its next attempt when it is to be retried."""
        item = OutboxItem(self, doc)
        kind = self.kinds[doc["kind"]]
        mine = {"_id": item.id, "worker": self.worker_id, "state": "running"}
        try:
            await kind.handler(item)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            final = isinstance(exc, Permanent) or item.attempts >= self.max_attempts
            log.warning(
                "delivery failed (%s, attempt %d%s): %s",
                doc["kind"],
                item.attempts,
                ", giving up" if final else "",
                reason,
                extra={"item": item.id},
            )
            if not final:
                due = now_ms() + self.backoff(item.attempts)
                await self.collection.update_one(mine, {"$set": {"state": "queued", "due": due, "error": reason}})
                return due
            if kind.on_failure is not None:
                try:
                    await kind.on_failure(item, reason)
                except Exception:
                    log.exception("delivery failure handler failed", extra={"item": item.id})
            await self.collection.update_one(mine, {"$set": {"state": "failed", "error": reason, "finished": now_ms()}})
            return None
        await self.collection.update_one(mine, {"$set": {"state": "done", "finished": now_ms()}})
        return None

    async def purge(self) -> None:
        before = now_ms() - RETENTION
        await self.collection.delete_many({"state": {"$in": ["done", "failed"]}, "finished": {"$lt": before}})

    async def loop(
        self, *, deliver: bool = True, concurrency: int = 8, poll: float = 1.0, purge_every: int = 3600
    ) -> None:
        """Deliver items as they come due, `concurrency` at a time, until cancelled. With `deliver` off
        (FHIR_JOBS_ENABLED=false) only the periodic tasks run: this instance still enqueues, others deliver."""
        running: set[asyncio.Task[None]] = set()
        next_due: list[datetime] = []  # retries this instance scheduled: wake up for them, not a poll later
        rounds = 0
        last_periodic: datetime | None = None

        async def run(doc: dict[str, Any]) -> None:
            try:
                due = await self.run_one(doc)
            except Exception:  # the database failed us: the item's lease will expire and it is claimed again
                log.exception("outbox delivery bookkeeping failed", extra={"item": doc["_id"]})
                return
            if due is not None:
                next_due.append(due)
                self.wakeup.set()

        try:
            while True:
                now = now_ms()
                if last_periodic is None or (now - last_periodic).total_seconds() >= poll:
                    # At most once per `poll`, however often enqueues wake the loop up.
                    last_periodic = now
                    if rounds % purge_every == 0:
                        with contextlib.suppress(Exception):
                            await self.purge()
                    rounds += 1
                    for refresh in self.periodic:
                        try:
                            await refresh()
                        except Exception:
                            log.exception("outbox periodic task failed")
                self.wakeup.clear()
                while deliver and len(running) < concurrency:
                    try:
                        doc = await self.claim()
                    except Exception:
                        log.exception("outbox claim failed")
                        doc = None
                    if doc is None:
                        break
                    task = asyncio.create_task(run(doc))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    task.add_done_callback(lambda _: self.wakeup.set())  # a free slot: claim again
                now = now_ms()
                next_due[:] = [d for d in next_due if d > now]
                wait = min([poll, *((d - now).total_seconds() for d in next_due)])
                await wait_event(self.wakeup, wait)
        finally:
            for task in running:
                task.cancel()

    async def pending(self) -> int:
        """Items not yet delivered nor given up (tests and diagnostics)."""
        return await self.collection.count_documents({"state": {"$in": ["queued", "running"]}})
