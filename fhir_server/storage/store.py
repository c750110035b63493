"""Versioned resource storage: the write protocol every interaction goes through.

Each resource lives in the collection named after its type as its CURRENT version
`{_id, v, lu, res, i}` (or a tombstone `{_id, v, lu, gone: true}` once deleted), and every version,
the current one included, lives in `history` as `{_id: "Type/id/v", t, id, v, lu, op, res}`.

Writing version n+1 of a resource, with single-document atomic operations only (FerretDB v1 has no
multi-document transactions):
1. claim the version by inserting `history` `Type/id/n+1` (unique `_id`: of two concurrent writers
   exactly one wins; the other sees DuplicateKeyError, so `If-Match` losers get 412 and unconditional
   writers retry on top of the winner);
2. compare-and-swap the current document from version n to n+1.
A writer that dies between 1 and 2 leaves a claimed but unpublished version; the next writer that
trips over it waits a short lease, then rolls it forward (publishes it from history), so no state is
ever stuck and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from fhir_server.errors import FHIRError, gone, not_found, precondition_failed
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.storage.database import Database
from fhir_server.storage.transactions import Transactions

IndexFn = Callable[[dict[str, Any]], dict[str, Any]]
log = logging.getLogger(__name__)

# How long a claimed-but-unpublished version may stay so before another writer rolls it forward.
CLAIM_LEASE = timedelta(seconds=5)
MAX_WRITE_ATTEMPTS = 200


class _NothingToDelete(Exception):
    pass


@dataclass(frozen=True)
class StoredVersion:
    resource_type: str
    id: str
    version: int
    last_updated: datetime
    resource: dict[str, Any] | None  # None for a deletion
    created: bool = False

    @property
    def deleted(self) -> bool:
        return self.resource is None


def new_id() -> str:
    return str(uuid.uuid4())


def history_id(resource_type: str, rid: str, version: int) -> str:
    return f"{resource_type}/{rid}/{version}"


def stamp(resource: dict[str, Any], rid: str, version: int, lu: datetime) -> dict[str, Any]:
    """The resource as stored and served: id, versionId and lastUpdated are the server's."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = fhir_instant(lu)
    out = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    out.update((k, v) for k, v in resource.items() if k not in out)
    return out


def keep_labels(resource: dict[str, Any], current: dict[str, Any] | None, systems: frozenset[str]) -> dict[str, Any]:
    """`resource` with the `meta.security` codings of `systems` the current version has and it lacks.

    Some security labels are the server's, not the client's (the téléexpertise access lists,
    teleexpertise/access.py): a writer that replaces a resource whole (a PUT from an interface, an HL7
    v2 upsert, a transaction) must not drop them, or the resource would vanish for the users it is
    shared with. Those lists only ever grow, so keeping the union is always right.
    """
    if not systems or not current:
        return resource
    old = [s for s in (current.get("meta") or {}).get("security") or [] if s.get("system") in systems]
    new = list((resource.get("meta") or {}).get("security") or [])
    present = {(n.get("system"), n.get("code")) for n in new if isinstance(n, dict)}
    missing = [s for s in old if (s.get("system"), s.get("code")) not in present]
    if not missing:
        return resource
    return {**resource, "meta": {**(resource.get("meta") or {}), "security": new + missing}}


def as_version(resource_type: str, doc: dict[str, Any], created: bool = False) -> StoredVersion:
    return StoredVersion(resource_type, doc.get("id", doc["_id"]), doc["v"], doc["lu"], doc.get("res"), created)


# Called with the versions a successful write (or committed transaction) made visible; see observe().
WriteObserver = Callable[[list["StoredVersion"]], Awaitable[None]]


