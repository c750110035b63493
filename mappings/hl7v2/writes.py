"""The resources one HL7 v2 message writes, validated and written all or nothing.

A message often writes several resources (a Binary, its DocumentReference, the DiagnosticReport and
ServiceRequest it belongs to, the superseded previous version...). They go through the server's own
versioned store: one resource with the plain write protocol, several with the transaction protocol
(`storage/transactions.py`), so a failure leaves no trace and a re-sent message starts clean.
Updates are conditional on the version read (If-Match): a concurrent writer makes the write fail with
`Conflict`, and the message is processed again on fresh data (`inbound.py`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fhir_server.errors import FHIRError
from fhir_server.storage.clock import now_ms
from fhir_server.storage.store import new_id, stamp
from fhir_server.storage.transactions import StagedWrite
from mappings.hl7v2.ack import ERR_APPLICATION_INTERNAL, HL7Reject

if TYPE_CHECKING:
    from fhir_server.context import ServerContext


class Conflict(Exception):
    """A resource the message updates changed meanwhile: process the message again."""


@dataclass
class Write:
    resource_type: str
    id: str
    resource: dict[str, Any]
    current: dict[str, Any] | None  # the stored document read before (None: a creation)


class Batch:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.writes: dict[str, Write] = {}

    def create(self, resource: dict[str, Any], rid: str | None = None) -> str:
        """Plan a creation; returns the new id, usable in references before the commit."""
        rid = rid or new_id()
        rtype = resource["resourceType"]
        self.writes[f"{rtype}/{rid}"] = Write(rtype, rid, {**resource, "id": rid}, None)
        return rid

    def update(self, current: dict[str, Any], resource: dict[str, Any]) -> str:
        """Plan a new version of the stored document `current` ({_id, v, res})."""
        rtype = resource["resourceType"]
        key = f"{rtype}/{current['_id']}"
        base = self.writes[key].current if key in self.writes else current
        self.writes[key] = Write(rtype, current["_id"], {**resource, "id": current["_id"]}, base)
        return current["_id"]

    def planned(self, rtype: str, rid: str) -> dict[str, Any] | None:
        w = self.writes.get(f"{rtype}/{rid}")
        return w.resource if w else None

    def references(self) -> list[str]:
        return list(self.writes)

    async def commit(self) -> list[str]:
        """Validate and write everything; returns `Type/id` of each resource written."""
        from fhir_server.interactions.body import validate_or_raise

        writes = list(self.writes.values())
        for w in writes:
            try:
                validate_or_raise(w.resource, w.resource_type, model_check=False)
            except FHIRError as exc:
                raise HL7Reject(
                    "AE",
                    ERR_APPLICATION_INTERNAL,
                    f"the {w.resource_type} mapped from the message is invalid: {exc.diagnostics}",
                ) from None
        store = self.ctx.store
        for rtype in {w.resource_type for w in writes}:
            await self.ctx.database.ensure_type_indexes(rtype)
        try:
            if len(writes) == 1:
                w = writes[0]
                if w.current is None:
                    await store.write(w.resource_type, w.id, w.resource, require_new=True, fresh=True)
                else:
                    await store.write(w.resource_type, w.id, w.resource, if_match=w.current["v"])
            elif writes:
                await store.tx.run([self._staged(w) for w in writes], now_ms())
        except FHIRError as exc:
            if exc.status in (409, 412):
                raise Conflict(str(exc)) from None
            raise
        return self.references()

    def _staged(self, w: Write) -> StagedWrite:
        now = now_ms()
        cur = w.current
        lu = now if cur is None or cur["lu"] < now else cur["lu"] + timedelta(milliseconds=1)
        version = (cur["v"] if cur else 0) + 1
        stored = stamp(w.resource, w.id, version, lu)
        return StagedWrite(
            w.resource_type,
            w.id,
            cur["v"] if cur else 0,
            cur is not None,
            version,
            lu,
            stored,
            self.ctx.store.index_fn(stored),
            "create" if cur is None else "update",
        )


def body_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored resource to edit as the body of its next version (the store re-stamps meta)."""
    return copy.deepcopy(doc["res"])
