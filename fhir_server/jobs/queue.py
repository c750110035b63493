"""Jobs live in the `jobs` collection; any server instance may run one, holding a renewable lease.

A job is `{_id, kind, state: queued|running|complete|failed|cancelled, params, lease, owner...}`.
An instance claims a queued job (or a running one whose lease expired: its instance died) with one
conditional update, so two instances never run the same job; while running it renews the lease.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from fhir_server.aio import wait_event
from fhir_server.storage.clock import now_ms
from fhir_server.storage.database import Database

log = logging.getLogger(__name__)

JOBS = "jobs"
LEASE = timedelta(seconds=30)
Runner = Callable[[dict[str, Any], "JobHandle"], Awaitable[None]]


class Cancelled(Exception):
    pass


class JobHandle:
    """What a running job uses to report progress and keep its lease."""

    def __init__(self, queue: JobQueue, job: dict[str, Any]) -> None:
        self.queue = queue
        self.job = job
        self.id = job["_id"]

    async def update(self, **fields: Any) -> None:
        """Save progress and renew the lease; raise Cancelled if the job was cancelled or taken over."""
        result = await self.queue.collection.update_one(
            {"_id": self.id, "state": "running", "worker": self.queue.worker_id},
            {"$set": {**fields, "lease": now_ms() + LEASE}},
        )
        if result.matched_count != 1:
            raise Cancelled(self.id)


class JobQueue:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.worker_id = secrets.token_hex(8)
        self.runners: dict[str, Runner] = {}
        self.wakeup = asyncio.Event()

    @property
    def collection(self) -> Any:
        return self.database.db[JOBS]

    async def submit(self, kind: str, **fields: Any) -> str:
        job_id = secrets.token_hex(16)
        await self.collection.insert_one(
            {"_id": job_id, "kind": kind, "state": "queued", "created": now_ms(), **fields}
        )
        self.wakeup.set()
        return job_id

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": job_id})

    async def claim(self) -> dict[str, Any] | None:
        now = now_ms()
        candidates = (
            self.collection.find(
                {
                    "$or": [{"state": "queued"}, {"state": "running", "lease": {"$lt": now}}],
                    "kind": {"$in": list(self.runners)},
                }
            )
            .sort("created", 1)
            .limit(5)
        )
        async for job in candidates:
            taken = await self.collection.update_one(
                {"_id": job["_id"], "state": job["state"], "lease": job.get("lease")},
                {"$set": {"state": "running", "worker": self.worker_id, "lease": now + LEASE, "started": now}},
            )
            if taken.matched_count == 1:
                job.update(state="running", worker=self.worker_id)
                return job
        return None

    async def run_one(self, job: dict[str, Any]) -> None:
        handle = JobHandle(self, job)
        try:
            await self.runners[job["kind"]](job, handle)
        except Cancelled:
            log.info("job cancelled", extra={"job": job["_id"]})
        except Exception as exc:
            log.exception("job failed", extra={"job": job["_id"]})
            await self.collection.update_one(
                {"_id": job["_id"], "worker": self.worker_id},
                {"$set": {"state": "failed", "error": str(exc), "finished": now_ms()}},
            )

    async def loop(self, concurrency: int = 2, poll: float = 2.0) -> None:
        """Run jobs as they come, `concurrency` at a time, until cancelled."""
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                while len(running) < concurrency:
                    try:
                        job = await self.claim()
                    except Exception:
                        log.exception("job claim failed")
                        job = None
                    if job is None:
                        break
                    task = asyncio.create_task(self.run_one(job))
                    running.add(task)
                    task.add_done_callback(running.discard)
                self.wakeup.clear()
                await wait_event(self.wakeup, poll)
        finally:
            for task in running:
                task.cancel()

    async def expired(self, before: datetime) -> list[dict[str, Any]]:
        return await self.collection.find(
            {"state": {"$in": ["complete", "failed"]}, "finished": {"$lt": before}}
        ).to_list(None)
