"""Connection to MongoDB (or the embedded FerretDB) and the indexes every query shape relies on.

docs/PERFORMANCE.md lists each query shape with the index below that serves it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection, AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import OperationFailure

log = logging.getLogger(__name__)

HISTORY = "history"
LOCKS = "locks"
SYSTEM_COLLECTIONS = frozenset({HISTORY, LOCKS})

# The resource types a reader touched (search consistency, storage/transactions.py `consistent`): set by
# `Database.tracking()`, filled by every `resources()` call made in that context.
_touched: ContextVar[set[str] | None] = ContextVar("touched_types", default=None)

HISTORY_INDEXES = [
    # Instance history and vread fallback: all versions of one resource, newest first.
    IndexModel([("t", ASCENDING), ("id", ASCENDING), ("lu", DESCENDING), ("_id", ASCENDING)], name="t_id_lu"),
    # Type history with _since, newest first.
    IndexModel([("t", ASCENDING), ("lu", DESCENDING), ("_id", ASCENDING)], name="t_lu"),
    # System history with _since, newest first.
    IndexModel([("lu", DESCENDING), ("_id", ASCENDING)], name="lu"),
]


class Database:
    """The motor database plus what we learnt about the server behind it."""

    def __init__(self, client: AsyncIOMotorClient, name: str) -> None:
        self.client = client
        self.db: AsyncIOMotorDatabase = client[name]
        self.is_ferretdb = False
        self._indexed: set[str] = set()
        self._added: set[str] = set()  # names of the indexes modules added (add_indexes)

    @classmethod
    async def connect(cls, uri: str, name: str) -> Database:
        client: AsyncIOMotorClient = AsyncIOMotorClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=10_000, uuidRepresentation="standard"
        )
        self = cls(client, name)
        info = await self.db.command("buildInfo")
        # FerretDB answers buildInfo like MongoDB 7 but adds ferretdbVersion/ferretdbFeatures.
        self.is_ferretdb = any(key.startswith("ferretdb") for key in info)
        await self._ensure_system_indexes()
        return self

    def close(self) -> None:
        self.client.close()

    def resources(self, resource_type: str) -> AsyncIOMotorCollection:
        touched = _touched.get()
        if touched is not None:
            touched.add(resource_type)
        return self.db[resource_type]

    @staticmethod
    @contextmanager
    def tracking() -> Iterator[set[str]]:
        """Within the block (this task), record the resource types read or written; the set fills as it goes."""
        touched: set[str] = set()
        token = _touched.set(touched)
        try:
            yield touched
        finally:
            _touched.reset(token)

    @property
    def history(self) -> AsyncIOMotorCollection:
        return self.db[HISTORY]

    @property
    def locks(self) -> AsyncIOMotorCollection:
        return self.db[LOCKS]

    async def _ensure_system_indexes(self) -> None:
        await self._create_indexes(self.history, HISTORY_INDEXES)
        # Readers look for committed-but-unapplied transactions on every search and missed read.
        await self._create_indexes(self.db["transactions"], [IndexModel([("state", ASCENDING)], name="state")])
        # Job loops look for queued or expired jobs, oldest first.
        await self._create_indexes(
            self.db["jobs"], [IndexModel([("state", ASCENDING), ("created", ASCENDING)], name="state_created")]
        )
        # Each instance fetches the token revocations recorded since its last look (auth/revocation.py).
        await self._create_indexes(self.db["oauth_tokens"], [IndexModel([("at", ASCENDING)], name="at")])
        # The local account of a Practitioner (an invited professional's enrolment, auth/local_login.py).
        await self._create_indexes(self.db["local_users"], [IndexModel([("user", ASCENDING)], name="user")])
        # Enrolment links past their expiry, purged by the maintenance loop (teleexpertise/enrolment.py).
        await self._create_indexes(self.db["tlx_invitations"], [IndexModel([("exp", ASCENDING)], name="exp")])

    async def add_indexes(self, resource_type: str, models: list[IndexModel]) -> None:
        """Indexes a module adds to a type collection for its own query shapes (téléexpertise worklists,
        cotations), created on first use. MongoDB only: FerretDB v1 runs no secondary index, and
        re-creating multi-key ones there is unsafe."""
        names = {m.document["name"] for m in models}
        if self.is_ferretdb or names <= self._added:
            return
        self._added |= names
        await self.ensure_type_indexes(resource_type)
        collection = self.resources(resource_type)
        existing = {ix["name"] async for ix in collection.list_indexes()}
        missing = [m for m in models if m.document["name"] not in existing]
        if missing:
            await collection.create_indexes(missing)

    async def ensure_type_indexes(self, resource_type: str) -> None:
        """Create a type collection's indexes the first time the type is written (idempotent)."""
        if resource_type in self._indexed:
            return
        models: list[IndexModel] = []
        if not self.is_ferretdb:
            # One wildcard index serves every single-field search predicate on the `i` document
            # (see search/). FerretDB v1 accepts wildcard index creation but then fails inserts, and
            # runs no secondary index in SQLite anyway, so it gets none.
            models.append(IndexModel([("i.$**", ASCENDING)], name="search_wildcard"))
            models.append(IndexModel([("lu", DESCENDING), ("_id", ASCENDING)], name="lu"))
        await self._create_indexes(self.resources(resource_type), models)
        self._indexed.add(resource_type)

    async def _create_indexes(self, collection: AsyncIOMotorCollection, models: list[IndexModel]) -> None:
        if not models:
            return
        # Create only the missing ones: FerretDB v1.24 panics when asked to create again an index it
        # has with several keys, and listing first costs nothing on MongoDB either.
        existing = {ix["name"] async for ix in collection.list_indexes()}
        models = [m for m in models if m.document["name"] not in existing]
        if not models:
            return
        try:
            await collection.create_indexes(models)
        except OperationFailure as exc:  # pragma: no cover - depends on the backend's version
            log.warning("index creation failed", extra={"collection": collection.name, "error": str(exc)})

    async def type_collections(self) -> list[str]:
        names = await self.db.list_collection_names()
        return sorted(n for n in names if n not in SYSTEM_COLLECTIONS and n[:1].isupper())

    async def server_info(self) -> dict[str, Any]:
        return await self.db.command("buildInfo")
