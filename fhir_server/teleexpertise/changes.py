"""All-or-nothing multi-resource writes for workflow transitions, through the transaction journal.

A transition changes several resources (a Task, its ServiceRequest, the Patient's access list, a new
CommunicationRequest, the transition's AuditEvent…). They are collected here with the version each update
was computed from, then written by `storage/transactions.py` exactly as a transaction bundle is: staged,
committed by one journal update, applied. Updates are compare-and-swap on the version they were computed
from, so a concurrent change makes the commit fail with a 409 `conflict` before anything is visible, and
the operation re-reads and re-checks its guards (`retrying`). Every write is a normal version: history
shows each transition.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.interactions.body import validate_or_raise
from fhir_server.questionnaire_validation import prefetch as prefetch_questionnaires
from fhir_server.storage.clock import now_ms
from fhir_server.storage.store import StoredVersion, new_id, stamp
from fhir_server.storage.transactions import StagedWrite

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 5


@dataclass
class _Write:
    rtype: str
    rid: str
    current: dict[str, Any] | None  # the current document the update was computed from (None: create)
    resource: dict[str, Any]


@dataclass
class Changes:
    ctx: ServerContext
    writes: dict[str, _Write] = field(default_factory=dict)

    def create(self, rtype: str, resource: dict[str, Any]) -> str:
        """Queue a create; returns its `Type/id` (usable in references of other queued resources)."""
        rid = new_id()
        self.writes[f"{rtype}/{rid}"] = _Write(rtype, rid, None, {**resource, "id": rid})
        return f"{rtype}/{rid}"

    def update(self, rtype: str, current: dict[str, Any], resource: dict[str, Any]) -> None:
        """Queue a new version of a resource whose current document is `current` (a `{_id, v, lu, res}`)."""
        key = f"{rtype}/{current['_id']}"
        if key in self.writes and self.writes[key].current is None:
            self.writes[key].resource = resource  # changing something queued for creation
            return
        self.writes[key] = _Write(rtype, current["_id"], current, {**resource, "id": current["_id"]})

    def pending(self, ref: str) -> dict[str, Any] | None:
        """The resource queued for `Type/id`, if any (so later steps build on earlier ones)."""
        w = self.writes.get(ref)
        return w.resource if w else None

    async def commit(self) -> dict[str, StoredVersion]:
        if not self.writes:
            return {}
        # A QuestionnaireResponse is validated against its Questionnaire (validate_or_raise).
        await prefetch_questionnaires(self.ctx, [w.resource for w in self.writes.values()])
        now = now_ms()
        staged: list[StagedWrite] = []
        for key, w in self.writes.items():
            cur = w.current
            lu = now if cur is None or cur["lu"] < now else cur["lu"] + timedelta(milliseconds=1)
            version = cur["v"] + 1 if cur else 1
            validate_or_raise(w.resource, w.rtype, model_check=False, where=key)
            stored = stamp(w.resource, w.rid, version, lu)
            op = "update" if cur else "create"
            staged.append(
                StagedWrite(
                    w.rtype, w.rid, cur["v"] if cur else 0, cur is not None, version, lu, stored,
                    self.ctx.store.index_fn(stored), op,
                )
            )  # fmt: skip
        await self.ctx.store.tx.run(staged, now)
        return {
            f"{s.resource_type}/{s.id}": StoredVersion(
                s.resource_type, s.id, s.version, s.lu, s.resource, s.op == "create"
            )
            for s in staged
        }


async def retrying(step: Callable[[], Awaitable[T]]) -> T:
    """Run a read-check-write step again when its commit lost a race (409 `conflict`)."""
    for attempt in range(ATTEMPTS):
        try:
            return await step()
        except FHIRError as exc:
            if exc.status != 409 or exc.code != "conflict" or attempt == ATTEMPTS - 1:
                raise
            log.info("téléexpertise transition lost a race; retrying", extra={"attempt": attempt})
    raise AssertionError("unreachable")