class ResourceStore:
    def __init__(self, database: Database, index_fn: IndexFn) -> None:
        self.database = database
        self.index_fn = index_fn
        self.tx = Transactions(database)
        # meta.security systems the server manages: kept from version to version (keep_labels).
        self.sticky_labels: frozenset[str] = frozenset()
        # Subscriptions (subscriptions/registry.py) watch every write through here.
        self.observers: list[WriteObserver] = []
        self.tx.after_commit = self._after_transaction

    async def observe(self, versions: list[StoredVersion]) -> None:
        """Tell the observers about published versions. They must be cheap (enqueue at most); their
        failure is logged and never fails the write, which has already happened."""
        for observer in self.observers:
            try:
                await observer(versions)
            except Exception:
                log.exception("write observer failed")

    async def _after_transaction(self, writes: list[Any]) -> None:
        if self.observers:
            await self.observe(
                [StoredVersion(w.resource_type, w.id, w.version, w.lu, w.resource, w.op == "create") for w in writes]
            )

    # ---- reads ------------------------------------------------------------------------------------

    async def current(self, resource_type: str, rid: str) -> dict[str, Any] | None:
        """The committed current document (tombstones included), or None."""
        collection = self.database.resources(resource_type)
        return await self.tx.visible(collection, await collection.find_one({"_id": rid}), rid)

    async def read(self, resource_type: str, rid: str) -> StoredVersion:
        doc = await self.current(resource_type, rid)
        if doc is None:
            raise not_found(resource_type, rid)
        if doc.get("gone"):
            raise gone(resource_type, rid, doc["v"])
        return as_version(resource_type, doc)

    async def vread(self, resource_type: str, rid: str, version: int) -> StoredVersion:
        doc = await self.database.history.find_one({"_id": history_id(resource_type, rid, version)})
        if doc is not None and await self.tx.hidden_history([doc]):
            doc = None
        if doc is None:
            raise FHIRError(404, f"{resource_type}/{rid} has no version {version}", code="not-found")
        if doc.get("res") is None:
            raise gone(resource_type, rid, version)
        return as_version(resource_type, doc)

    # ---- writes -----------------------------------------------------------------------------------

    async def create(self, resource_type: str, resource: dict[str, Any], rid: str | None = None) -> StoredVersion:
        """Create with a server-assigned id (or the given one, which must not exist yet)."""
        # A fresh UUID cannot exist yet: skip the read (the unique history _id still guards it).
        return await self.write(resource_type, rid or new_id(), resource, require_new=True, fresh=rid is None)

    async def create_immutable(self, resource_type: str, resource: dict[str, Any]) -> StoredVersion:
        """Create a resource that will never have a second version (AuditEvent): its one history
        version and its current document are written concurrently, as a fresh id cannot race."""
        rid, lu = new_id(), now_ms()
        stored = stamp(resource, rid, 1, lu)
        history_doc = {
            "_id": history_id(resource_type, rid, 1),
            "t": resource_type,
            "id": rid,
            "v": 1,
            "lu": lu,
            "op": "create",
            "res": stored,
        }
        current = {"_id": rid, "v": 1, "lu": lu, "res": stored, "i": self.index_fn(stored)}
        await self.database.ensure_type_indexes(resource_type)
        await asyncio.gather(
            self.database.history.insert_one(history_doc),
            self.database.resources(resource_type).insert_one(current),
        )
        version = StoredVersion(resource_type, rid, 1, lu, stored, created=True)
        if self.observers:
            await self.observe([version])
        return version

    async def delete(self, resource_type: str, rid: str, *, if_match: int | None = None) -> StoredVersion | None:
        """Write a deletion (tombstone) version; None when there is nothing to delete."""
        try:
            return await self.write(resource_type, rid, None, if_match=if_match)
        except _NothingToDelete:
            return None

    async def write(
        self,
        resource_type: str,
        rid: str,
        resource: dict[str, Any] | None,
        *,
        if_match: int | None = None,
        require_new: bool = False,
        fresh: bool = False,
    ) -> StoredVersion:
        """Write the next version of `Type/rid` (`resource=None` deletes it).

        `if_match` is the version the client expects to replace (412 otherwise); `require_new` refuses
        to overwrite an existing id (used by create); `fresh` says the id was just generated, so there is
        no current document to read.
        """
        collection = self.database.resources(resource_type)
        await self.database.ensure_type_indexes(resource_type)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            cur = None if fresh else await collection.find_one({"_id": rid})
            if cur is not None and "tx" in cur:
                await self._wait_for_transaction(cur["tx"], attempt)
                continue
            cur_v = cur["v"] if cur else 0
            exists = cur is not None and not cur.get("gone")
            if require_new and cur is not None:
                raise FHIRError(409, f"{resource_type}/{rid} already exists", code="duplicate")
            if if_match is not None and (not exists or cur_v != if_match):
                raise precondition_failed(
                    f"If-Match version {if_match} does not match the current version "
                    f"{cur_v if exists else 'none'} of {resource_type}/{rid}"
                )
            if resource is None and not exists and if_match is None:
                raise _NothingToDelete
            version = cur_v + 1
            lu = now_ms()
            if cur is not None and cur["lu"] >= lu:
                # Keep lastUpdated strictly increasing per resource, so history order is version order.
                lu = cur["lu"] + timedelta(milliseconds=1)
            if resource is not None and exists:
                resource = keep_labels(resource, cur.get("res"), self.sticky_labels)
            stored = stamp(resource, rid, version, lu) if resource is not None else None
            op = "delete" if resource is None else ("create" if not exists else "update")
            history_doc = {
                "_id": history_id(resource_type, rid, version),
                "t": resource_type,
                "id": rid,
                "v": version,
                "lu": lu,
                "op": op,
                "res": stored,
            }
            try:
                await self.database.history.insert_one(history_doc)
            except DuplicateKeyError:
                # Someone else claimed this version first.
                if if_match is not None or require_new:
                    raise precondition_failed(
                        f"{resource_type}/{rid} was changed concurrently (version {version} exists)"
                    ) from None
                await self._settle_claim(resource_type, rid, cur_v, attempt)
                continue
            await self._publish(collection, cur_v, history_doc)
            written = StoredVersion(resource_type, rid, version, lu, stored, created=op == "create")
            if self.observers:
                await self.observe([written])
            return written
        raise FHIRError(503, f"{resource_type}/{rid} is under heavy concurrent writes; retry", code="transient")

    async def _publish(self, collection: Any, prev_v: int, history_doc: dict[str, Any]) -> None:
        """Compare-and-swap the current document from version prev_v to the claimed version."""
        rid, version = history_doc["id"], history_doc["v"]
        body: dict[str, Any] = {"v": version, "lu": history_doc["lu"]}
        if history_doc["res"] is None:
            body["gone"] = True
            update: dict[str, Any] = {"$set": body, "$unset": {"res": "", "i": ""}}
        else:
            body["res"] = history_doc["res"]
            body["i"] = self.index_fn(history_doc["res"])
            update = {"$set": body, "$unset": {"gone": ""}}
        if prev_v == 0:
            try:
                await collection.insert_one({"_id": rid, **body})
                return
            except DuplicateKeyError:
                pass  # a roll-forward published our claim already: checked below
        else:
            res = await collection.update_one({"_id": rid, "v": prev_v, "tx": {"$exists": False}}, update)
            if res.matched_count:
                return
        doc = await collection.find_one({"_id": rid}, {"v": 1})
        if doc is None or doc.get("v", 0) < version:
            raise FHIRError(500, f"could not publish version {version} of {rid}", code="exception")

    async def _settle_claim(self, resource_type: str, rid: str, cur_v: int, attempt: int) -> None:
        """Another writer holds version cur_v+1: wait for it, or roll it forward once its lease is over."""
        claimed = await self.database.history.find_one({"_id": history_id(resource_type, rid, cur_v + 1)})
        if claimed is not None and "tx" in claimed:
            if await self.tx.state(claimed["tx"]) is None:
                return  # a finished transaction: the current document is being published, read again
            await self._wait_for_transaction(claimed["tx"], attempt)
            return
        if claimed is not None and now_ms() - claimed["lu"] > CLAIM_LEASE:
            cur = await self.current(resource_type, rid)
            if (cur["v"] if cur else 0) == cur_v:
                await self._publish(self.database.resources(resource_type), cur_v, claimed)
                return
        await asyncio.sleep(min(0.002 * (attempt + 1), 0.05) * (1 + secrets.randbelow(100) / 100))

    async def _wait_for_transaction(self, txid: str, attempt: int) -> None:
        """A transaction holds this resource: help it finish if committed, else wait (or recover it)."""
        state = await self.tx.state(txid)
        if state == "committed" or state is None:
            await self.tx.settle()
            return
        await self.tx.recover(now_ms())
        await asyncio.sleep(min(0.005 * (attempt + 1), 0.1))

    # ---- history ----------------------------------------------------------------------------------

    async def history(
        self,
        *,
        resource_type: str | None = None,
        rid: str | None = None,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        count: int = 20,
    ) -> list[dict[str, Any]]:
        """Versions newest first (lastUpdated, then `_id`), `count` of them, after the `after` cursor.

        Served by the history indexes t_id_lu (instance), t_lu (type) and lu (system).
        """
        query = history_query(resource_type, rid, since)
        if after is not None:
            a_lu, a_id = after
            query = {"$and": [query, {"$or": [{"lu": {"$lt": a_lu}}, {"lu": a_lu, "_id": {"$gt": a_id}}]}]}
        sort = [("lu", -1), ("_id", 1)]
        docs = await self.database.history.find(query).sort(sort).limit(count).to_list(count)
        hidden = await self.tx.hidden_history(docs)
        return [d for d in docs if d["_id"] not in hidden]

    async def history_total(
        self, *, resource_type: str | None = None, rid: str | None = None, since: datetime | None = None
    ) -> int:
        query = history_query(resource_type, rid, since)
        total = await self.database.history.count_documents(query)
        uncommitted = await self.tx.uncommitted_ids()
        if uncommitted:
            total -= await self.database.history.count_documents({**query, "tx": {"$in": uncommitted}})
        return total


def history_query(resource_type: str | None, rid: str | None, since: datetime | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if resource_type:
        query["t"] = resource_type
    if rid:
        query["id"] = rid
    if since is not None:
        query["lu"] = {"$gte": since}
    return query
