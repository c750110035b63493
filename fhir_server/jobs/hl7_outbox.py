"""The durable outbound HL7 v2 queue: messages to peers, in the `hl7_outbox` collection.

A message is `{_id: "<peer>|<MSH-10>", peer, control_id, message, state, attempts, next_at, ...}`:

    queued ──claim──► sending ──ACK AA/CA──► sent      (never sent again)
       ▲                 │ ──ACK AE/AR/CE/CR──► rejected (the ACK is kept; not retried)
       └── back-off ◄────┘ transport failure (refused, reset, timeout, wrong ACK): retried later
                            (after `max_attempts` failures, if the peer sets it: failed)

Any server instance may deliver: a message is claimed with one conditional update that sets a lease
(`jobs/queue.py` does the same for jobs), so two instances never send it at once, and a message
whose sender died mid-send is taken again once its lease expires (the peer sees the same MSH-10 and
answers with the same ACK). Retries wait `FHIR_HL7_RETRY_BASE_SECONDS` × 2^(attempts-1), capped at
`FHIR_HL7_RETRY_MAX_SECONDS`. A message is `sent` only once an ACK AA/CA for its MSH-10 was read.
Business acknowledgements (ZAM) received later are pushed onto `business_acks` (`mappings/hl7v2/zam.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fhir_server import audit
from fhir_server.aio import wait_event
from fhir_server.mllp_client import TransportError, send
from fhir_server.storage.clock import now_ms
from mappings.hl7v2.outbound import Peer, peers

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from fhir_server.context import ServerContext

log = logging.getLogger(__name__)

OUTBOX = "hl7_outbox"
FINAL = ("sent", "rejected", "failed")


class Outbox:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.worker_id = secrets.token_hex(8)
        self.wakeup = asyncio.Event()
        self.peers: dict[str, Peer] = peers(ctx.settings)
        # A claim outlives the longest send (connect + ACK wait), so it is taken again only when its
        # holder is gone (an instance that died mid-send).
        longest = max((p.timeout for p in self.peers.values()), default=30.0)
        self.lease = timedelta(seconds=2 * longest + 10)

    @property
    def collection(self) -> Any:
        return self.ctx.database.db[OUTBOX]

    async def enqueue(self, peer: Peer, message: str, control_id: str, event: str, resource: str) -> dict[str, Any]:
        now = now_ms()
        doc = {
            "_id": f"{peer.name}|{control_id}",
            "peer": peer.name,
            "control_id": control_id,
            "event": event,
            "resource": resource,
            "message": message,
            "state": "queued",
            "attempts": 0,
            "created": now,
            "next_at": now,
        }
        await self.collection.insert_one(doc)
        self.wakeup.set()
        return doc

    async def get(self, message_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": message_id}, {"message": 0})

    async def wait_final(self, message_id: str, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The message once sent / rejected / failed, or as it stands after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            doc = await self.get(message_id)
            if doc is None or doc["state"] in FINAL or loop.time() >= deadline:
                return doc
            await asyncio.sleep(0.05)

    async def claim(self) -> dict[str, Any] | None:
        now = now_ms()
        due = {
            "$or": [
                {"state": "queued", "next_at": {"$lte": now}},
                {"state": "sending", "lease": {"$lt": now}},
            ]
        }
        async for doc in self.collection.find(due).sort("next_at", 1).limit(5):
            update = self.collection.update_one(
                {"_id": doc["_id"], "state": doc["state"], "lease": doc.get("lease")},
                {"$set": {"state": "sending", "lease": now + self.lease, "worker": self.worker_id}},
            )
            try:
                taken = await asyncio.shield(update)
            except asyncio.CancelledError:
                # Shut down while claiming: the claim may have landed; hand the message back.
                mine = {"_id": doc["_id"], "state": "sending", "worker": self.worker_id}
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(update), 5)
                    release = {"$set": {"state": "queued"}, "$unset": {"lease": "", "worker": ""}}
                    await asyncio.wait_for(self.collection.update_one(mine, release), 5)
                raise
            if taken.matched_count == 1:
                return doc
        return None

    async def next_due(self) -> float | None:
        """Seconds until the next queued message is due (None: nothing queued)."""
        doc = await self.collection.find_one({"state": "queued"}, {"next_at": 1}, sort=[("next_at", 1)])
        if doc is None:
            return None
        return max(0.0, (doc["next_at"] - now_ms()).total_seconds())

    async def deliver(self, doc: dict[str, Any]) -> None:
        peer = self.peers.get(doc["peer"])
        mine = {"_id": doc["_id"], "state": "sending", "worker": self.worker_id}
        attempts = doc.get("attempts", 0) + 1
        if peer is None:
            await self._finish(mine, "failed", attempts, error=f"peer {doc['peer']} is not configured")
            return
        try:
            ack = await send(peer.host, peer.port, doc["message"].encode("utf-8"), doc["control_id"], peer.timeout)
        except asyncio.CancelledError:
            # A clean shutdown mid-send hands the message back at once rather than after its lease; the
            # peer may have it already, and will see the same MSH-10 again.
            release = self.collection.update_one(
                mine, {"$set": {"state": "queued", "next_at": now_ms()}, "$unset": {"lease": "", "worker": ""}}
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(release), 5)
            raise
        except TransportError as exc:
            settings = self.ctx.settings
            if peer.max_attempts and attempts >= peer.max_attempts:
                await self._finish(mine, "failed", attempts, error=str(exc))
                return
            delay = min(settings.hl7_retry_base_seconds * 2 ** (attempts - 1), settings.hl7_retry_max_seconds)
            await self.collection.update_one(
                mine,
                {
                    "$set": {
                        "state": "queued",
                        "attempts": attempts,
                        "next_at": now_ms() + timedelta(seconds=delay),
                        "last_error": str(exc),
                    },
                    "$unset": {"lease": "", "worker": ""},
                },
            )
            log.info("HL7 message not delivered; retrying", extra={"peer": peer.name, "attempts": attempts})
            return
        state = "sent" if ack.code in ("AA", "CA") else "rejected"
        await self._finish(mine, state, attempts, ack={"code": ack.code, "text": ack.text, "raw": ack.raw})
        try:
            await audit.record_hl7(
                self.ctx,
                inbound=False,
                peer=f"{peer.host}:{peer.port}",
                application=peer.receiving_application or peer.name,
                message_type=doc.get("event", "").split("^")[0],
                trigger=[*doc.get("event", "").split("^"), ""][1],
                control_id=doc["control_id"],
                ack_code=ack.code,
                text=ack.text or state,
                resources=[doc["resource"]] if doc.get("resource") else [],
            )
        except Exception:
            log.exception("audit of an outbound HL7 message failed")

    async def _finish(self, mine: dict[str, Any], state: str, attempts: int, **fields: Any) -> None:
        await self.collection.update_one(
            mine,
            {
                "$set": {"state": state, "attempts": attempts, "finished": now_ms(), **fields},
                "$unset": {"lease": "", "worker": ""},
            },
        )

    async def ensure_indexes(self) -> None:
        from pymongo import ASCENDING, IndexModel

        await self.collection.create_indexes(
            [
                IndexModel([("state", ASCENDING), ("next_at", ASCENDING)], name="state_next_at"),
                IndexModel([("control_id", ASCENDING)], name="control_id"),
            ]
        )

    async def loop(self, poll: float = 5.0) -> None:
        """Deliver messages as they come due, one at a time, until cancelled."""
        try:
            await self.ensure_indexes()
        except Exception:
            log.exception("hl7_outbox indexes could not be created")
        while True:
            try:
                doc = await self.claim()
                if doc is not None:
                    await self.deliver(doc)
                    continue
                wait = await self.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("HL7 outbox round failed")
                wait = poll
            self.wakeup.clear()
            await wait_event(self.wakeup, min(poll, wait) if wait is not None else poll)


def start(app: Starlette) -> list[asyncio.Task[None]]:
    """Create the outbox (`app.state.hl7_outbox`) when peers are configured, and its delivery loop
    when this instance runs background jobs."""
    ctx: ServerContext = app.state.server
    app.state.hl7_outbox = None
    if not ctx.settings.hl7_peers:
        return []
    outbox = Outbox(ctx)
    app.state.hl7_outbox = outbox
    if not ctx.settings.jobs_enabled:
        return []
    return [asyncio.create_task(outbox.loop(), name="hl7-outbox")]
