"""Who owns each Subscription, which ones are active, and the hook every successful write calls.

The server's own record of a Subscription lives in the `subscriptions` collection (not in the resource,
which its client can rewrite):

    {_id: <Subscription id>, active: bool, type, criteria: [{n: name, v: value}, ...], payload: bool,
     end: datetime|None, version, owner: {subject, client_id, scopes, claims (JSON)} | null}

`owner` is the access token that created the Subscription, or last rewrote it (so redirecting someone
else's Subscription to one's own endpoint yields only what one may see oneself): notifications go out
only when that token may see the resource (delivery.py). Each instance caches the active records by
resource type; the cache is reloaded after every Subscription write on this instance and every second
by the outbox loop (other instances' writes). So the hook costs one dict lookup on a type nobody
subscribed to, and one insert in the outbox otherwise; it never fails the write that called it.
"""

from __future__ import annotations

import contextvars
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhir_server.auth.tokens import AccessToken

if TYPE_CHECKING:
    from fhir_server.context import ServerContext
    from fhir_server.jobs.outbox import Outbox
    from fhir_server.storage.store import StoredVersion

log = logging.getLogger(__name__)

STATE = "subscriptions"
MATCH = "subscription-match"
ACTIVATE = "subscription-activate"

# The access token of the request being served (app.fhir_endpoint sets it): the owner of a Subscription
# is the token that wrote it last.
writer_access: contextvars.ContextVar[AccessToken | None] = contextvars.ContextVar("writer_access", default=None)
# Set while the server itself changes a Subscription's status, so that write is not taken for a client's.
server_write: contextvars.ContextVar[bool] = contextvars.ContextVar("subscription_server_write", default=False)


@dataclass(frozen=True)
class Owner:
    subject: str
    client_id: str
    scopes: tuple[str, ...]
    claims: dict[str, Any]

    @classmethod
    def of(cls, access: AccessToken | None) -> Owner | None:
        if access is None:
            return None
        return cls(access.subject, access.client_id, tuple(sorted(access.scopes)), dict(access.claims))

    def access(self) -> AccessToken:
        return AccessToken(self.subject, self.client_id, frozenset(self.scopes), self.claims)

    def to_doc(self) -> dict[str, Any]:
        # Claims as JSON text: claim names may hold dots or dollars, which field names may not.
        return {
            "subject": self.subject,
            "client_id": self.client_id,
            "scopes": list(self.scopes),
            "claims": json.dumps(self.claims, default=str),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Owner | None:
        if not doc:
            return None
        return cls(doc["subject"], doc.get("client_id", ""), tuple(doc.get("scopes", [])), json.loads(doc["claims"]))


@dataclass(frozen=True)
class ActiveSubscription:
    id: str
    resource_type: str
    criteria: list[tuple[str, str]]
    payload: bool
    end: datetime | None
    owner: Owner | None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ActiveSubscription:
        return cls(
            doc["_id"],
            doc["type"],
            [(c["n"], c["v"]) for c in doc.get("criteria", [])],
            bool(doc.get("payload")),
            doc.get("end"),
            Owner.from_doc(doc.get("owner")),
        )


class SubscriptionRegistry:
    def __init__(self, ctx: ServerContext, outbox: Outbox) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.by_type: dict[str, list[ActiveSubscription]] = {}

    @property
    def state(self) -> Any:
        return self.ctx.database.db[STATE]

    async def refresh(self) -> None:
        by_type: dict[str, list[ActiveSubscription]] = {}
        async for doc in self.state.find({"active": True}):
            sub = ActiveSubscription.from_doc(doc)
            by_type.setdefault(sub.resource_type, []).append(sub)
        self.by_type = by_type

    async def active(self, ids: list[str]) -> list[ActiveSubscription]:
        """The given Subscriptions that are active now, read from the database (not the cache)."""
        docs = self.state.find({"_id": {"$in": ids}, "active": True})
        return [ActiveSubscription.from_doc(d) async for d in docs]

    async def deactivate(self, sid: str) -> None:
        await self.state.update_one({"_id": sid}, {"$set": {"active": False}})
        await self.refresh()

    # ---- the write hook -----------------------------------------------------------------------------

    async def on_write(self, versions: list[StoredVersion]) -> None:
        """Called by the store after every successful write (a transaction's writes together): enqueues
        at most, and never raises."""
        matches: list[tuple[str, dict[str, Any]]] = []
        for version in versions:
            try:
                if version.resource_type == "Subscription":
                    await self._subscription_written(version)
                    continue
                subs = self.by_type.get(version.resource_type)
                if not subs or version.deleted:
                    continue  # R4: no notification on deletion
                key = f"{version.resource_type}/{version.id}/{version.version}"
                data = {
                    "type": version.resource_type,
                    "id": version.id,
                    "v": version.version,
                    "subs": [s.id for s in subs],
                }
                matches.append((f"match:{key}", data))
            except Exception:
                log.exception("subscription hook failed", extra={"resource": f"{version.resource_type}/{version.id}"})
        try:
            await self.outbox.enqueue_many(MATCH, matches)
        except Exception:
            # The writes themselves succeeded; losing their notifications is logged, never an error.
            log.exception("subscription hook failed", extra={"count": len(matches)})

    async def _subscription_written(self, version: StoredVersion) -> None:
        if server_write.get():
            await self.refresh()
            return
        if version.deleted:
            await self.state.delete_one({"_id": version.id})
            await self.refresh()
            return
        owner = Owner.of(writer_access.get())
        # Out of service until checked again (criteria or channel may have changed). The token writing it
        # becomes its owner: whoever redirects someone else's Subscription gets only what they may see.
        fields: dict[str, Any] = {"active": False, "version": version.version}
        update: dict[str, Any] = {"$set": fields}
        if owner is not None:
            fields["owner"] = owner.to_doc()
        else:  # a write by the server's own code (no request): the owner, if any, stays
            update["$setOnInsert"] = {"owner": None}
        await self.state.update_one({"_id": version.id}, update, upsert=True)
        await self.refresh()
        await self.outbox.enqueue(
            ACTIVATE, {"id": version.id, "v": version.version}, item_id=f"activate:{version.id}/{version.version}"
        )
