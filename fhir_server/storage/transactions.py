"""All-or-nothing transactions on MongoDB and FerretDB alike, without multi-document transactions.

A transaction's writes are first staged where readers do not look, then made visible by one
single-document update of its journal (the commit point):

1. journal `transactions/<txid>` = {state: pending, lease, ops};
2. stage: each version is claimed in `history` (marked `tx` for good); an existing current document
   gets `tx: <txid>` and `next: {v, lu, res, i | gone}` while its main fields keep the committed
   state; a resource the transaction creates goes whole into a staging collection `txstage_<txid>`;
3. commit: the journal goes from pending to committed, then the commit sequence is bumped;
4. apply: `next` is copied into the main fields of updated documents, created documents are inserted
   into their type collections (`insert_many`: a 25,000-entry bundle of creates costs no per-document
   update), the journal is deleted, the staging collection dropped.

Readers: `visible()` shows the main (old) fields of a document marked by a pending transaction and
`next` for a committed one; a `tx` mark whose journal is gone belongs to a finished transaction.
A search reads the commit state, finishes committed transactions (`settle`), queries, and re-runs if a
transaction that committed meanwhile could show partly in what it read (`consistent`), so it never sees part
of a transaction. The commit state counts, besides every commit, each pair of resource types a commit
wrote together (and a type it wrote twice): a transaction is seen partly only through two of its documents,
so a search that touched only `Task` ignores the many commits writing one Task (plus other types) each.
A failure before the commit point rolls back (claimed versions and marks removed, staging dropped); a
crashed server's pending journal is rolled back by whichever instance finds its lease expired, and a
committed one is finished the same way.
Applying is idempotent, so the owner and helping readers may do it concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from fhir_server.errors import FHIRError
from fhir_server.storage.clock import now_ms
from fhir_server.storage.database import Database

log = logging.getLogger(__name__)

TRANSACTIONS = "transactions"
STAGING_PREFIX = "txstage_"
SEQUENCE = "commit-sequence"
UNCOMMITTED = frozenset({"pending", "rolling-back"})
LEASE = timedelta(seconds=60)
CHUNK = 500


def type_pairs(writes: list[StagedWrite]) -> set[str]:
    """The pairs of resource types a transaction writes together ("A|B", sorted; "A|A" when it writes two
    documents of A): the ways a reader could see part of it."""
    counts: dict[str, int] = defaultdict(int)
    for w in writes:
        counts[w.resource_type] += 1
    types = sorted(counts)
    return {f"{a}|{b}" for i, a in enumerate(types) for b in types[i:] if a != b or counts[a] > 1}


def consistent(before: dict[str, Any], after: dict[str, Any], touched: set[str]) -> bool:
    """Whether a reader that touched these resource types between the two commit states cannot have
    seen part of a transaction: no commit in between wrote two documents among them."""
    if after.get("n", 0) == before.get("n", 0):
        return True
    old = before.get("p") or {}
    for pair, count in (after.get("p") or {}).items():
        if count != old.get(pair, 0):
            a, _, b = pair.partition("|")
            if a in touched and b in touched:
                return False
    return True


@dataclass
class StagedWrite:
    """One resource version a transaction writes (resource None = delete)."""

    resource_type: str
    id: str
    prev_version: int  # 0 when the resource does not exist yet (no current document at all)
    has_current_doc: bool  # a tombstone counts: it is updated, not inserted
    version: int
    lu: datetime
    resource: dict[str, Any] | None
    index: dict[str, Any] | None = None
    op: str = "update"

    @property
    def history_id(self) -> str:
        return f"{self.resource_type}/{self.id}/{self.version}"

    def next_fields(self) -> dict[str, Any]:
        if self.resource is None:
            return {"v": self.version, "lu": self.lu, "gone": True}
        return {"v": self.version, "lu": self.lu, "res": self.resource, "i": self.index}


@dataclass
class FailureInjection:
    """Tests set `after` to make staging fail after that many writes (no setting reaches it)."""

    after: int | None = None
    count: int = field(default=0)


def _main_update(fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get("gone"):
        return {
            "$set": {"v": fields["v"], "lu": fields["lu"], "gone": True},
            "$unset": {"res": "", "i": "", "tx": "", "next": ""},
        }
    return {
        "$set": {"v": fields["v"], "lu": fields["lu"], "res": fields["res"], "i": fields["i"]},
        "$unset": {"gone": "", "tx": "", "next": ""},
    }


class Transactions:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.inject = FailureInjection()
        # Called with the writes of each transaction this instance committed and applied (storage/store.py).
        self.after_commit: Callable[[list[StagedWrite]], Awaitable[None]] | None = None

    @property
    def journal(self) -> Any:
        return self.database.db[TRANSACTIONS]

    def staging(self, txid: str) -> Any:
        return self.database.db[STAGING_PREFIX + txid]

    # ---- readers ----------------------------------------------------------------------------------

    async def state(self, txid: str) -> str | None:
        doc = await self.journal.find_one({"_id": txid}, {"state": 1})
        return doc["state"] if doc else None

    async def visible(self, collection: Any, doc: dict[str, Any] | None, rid: str) -> dict[str, Any] | None:
        """The committed state of the current document `rid` (None if it does not exist for readers)."""
        for _ in range(50):
            if doc is None:
                # Created by a committed transaction that is still being applied? Help it, look again.
                if await self.journal.find_one({"state": "committed"}, {"_id": 1}) is None:
                    return None
                await self.settle()
                doc = await collection.find_one({"_id": rid})
                if doc is None:
                    return None
            if "tx" not in doc:
                return doc
            state = await self.state(doc["tx"])
            if state in UNCOMMITTED:
                return doc
            if state == "committed":
                return {"_id": doc["_id"], **doc["next"]}
            # The journal is gone: the transaction finished (or rolled back) since we read; read again.
            doc = await collection.find_one({"_id": rid})
            if doc is None:
                return None
        raise FHIRError(503, "resource busy with a transaction; retry", code="transient")

    async def hidden_history(self, docs: list[dict[str, Any]]) -> set[str]:
        """History `_id`s among `docs` that belong to transactions not committed."""
        txids = {d["tx"] for d in docs if "tx" in d}
        if not txids:
            return set()
        states = {d["_id"]: d["state"] async for d in self.journal.find({"_id": {"$in": list(txids)}})}
        return {d["_id"] for d in docs if "tx" in d and states.get(d["tx"]) in UNCOMMITTED}

    async def uncommitted_ids(self) -> list[str]:
        return [d["_id"] async for d in self.journal.find({"state": {"$in": list(UNCOMMITTED)}}, {"_id": 1})]

    async def commit_state(self) -> dict[str, Any]:
        """Bumped after every commit, before its writes are applied (see the module docstring):
        {n: commits, p: {"A|B": commits that wrote types A and B together (A|A: two documents of A)}}."""
        doc = await self.journal.find_one({"_id": SEQUENCE})
        return doc or {"n": 0}

    async def settle(self) -> None:
        """Finish applying every committed transaction (idempotent; the owner may be doing it too)."""
        async for journal in self.journal.find({"state": "committed"}):
            await self._apply_from_documents(journal)

    # ---- writers ----------------------------------------------------------------------------------

    async def run(self, writes: list[StagedWrite], now: datetime) -> str:
        """Stage, commit and apply `writes` atomically; raise FHIRError (nothing visible) on failure."""
        txid = uuid.uuid4().hex
        ops = [{"t": w.resource_type, "id": w.id, "v": w.version, "new": not w.has_current_doc} for w in writes]
        await self.journal.insert_one({"_id": txid, "state": "pending", "lease": now + LEASE, "ops": ops})
        try:
            await self._stage(txid, writes)
        except BaseException:
            await self._rollback(txid, ops)
            raise
        committed = await self.journal.update_one(
            {"_id": txid, "state": "pending"}, {"$set": {"state": "committed", "committed": now}}
        )
        if committed.matched_count != 1:
            raise FHIRError(409, "the transaction took too long and was rolled back; retry", code="conflict")
        bumps = {"n": 1, **{f"p.{pair}": 1 for pair in type_pairs(writes)}}
        await self.journal.update_one({"_id": SEQUENCE}, {"$inc": bumps}, upsert=True)
        await self._apply_in_memory(txid, writes)
        if self.after_commit is not None:
            await self.after_commit(writes)
        return txid

    async def _stage(self, txid: str, writes: list[StagedWrite]) -> None:
        for start in range(0, len(writes), CHUNK):
            chunk = writes[start : start + CHUNK]
            self._maybe_fail(len(chunk))
            history = [
                {
                    "_id": w.history_id, "t": w.resource_type, "id": w.id, "v": w.version, "lu": w.lu,
                    "op": w.op, "res": w.resource, "tx": txid,
                }
                for w in chunk
            ]  # fmt: skip
            try:
                await self.database.history.insert_many(history, ordered=True)
            except (BulkWriteError, DuplicateKeyError):
                raise FHIRError(
                    409, "a resource of the transaction was changed concurrently; retry", code="conflict"
                ) from None
            created = [
                {"_id": f"{w.resource_type}/{w.id}", "t": w.resource_type, "doc": {"_id": w.id, **w.next_fields()}}
                for w in chunk
                if not w.has_current_doc
            ]
            if created:
                await self.staging(txid).insert_many(created, ordered=False)
            await self._stage_updates(txid, [w for w in chunk if w.has_current_doc])
            # Heartbeat: a long transaction keeps its lease, so no other instance rolls it back.
            await self.journal.update_one({"_id": txid}, {"$set": {"lease": now_ms() + LEASE}})

    async def _stage_updates(self, txid: str, writes: list[StagedWrite]) -> None:
        by_type: dict[str, list[Any]] = defaultdict(list)
        for w in writes:
            flt = {"_id": w.id, "v": w.prev_version, "tx": {"$exists": False}}
            by_type[w.resource_type].append(UpdateOne(flt, {"$set": {"tx": txid, "next": w.next_fields()}}))
        for rtype, requests in by_type.items():
            result = await self.database.resources(rtype).bulk_write(requests, ordered=True)
            if result.matched_count != len(requests):
                raise FHIRError(409, f"a {rtype} of the transaction was changed concurrently; retry", code="conflict")

    def _maybe_fail(self, n: int) -> None:
        if self.inject.after is None:
            return
        self.inject.count += n
        if self.inject.count > self.inject.after:
            raise RuntimeError("injected failure while staging a transaction")

    async def _apply_in_memory(self, txid: str, writes: list[StagedWrite]) -> None:
        updates: dict[str, list[Any]] = defaultdict(list)
        creates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for w in writes:
            if w.has_current_doc:
                updates[w.resource_type].append(UpdateOne({"_id": w.id, "tx": txid}, _main_update(w.next_fields())))
            else:
                creates[w.resource_type].append({"_id": w.id, **w.next_fields()})
        await self._apply(updates, creates)
        await self._finish(txid)

    async def _apply(self, updates: dict[str, list[Any]], creates: dict[str, list[dict[str, Any]]]) -> None:
        for rtype, requests in updates.items():
            for start in range(0, len(requests), CHUNK):
                await self.database.resources(rtype).bulk_write(requests[start : start + CHUNK], ordered=False)
        for rtype, docs in creates.items():
            await self.database.ensure_type_indexes(rtype)
            for start in range(0, len(docs), CHUNK):
                try:
                    await self.database.resources(rtype).insert_many(docs[start : start + CHUNK], ordered=False)
                except BulkWriteError as exc:
                    # Already inserted by a helping reader: fine. Anything else is not.
                    if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                        raise

    async def _apply_from_documents(self, journal: dict[str, Any]) -> None:
        """Finish a committed transaction from what is stored (another instance, or after a crash)."""
        txid = journal["_id"]
        updates: dict[str, list[Any]] = defaultdict(list)
        for op in journal["ops"]:
            if not op["new"]:
                updates[op["t"]].append(op["id"])
        update_requests: dict[str, list[Any]] = defaultdict(list)
        for rtype, ids in updates.items():
            async for doc in self.database.resources(rtype).find({"_id": {"$in": ids}, "tx": txid}):
                update_requests[rtype].append(UpdateOne({"_id": doc["_id"], "tx": txid}, _main_update(doc["next"])))
        creates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        try:
            async for staged in self.staging(txid).find({}):
                creates[staged["t"]].append(staged["doc"])
        except PyMongoError:
            # The owner finished and dropped the staging collection under our cursor.
            if await self.state(txid) != "committed":
                return
            raise
        if await self.state(txid) != "committed":
            return  # finished by someone else meanwhile (the staging collection may be gone)
        await self._apply(update_requests, creates)
        await self._finish(txid)

    async def _finish(self, txid: str) -> None:
        # History versions keep their `tx` mark: with the journal gone, readers take them as committed.
        await self.journal.delete_one({"_id": txid})
        await self.staging(txid).drop()

    async def _rollback(self, txid: str, ops: list[dict[str, Any]]) -> None:
        history_ids = [f"{op['t']}/{op['id']}/{op['v']}" for op in ops]
        for start in range(0, len(history_ids), CHUNK):
            await self.database.history.delete_many({"_id": {"$in": history_ids[start : start + CHUNK]}, "tx": txid})
        updated: dict[str, list[str]] = defaultdict(list)
        for op in ops:
            if not op["new"]:
                updated[op["t"]].append(op["id"])
        for rtype, ids in updated.items():
            await self.database.resources(rtype).update_many(
                {"_id": {"$in": ids}, "tx": txid}, {"$unset": {"tx": "", "next": ""}}
            )
        await self.staging(txid).drop()
        await self.journal.delete_one({"_id": txid})
        log.info("transaction rolled back", extra={"tx": txid, "ops": len(ops)})

    async def recover(self, now: datetime) -> int:
        """Roll back pending transactions whose lease expired, finish committed ones. Returns how many."""
        done = 0
        async for journal in self.journal.find({"state": "pending", "lease": {"$lt": now}}):
            claimed = await self.journal.update_one(
                {"_id": journal["_id"], "state": "pending", "lease": journal["lease"]},
                {"$set": {"state": "rolling-back", "lease": now + LEASE}},
            )
            if claimed.matched_count:
                await self._rollback(journal["_id"], journal["ops"])
                done += 1
        async for journal in self.journal.find({"state": "rolling-back", "lease": {"$lt": now}}):
            await self._rollback(journal["_id"], journal["ops"])
            done += 1
        await self.settle()
        await self._drop_orphan_staging()
        return done

    async def _drop_orphan_staging(self) -> None:
        names = await self.database.db.list_collection_names()
        for name in names:
            if name.startswith(STAGING_PREFIX) and await self.state(name[len(STAGING_PREFIX) :]) is None:
                await self.database.db[name].drop()

    async def recovery_loop(self, interval: float = 10.0) -> None:
        while True:
            try:
                await self.recover(now_ms())
            except Exception:
                log.exception("transaction recovery failed")
            await asyncio.sleep(interval)
