"""The imaging store: DICOM instances as blobs, their metadata and study/series aggregates in MongoDB.

Every producer (STOW-RS, the DIMSE C-STORE SCP) calls `store_instance`; every reader (QIDO-RS, WADO-RS,
C-FIND/C-MOVE/C-GET, the viewer) goes through `search`, `instances` and `read_instance`.

Collections (names in lower case, so they are never taken for FHIR type collections):

- `dicom_instances` `{_id: SOPInstanceUID, study, series, cls, ts, num, frames, blob, size, sha, meta,
  x, src, recv, <study keys>, <series keys>}`: `meta` is the whole DICOM JSON without bulk
  values (WADO-RS metadata), stored compressed as one binary value (dicom_json.encode_meta); `x` packs
  the same way `attrs` (the instance attributes QIDO returns), `bulk` and `px` (the byte ranges of bulk
  data and frames inside the blob, parse.py): only the matching keys are plain fields;
- `dicom_series` `{_id: SeriesInstanceUID, study, num, mod, sdesc, ninst, attrs, rep, <study keys>}`;
- `dicom_studies` `{_id: StudyInstanceUID, pid, issuer, pnu, date, time, acc, ..., mods, sers, ninst,
  status: receiving|complete, attrs, rep, fhir, patient}`.

Study keys (PatientID, upper-cased PatientName, StudyDate, ...) are copied into series and instance
documents, so every QIDO query is one indexed query on one collection (docs/PERFORMANCE.md lists the
query shapes and their indexes). Bytes live in the blob store (`ctx.blobs`, a folder under the data
dir by default, storage/blobs.py) under `dicom/<study>/<series>/<sop>-<nonce>.dcm`; MongoDB only holds
the key, so the blob backend can be replaced by object storage without touching this module.

Writes are ordered blob → instance → series → study (the instance documents of a STOW-RS batch in one
unordered `insert_many`, the rest single-document): the unique `_id` of the instance document makes
re-sending idempotent (the second copy changes nothing), and a study is visible to queries from its
first instance on, while the rest is still arriving. Counters are incremented per instance and
recounted from the instance documents when a study is marked complete (overlapping completions of a
study coalesced into one).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import pathlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from dicomweb import dicom_json as dj
from dicomweb.matching import Level, QueryError, compile_match
from dicomweb.parse import InvalidInstance, ParsedInstance, parse
from fhir_server.storage.blobs import FileBlobStore
from fhir_server.storage.clock import now_ms

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

__all__ = ["DicomStore", "InstanceRef", "InvalidInstance", "QueryError", "StoredInstance", "dicomweb_base"]

log = logging.getLogger(__name__)

STUDIES, SERIES, INSTANCES = "dicom_studies", "dicom_series", "dicom_instances"

# The ImagingStudy of a study being received is rewritten at most every FLUSH_EVERY instances or
# FLUSH_SECONDS seconds (and always when the study is created and when it is marked complete).
FLUSH_EVERY = 200
FLUSH_SECONDS = 5.0
# Instance counters of series and studies already known to this process are added up in memory and
# written every COUNT_EVERY instances or COUNT_SECONDS (a study's first instance of each series writes
# at once, so the study and series are visible immediately; `mark_complete` recounts exactly).
COUNT_EVERY = 25
COUNT_SECONDS = 1.0
KNOWN_SERIES_MAX = 10_000

# Study keys copied into every level's documents (the matching fields of matching.py).
STUDY_KEY_FIELDS = ("pid", "issuer", "pnu", "birth", "sex", "date", "time", "acc", "sid", "desc", "refu")

STUDY_INDEXES = [
    # Listing and StudyDate ranges, newest first (the sort of every study query).
    IndexModel([("date", DESCENDING), ("time", DESCENDING), ("_id", ASCENDING)], name="date_time"),
    # PatientID (+ date range), the most common query of viewers and DRIMboxes.
    IndexModel([("pid", ASCENDING), ("date", DESCENDING), ("time", DESCENDING)], name="pid_date"),
    IndexModel([("acc", ASCENDING)], name="acc"),
    # PatientName: upper-cased copy, anchored prefix regex = index range scan.
    IndexModel([("pnu", ASCENDING)], name="pnu"),
    IndexModel([("mods", ASCENDING)], name="mods"),
    # Patient-context tokens: the studies of one FHIR Patient.
    IndexModel([("patient", ASCENDING)], name="patient"),
    # Studies left `receiving` (an association that never completed).
    IndexModel([("status", ASCENDING), ("updated", ASCENDING)], name="status_updated"),
]
SERIES_INDEXES = [
    # /studies/{uid}/series, in series-number order.
    IndexModel([("study", ASCENDING), ("num", ASCENDING), ("_id", ASCENDING)], name="study_num"),
    IndexModel([("pid", ASCENDING)], name="pid"),
    IndexModel([("mod", ASCENDING), ("date", DESCENDING)], name="mod_date"),
    IndexModel([("date", DESCENDING)], name="date"),
]
INSTANCE_INDEXES = [
    # /studies/{uid}/series/{uid}/instances and every WADO-RS retrieve, in series/instance order.
    IndexModel([("study", ASCENDING), ("series", ASCENDING), ("num", ASCENDING), ("_id", ASCENDING)], name="sti"),
    # /instances?SeriesInstanceUID=... without the study.
    IndexModel([("series", ASCENDING), ("num", ASCENDING)], name="series_num"),
    IndexModel([("pid", ASCENDING)], name="pid"),
    IndexModel([("cls", ASCENDING)], name="cls"),
]

SORTS: dict[str, list[tuple[str, int]]] = {
    "STUDY": [("date", DESCENDING), ("time", DESCENDING), ("_id", ASCENDING)],
    "SERIES": [("study", ASCENDING), ("num", ASCENDING), ("_id", ASCENDING)],
    "IMAGE": [("study", ASCENDING), ("series", ASCENDING), ("num", ASCENDING), ("_id", ASCENDING)],
}


# A study document, its series documents and its instances by series: what an ImagingStudy is built from.
Prepared = tuple[dict[str, Any], list[dict[str, Any]], dict[str, list[dict[str, Any]]]]


@dataclass
class _Completion:
    """The completions of one study: calls take a ticket; one completion covers every ticket taken
    before it started (`done`), so callers queued behind it while it ran need only one more."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0
    done: int = 0
    waiters: int = 0


@dataclass(frozen=True)
class InstanceRef:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int


@dataclass(frozen=True)
class StoredInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    size: int
    blob_key: str
    duplicate: bool = False  # the SOP Instance UID was already stored: nothing changed
    warnings: tuple[str, ...] = ()

    @property
    def ref(self) -> InstanceRef:
        return InstanceRef(
            self.study_uid,
            self.series_uid,
            self.sop_uid,
            self.sop_class_uid,
            self.transfer_syntax_uid,
            self.blob_key,
            self.size,
        )


def dicomweb_base(fhir_base_url: str) -> str:
    """Our DICOMweb base URL beside the FHIR one: http://host/fhir -> http://host/dicomweb."""
    base = fhir_base_url.rstrip("/")
    if base.endswith("/fhir"):
        base = base[: -len("/fhir")]
    return base + "/dicomweb"


def imaging_study_id(study_uid: str) -> str:
    """The ImagingStudy id of a study: derived from its UID, so every writer agrees without a lookup."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, study_uid))


def study_keys(meta: dj.JSON) -> dict[str, Any]:
    t = dj.T
    time_value = dj.text(meta, t["StudyTime"])
    return {
        "pid": dj.text(meta, t["PatientID"]),
        "issuer": dj.text(meta, t["IssuerOfPatientID"]),
        "pnu": dj.text(meta, t["PatientName"]).upper(),
        "birth": dj.text(meta, t["PatientBirthDate"]),
        "sex": dj.text(meta, t["PatientSex"]),
        "date": dj.text(meta, t["StudyDate"]),
        "time": dj.normalize_time(time_value) if time_value else "",
        "acc": dj.text(meta, t["AccessionNumber"]),
        "sid": dj.text(meta, t["StudyID"]),
        "desc": dj.text(meta, t["StudyDescription"]),
        "refu": dj.text(meta, t["ReferringPhysicianName"]).upper(),
    }


def series_keys(meta: dj.JSON) -> dict[str, Any]:
    t = dj.T
    return {
        "mod": dj.text(meta, t["Modality"]),
        "snum": dj.integer(meta, t["SeriesNumber"]),
        "sdesc": dj.text(meta, t["SeriesDescription"]),
        "body": dj.text(meta, t["BodyPartExamined"]),
    }


class DicomStore:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        db = ctx.database.db
        self.studies = db[STUDIES]
        self.series_c = db[SERIES]
        self.instances_c = db[INSTANCES]
        self.blobs = ctx.blobs if ctx.blobs is not None else FileBlobStore(ctx.settings.data_dir / "blobs")
        # Uploads being received (STOW-RS parts) are spooled here, then moved into the blob store.
        self.tmp_dir = pathlib.Path(ctx.settings.data_dir) / "dicom-tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # uploads a crash interrupted
            with contextlib.suppress(OSError):
                leftover.unlink()
        self.base = dicomweb_base(ctx.base_url)
        from dicomweb.imaging_study import ImagingStudySync

        self.sync = ImagingStudySync(ctx, self)
        self._dirty: dict[str, int] = {}  # study -> instances stored since its ImagingStudy was written
        self._written: dict[str, float] = {}  # study -> monotonic time of the last ImagingStudy write
        self._flusher: asyncio.Task[None] | None = None
        self.flush_every, self.flush_seconds = FLUSH_EVERY, FLUSH_SECONDS
        self._known_series: set[str] = set()  # series whose documents this process has written
        self._counts: dict[str, dict[str, int]] = {}  # study -> series -> instances not yet counted
        self._counted: dict[str, float] = {}  # study -> monotonic time of its first uncounted instance
        self._completions: dict[str, _Completion] = {}  # study -> its completions, coalesced

    # ---- life cycle ------------------------------------------------------------------------------

    async def ensure_indexes(self) -> None:
        database = self.ctx.database
        await database._create_indexes(self.studies, STUDY_INDEXES)
        await database._create_indexes(self.series_c, SERIES_INDEXES)
        await database._create_indexes(self.instances_c, INSTANCE_INDEXES)

    async def close(self) -> None:
        """Write the ImagingStudies still pending and stop the background flusher."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        for study in list(self._counts):
            with contextlib.suppress(Exception):
                await self._flush_counts(study)
        for study in list(self._dirty):
            with contextlib.suppress(Exception):
                await self._flush(study)

    # ---- writes ----------------------------------------------------------------------------------

    async def store_instance(self, data: bytes | pathlib.Path, *, source: str, consume: bool = False) -> StoredInstance:
        """Store one Part-10 instance (bytes, or a file; `consume=True` lets the store move the file).

        Idempotent on SOPInstanceUID: an instance already stored is reported `duplicate` and nothing
        changes. Raises InvalidInstance for input that cannot be stored.
        """
        (result,) = await self.store_instances([data], source=source, consume=consume)
        if isinstance(result, BaseException):
            raise result
        return result

    async def store_instances(
        self, items: Sequence[bytes | pathlib.Path], *, source: str, consume: bool = False
    ) -> list[StoredInstance | Exception]:
        """Store several instances (as `store_instance`), with one database write for the batch.

        Each item's outcome is in the list, in order: its StoredInstance, or the exception that refused
        it (InvalidInstance, OSError, ...)."""
        out: list[StoredInstance | Exception] = []
        if not items:
            return out
        # Parsing and packing the metadata are CPU work: one thread hop for the batch, off the event loop.
        prepared = await asyncio.to_thread(_parse_and_pack_all, items)
        # Blob keys carry a nonce: a re-sent instance never overwrites the stored copy.
        keys = [
            None
            if isinstance(p, Exception)
            else f"dicom/{p[0].study_uid}/{p[0].series_uid}/{p[0].sop_uid}-{secrets.token_hex(4)}.dcm"
            for p in prepared
        ]
        blobs = await asyncio.gather(
            *(self._put_blob(k, d, consume) for k, d in zip(keys, items, strict=True) if k is not None),
            return_exceptions=True,
        )
        docs: list[dict[str, Any]] = []
        parsed_docs: list[ParsedInstance] = []
        slots: list[int | Exception] = []  # per item: its index in `docs`, or what refused it
        blob_results = iter(blobs)
        for p, key in zip(prepared, keys, strict=True):
            if isinstance(p, Exception):
                slots.append(p)
                continue
            blob = next(blob_results)
            if isinstance(blob, BaseException):
                if not isinstance(blob, Exception):
                    raise blob
                slots.append(blob)
                continue
            assert key is not None
            slots.append(len(docs))
            docs.append(self._instance_doc(p[0], key, blob[0], blob[1], source, p[1]))
            parsed_docs.append(p[0])
        # No existence check first: the unique _id decides (a re-sent instance costs a blob write that
        # is removed at once), and the batch is one unordered insert.
        refused = await self._insert(docs)
        for slot in slots:
            if isinstance(slot, Exception):
                out.append(slot)
                continue
            doc, parsed = docs[slot], parsed_docs[slot]
            error = refused.get(slot)
            if error is None:
                await self._account(parsed, doc)
                out.append(_stored(doc, duplicate=False, warnings=tuple(parsed.warnings)))
                continue
            await self.blobs.delete(doc["blob"])
            if isinstance(error, Exception):
                out.append(error)
                continue
            # Already stored (re-sent, or sent concurrently): the first copy stays.
            existing = await self.instances_c.find_one({"_id": doc["_id"]}, {"meta": 0, "x": 0})
            out.append(_stored(existing or doc, duplicate=True))
        return out

    async def _insert(self, docs: list[dict[str, Any]]) -> dict[int, str | Exception]:
        """Insert instance documents; returns the refused ones by index: "duplicate" or the error."""
        refused: dict[int, str | Exception] = {}
        if not docs:
            return refused
        try:
            if len(docs) == 1:
                try:
                    await self.instances_c.insert_one(docs[0])
                except DuplicateKeyError:
                    refused[0] = "duplicate"
            else:
                await self.instances_c.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            for err in exc.details.get("writeErrors", []):
                code = err.get("code")
                refused[err["index"]] = "duplicate" if code == 11000 else PyMongoError(err.get("errmsg", "not stored"))
        except BaseException:
            for d in docs:
                await self.blobs.delete(d["blob"])
            raise
        return refused

    async def _account(self, parsed: ParsedInstance, doc: dict[str, Any]) -> None:
        """Count a stored instance into its series and study (created at their first instance)."""
        if parsed.series_uid in self._known_series:
            created = False
            await self._count(parsed.study_uid, parsed.series_uid)
        else:
            _, created = await asyncio.gather(self._upsert_series(parsed, doc), self._upsert_study(parsed, doc))
            if len(self._known_series) >= KNOWN_SERIES_MAX:
                self._known_series.clear()
            self._known_series.add(parsed.series_uid)
        await self._after_store(parsed.study_uid, created)

    async def _put_blob(self, key: str, data: bytes | pathlib.Path, consume: bool) -> tuple[int, str]:
        if consume and isinstance(self.blobs, FileBlobStore):
            # Data handed over to the store (a received part, in memory or spooled): written or moved
            # into place in one thread hop, not fsynced (as any file a receiver spooled).
            target = self.blobs.path(key)
            if isinstance(data, bytes | bytearray | memoryview):
                return await asyncio.to_thread(_write_new, bytes(data), target, self.blobs.root / ".tmp")
            adopted = await asyncio.to_thread(_adopt, pathlib.Path(data), target)
            if adopted is not None:
                return adopted
            # another file system: copied below
        if isinstance(data, bytes | bytearray | memoryview):
            info = await self.blobs.put_bytes(key, bytes(data))
            return info.size, info.sha256
        path = pathlib.Path(data)
        info = await self.blobs.put(key, _file_chunks(path))
        if consume:
            await asyncio.to_thread(path.unlink, True)
        return info.size, info.sha256

    def _instance_doc(
        self, p: ParsedInstance, key: str, size: int, sha: str, source: str, packed: tuple[bytes, bytes]
    ) -> dict[str, Any]:
        meta, t = p.meta, dj.T
        return {
            "_id": p.sop_uid,
            "study": p.study_uid,
            "series": p.series_uid,
            "cls": p.sop_class_uid,
            "ts": p.transfer_syntax_uid,
            "num": dj.integer(meta, t["InstanceNumber"]),
            "frames": p.frames,
            "rows": dj.integer(meta, t["Rows"]),
            "cols": dj.integer(meta, t["Columns"]),
            "blob": key,
            "size": size,
            "sha": sha,
            "meta": packed[0],
            # attrs, bulk and px as one compressed value: FerretDB pays per nested field on every read.
            "x": packed[1],
            "src": source,
            "recv": now_ms(),
            **study_keys(meta),
            **series_keys(meta),
        }

    async def _upsert_series(self, p: ParsedInstance, doc: dict[str, Any]) -> bool:
        on_insert = {
            "study": p.study_uid,
            "num": doc["snum"],
            "attrs": dj.pick(p.meta, dj.SERIES_LEVEL),
            "rep": p.sop_uid,
            "created": doc["recv"],
            **{k: doc[k] for k in STUDY_KEY_FIELDS},
            **{k: doc[k] for k in ("mod", "sdesc", "body")},
        }
        update = {"$setOnInsert": on_insert, "$inc": {"ninst": 1}, "$set": {"updated": doc["recv"]}}
        result = await _upsert(self.series_c, p.series_uid, update)
        return result.upserted_id is not None

    async def _upsert_study(self, p: ParsedInstance, doc: dict[str, Any]) -> bool:
        on_insert = {
            "attrs": dj.pick(p.meta, dj.STUDY_LEVEL),
            "rep": p.sop_uid,
            "created": doc["recv"],
            "fhir": imaging_study_id(p.study_uid),
            **{k: doc[k] for k in STUDY_KEY_FIELDS},
        }
        update: dict[str, Any] = {
            "$setOnInsert": on_insert,
            "$inc": {"ninst": 1},
            "$set": {"updated": doc["recv"], "status": "receiving"},
            # The series UIDs (their count is NumberOfStudyRelatedSeries) and the modalities.
            "$addToSet": {"sers": p.series_uid},
        }
        if doc["mod"]:
            update["$addToSet"]["mods"] = doc["mod"]
        result = await _upsert(self.studies, p.study_uid, update)
        return result.upserted_id is not None

    async def _after_store(self, study_uid: str, created: bool) -> None:
        """Keep the ImagingStudy current without rewriting it once per instance (see FLUSH_*)."""
        if created:
            self._dirty[study_uid] = 1
            await self._flush(study_uid, "registered")
            return
        self._dirty[study_uid] = self._dirty.get(study_uid, 0) + 1
        stale = time.monotonic() - self._written.get(study_uid, 0.0) >= self.flush_seconds
        if self._dirty[study_uid] >= self.flush_every or stale:
            await self._flush(study_uid, "registered")
        self._start_flusher()

    async def _flush(self, study_uid: str, status: str = "registered", prepared: Prepared | None = None) -> None:
        self._dirty.pop(study_uid, None)
        self._written[study_uid] = time.monotonic()
        try:
            if prepared is None:
                await self.sync.write(study_uid, status)
            else:
                await self.sync.write_prepared(*prepared, status)
        except Exception:
            # The instance is stored; the ImagingStudy is rebuilt from the store at the next write.
            log.exception("ImagingStudy write failed", extra={"study": study_uid})
            self._dirty[study_uid] = self._dirty.get(study_uid, 0) + 1

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _count(self, study_uid: str, series_uid: str) -> None:
        pending = self._counts.setdefault(study_uid, {})
        pending[series_uid] = pending.get(series_uid, 0) + 1
        self._counted.setdefault(study_uid, time.monotonic())
        if sum(pending.values()) >= COUNT_EVERY:
            await self._flush_counts(study_uid)

    async def _flush_counts(self, study_uid: str) -> None:
        pending = self._counts.pop(study_uid, None)
        self._counted.pop(study_uid, None)
        if not pending:
            return
        now = now_ms()
        study = {"$inc": {"ninst": sum(pending.values())}, "$set": {"updated": now, "status": "receiving"}}
        await asyncio.gather(
            self.studies.update_one({"_id": study_uid}, study),
            *(
                self.series_c.update_one({"_id": uid}, {"$inc": {"ninst": n}, "$set": {"updated": now}})
                for uid, n in pending.items()
            ),
        )

    async def _flush_loop(self) -> None:
        """Writes the counters and ImagingStudies left pending by a transfer that paused."""
        while self._dirty or self._counts:
            await asyncio.sleep(COUNT_SECONDS)
            now = time.monotonic()
            for study, since in list(self._counted.items()):
                if now - since >= COUNT_SECONDS:
                    try:
                        await self._flush_counts(study)
                    except Exception:  # counters are recounted exactly when the study completes
                        log.exception("counter update failed", extra={"study": study})
            for study in list(self._dirty):
                if now - self._written.get(study, 0.0) >= self.flush_seconds:
                    await self._flush(study, "registered")

    async def mark_complete(self, study_uids: Iterable[str]) -> None:
        """The transfer of these studies ended (STOW-RS request done, association released):
        counters are recounted from the instances and the ImagingStudy becomes `available`.

        Completions of one study are coalesced: back-to-back requests (several STOW-RS clients sending
        one study) share one recount and one ImagingStudy write instead of one each. A caller returns
        once a completion that started after its call has finished, so what it stored is counted."""
        for uid in dict.fromkeys(study_uids):
            await self._complete_coalesced(uid)

    async def _complete_coalesced(self, study_uid: str) -> None:
        state = self._completions.get(study_uid)
        if state is None:
            state = self._completions[study_uid] = _Completion()
        state.requested += 1
        ticket = state.requested
        state.waiters += 1
        try:
            async with state.lock:
                if state.done >= ticket:
                    return  # a completion that started after this call covered it
                covers = state.requested  # every call made until now
                await self._complete(study_uid)
                state.done = covers
        finally:
            state.waiters -= 1
            if state.waiters == 0:
                self._completions.pop(study_uid, None)

    async def _complete(self, study_uid: str) -> None:
        self._counts.pop(study_uid, None)  # the recount below supersedes them
        self._counted.pop(study_uid, None)
        # One read of the study's instances serves both the recount and the ImagingStudy (the three reads
        # concurrently: one round trip of waiting).
        study, series_docs, instances = await asyncio.gather(
            self.study_doc(study_uid), self.series_docs(study_uid), self.study_members(study_uid)
        )
        if study is None:
            return
        await self._apply_counts(study, series_docs, instances, {"status": "complete", "updated": now_ms()})
        await self._flush(study_uid, "available", (study, series_docs, instances))

    async def study_members(self, study_uid: str) -> dict[str, list[dict[str, Any]]]:
        """The instances of a study by series (uid, class, number: what the ImagingStudy lists)."""
        members: dict[str, list[dict[str, Any]]] = {}
        cursor = self.instances_c.find({"study": study_uid}, {"series": 1, "cls": 1, "num": 1}).sort(SORTS["IMAGE"])
        async for inst in cursor:
            members.setdefault(inst["series"], []).append(inst)
        return members

    async def _apply_counts(
        self,
        study: dict[str, Any],
        series_docs: list[dict[str, Any]],
        members: dict[str, list[dict[str, Any]]],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Set the counters of a study and its series to what the instance documents say (writes only
        the series whose count changed; the documents passed in are updated to match)."""
        writes = []
        for doc in series_docs:
            n = len(members.get(doc["_id"], ()))
            if doc.get("ninst") != n:
                doc["ninst"] = n
                writes.append(self.series_c.update_one({"_id": doc["_id"]}, {"$set": {"ninst": n}}))
        fields = {
            "sers": [d["_id"] for d in series_docs],
            "ninst": sum(len(members.get(d["_id"], ())) for d in series_docs),
            "mods": sorted({d["mod"] for d in series_docs if d.get("mod")}),
            **(extra or {}),
        }
        study.update(fields)
        await asyncio.gather(self.studies.update_one({"_id": study["_id"]}, {"$set": fields}), *writes)

    async def recount(self, study_uid: str) -> None:
        study = await self.study_doc(study_uid)
        if study is None:
            return
        series_docs, members = await asyncio.gather(self.series_docs(study_uid), self.study_members(study_uid))
        await self._apply_counts(study, series_docs, members)

    async def set_patient(self, study_uid: str, patient_id: str | None) -> None:
        await self.studies.update_one({"_id": study_uid}, {"$set": {"patient": patient_id}})

    # ---- reads -----------------------------------------------------------------------------------

    async def search(
        self,
        level: Literal["STUDY", "SERIES", "IMAGE"],
        match: dict[str, str],
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        includefields: Sequence[str] = (),
        within_studies: Collection[str] | None = None,
    ) -> list[dict[str, Any]]:
        """QIDO-RS / C-FIND: DICOM JSON of the matching studies, series or instances.

        `match` maps keywords (or tags) to DICOM matching values; `within_studies` confines the
        result to those studies (patient-context access). Raises QueryError for malformed values.
        """
        compiled = compile_match(level, match)
        clauses: list[dict[str, Any]] = [compiled.flt] if compiled.flt else []
        if study_uid is not None:
            clauses.append({"_id" if level == "STUDY" else "study": study_uid})
        if series_uid is not None and level != "STUDY":
            clauses.append({"_id" if level == "SERIES" else "series": series_uid})
        allowed: set[str] | None = None if within_studies is None else set(within_studies)
        if compiled.study_filter:
            uids = set(await self.studies.distinct("_id", compiled.study_filter))
            allowed = uids if allowed is None else allowed & uids
        if allowed is not None:
            clauses.append({"_id" if level == "STUDY" else "study": {"$in": sorted(allowed)}})
        flt = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else {})
        wanted, want_all, extra = self._wanted(level, match, includefields)
        coll = {"STUDY": self.studies, "SERIES": self.series_c, "IMAGE": self.instances_c}[level]
        needs_meta = level == "IMAGE" and (want_all or any(t not in dj.INSTANCE_LEVEL for t in extra))
        projection = None if needs_meta else {"meta": 0}
        cursor = coll.find(flt, projection).sort(SORTS[level])
        if offset:
            cursor = cursor.skip(offset)
        if limit is not None:
            cursor = cursor.limit(limit)
        docs = await cursor.to_list(None)
        if level == "IMAGE":
            docs = [_expand(d) for d in docs]
        reps: dict[str, dj.JSON] = {}
        if level != "IMAGE" and (want_all or extra) and docs:
            rep_ids = [d["rep"] for d in docs if d.get("rep")]
            async for inst in self.instances_c.find({"_id": {"$in": rep_ids}}, {"meta": 1}):
                reps[inst["_id"]] = dj.decode_meta(inst["meta"])
        parents: dict[str, dj.JSON] = {}
        if level != "STUDY" and study_uid is None and docs:
            # Queries over all series/instances also return the attributes of each one's study.
            async for st in self.studies.find({"_id": {"$in": list({d["study"] for d in docs})}}):
                parents[st["_id"]] = self._study_json(st, set(dj.STUDY_DEFAULT), False, (), {})
        out = []
        for d in docs:
            if level == "STUDY":
                out.append(self._study_json(d, wanted, want_all, extra, reps))
            elif level == "SERIES":
                item = self._series_json(d, wanted, want_all, extra, reps)
                out.append({**parents.get(d["study"], {}), **item})
            else:
                item = self._instance_json(d, wanted, want_all, extra)
                out.append({**parents.get(d["study"], {}), **item})
        return out

    def ignored_keys(self, level: Level, match: dict[str, str]) -> list[str]:
        """The matching keys `search` ignores at this level (attributes the level does not keep)."""
        return compile_match(level, match).ignored

    def _wanted(
        self, level: Level, match: dict[str, str], includefields: Sequence[str]
    ) -> tuple[set[str], bool, tuple[str, ...]]:
        default = {"STUDY": dj.STUDY_DEFAULT, "SERIES": dj.SERIES_DEFAULT, "IMAGE": dj.INSTANCE_DEFAULT}[level]
        wanted = set(default)
        want_all = False
        extra: list[str] = []
        for name in [*includefields, *match]:
            for part in str(name).split(","):
                part = part.strip()
                if not part:
                    continue
                if part.lower() == "all":
                    want_all = True
                    continue
                tag = dj.tag_of(part)
                if tag is None:
                    raise QueryError(f"includefield {part!r} is not a DICOM attribute keyword or tag")
                if tag not in wanted:
                    wanted.add(tag)
                    extra.append(tag)
        return wanted, want_all, tuple(extra)

    def _study_json(
        self, d: dict[str, Any], wanted: set[str], want_all: bool, extra: Sequence[str], reps: dict[str, dj.JSON]
    ) -> dj.JSON:
        t = dj.T
        attrs = d.get("attrs") or {}
        computed = {
            t["ModalitiesInStudy"]: dj.element(t["ModalitiesInStudy"], sorted(d.get("mods") or []), "CS"),
            t["NumberOfStudyRelatedSeries"]: dj.element(
                t["NumberOfStudyRelatedSeries"], [len(d.get("sers") or [])], "IS"
            ),
            t["NumberOfStudyRelatedInstances"]: dj.element(
                t["NumberOfStudyRelatedInstances"], [d.get("ninst", 0)], "IS"
            ),
            t["RetrieveURL"]: dj.element(t["RetrieveURL"], [f"{self.base}/studies/{d['_id']}"], "UR"),
            t["InstanceAvailability"]: dj.element(t["InstanceAvailability"], ["ONLINE"], "CS"),
        }
        rep = reps.get(d.get("rep", ""), {})
        out = {**attrs, **computed} if want_all else {}
        return _selected(out, wanted, computed, attrs, extra, rep)

    def _series_json(
        self, d: dict[str, Any], wanted: set[str], want_all: bool, extra: Sequence[str], reps: dict[str, dj.JSON]
    ) -> dj.JSON:
        t = dj.T
        attrs = d.get("attrs") or {}
        url = f"{self.base}/studies/{d['study']}/series/{d['_id']}"
        computed = {
            t["NumberOfSeriesRelatedInstances"]: dj.element(
                t["NumberOfSeriesRelatedInstances"], [d.get("ninst", 0)], "IS"
            ),
            t["RetrieveURL"]: dj.element(t["RetrieveURL"], [url], "UR"),
            t["StudyInstanceUID"]: dj.element(t["StudyInstanceUID"], [d["study"]], "UI"),
            t["InstanceAvailability"]: dj.element(t["InstanceAvailability"], ["ONLINE"], "CS"),
        }
        rep = reps.get(d.get("rep", ""), {})
        out = {**attrs, **computed} if want_all else {t["StudyInstanceUID"]: computed[t["StudyInstanceUID"]]}
        return _selected(out, wanted, computed, attrs, extra, rep)

    def _instance_json(self, d: dict[str, Any], wanted: set[str], want_all: bool, extra: Sequence[str]) -> dj.JSON:
        t = dj.T
        meta = dj.decode_meta(d.get("meta"))
        attrs = d.get("attrs") or {}
        url = f"{self.base}/studies/{d['study']}/series/{d['series']}/instances/{d['_id']}"
        computed = {
            t["RetrieveURL"]: dj.element(t["RetrieveURL"], [url], "UR"),
            t["InstanceAvailability"]: dj.element(t["InstanceAvailability"], ["ONLINE"], "CS"),
            t["StudyInstanceUID"]: dj.element(t["StudyInstanceUID"], [d["study"]], "UI"),
            t["SeriesInstanceUID"]: dj.element(t["SeriesInstanceUID"], [d["series"]], "UI"),
            t["AvailableTransferSyntaxUID"]: dj.element(t["AvailableTransferSyntaxUID"], [d["ts"]], "UI"),
        }
        keep = (t["StudyInstanceUID"], t["SeriesInstanceUID"])
        if want_all:
            out = {**self.absolute_bulk(d, meta), **computed}
        else:
            out = {k: computed[k] for k in keep}
        for tag in wanted:
            if tag in computed:
                out[tag] = computed[tag]
            elif tag in attrs:
                out[tag] = attrs[tag]
            elif tag in meta:
                out[tag] = meta[tag]
        # Series attributes an instance query returns (Modality, SeriesNumber) come with the instance.
        for kw in ("Modality", "SeriesNumber"):
            tag = t.get(kw) or dj.tag_of(kw)
            if tag and tag in meta and tag not in out:
                out[tag] = meta[tag]
        return dict(sorted(out.items()))

    def absolute_bulk(self, d: dict[str, Any], meta: dj.JSON) -> dj.JSON:
        """The stored metadata with its relative BulkDataURIs made absolute."""
        bulk = d.get("bulk") or {}
        if not bulk:
            return meta
        url = f"{self.base}/studies/{d['study']}/series/{d['series']}/instances/{d['_id']}/"
        out = dict(meta)
        for path in bulk:
            parts = path.split("/")
            _set_uri(out, parts, url + "bulkdata/" + path)
        return out

    async def metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        within_studies: Collection[str] | None = None,
    ) -> AsyncIterator[dj.JSON]:
        """WADO-RS metadata: each instance's DICOM JSON (BulkDataURIs absolute), one at a time."""
        flt = _instance_filter(study_uid, series_uid, sop_uid)
        if within_studies is not None and study_uid not in within_studies:
            return
        cursor = self.instances_c.find(flt).sort(SORTS["IMAGE"])
        async for d in cursor:
            d = _expand(d)
            meta = self.absolute_bulk(d, dj.decode_meta(d.get("meta")))
            meta[dj.T["AvailableTransferSyntaxUID"]] = dj.element(dj.T["AvailableTransferSyntaxUID"], [d["ts"]], "UI")
            yield dict(sorted(meta.items()))

    async def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRef]:
        """The instances of a study (series, instance), in series then instance-number order."""
        projection = {"study": 1, "series": 1, "cls": 1, "ts": 1, "blob": 1, "size": 1}
        cursor = self.instances_c.find(_instance_filter(study_uid, series_uid, sop_uid), projection)
        return [_ref(d) async for d in cursor.sort(SORTS["IMAGE"])]

    async def instance_doc(self, study_uid: str, series_uid: str, sop_uid: str) -> dict[str, Any] | None:
        """The whole index document of one instance (frames map `px`, bulk data map `bulk`, `attrs`;
        `meta` still encoded: dicom_json.decode_meta)."""
        doc = await self.instances_c.find_one({"_id": sop_uid, "study": study_uid, "series": series_uid})
        return None if doc is None else _expand(doc)

    async def study_doc(self, study_uid: str) -> dict[str, Any] | None:
        return await self.studies.find_one({"_id": study_uid})

    async def series_docs(self, study_uid: str) -> list[dict[str, Any]]:
        return await self.series_c.find({"study": study_uid}).sort(SORTS["SERIES"]).to_list(None)

    async def studies_of_patient(self, patient_id: str) -> list[str]:
        return [d["_id"] async for d in self.studies.find({"patient": patient_id}, {"_id": 1})]

    def read_instance(self, ref: InstanceRef) -> AsyncIterator[bytes]:
        """The stored Part-10 file, streamed in chunks from the blob store (its size is known: the reader
        stops at it instead of reading once more to find the end)."""
        return self.blobs.open(ref.blob_key, 0, ref.size)

    def read_range(self, blob_key: str, start: int, length: int) -> AsyncIterator[bytes]:
        return self.blobs.open(blob_key, start, start + length)

    async def read_bytes(self, blob_key: str) -> bytes:
        """One whole instance (for decoding/transcoding a single instance, never a study)."""
        return b"".join([chunk async for chunk in self.blobs.open(blob_key)])

    def local_path(self, blob_key: str) -> pathlib.Path | None:
        """The file behind a blob when the blob store is a folder (lets pydicom read lazily)."""
        return self.blobs.path(blob_key) if isinstance(self.blobs, FileBlobStore) else None


# ---- helpers ---------------------------------------------------------------------------------------


Packed = tuple[ParsedInstance, tuple[bytes, bytes]]


def _parse_and_pack_all(items: Sequence[bytes | pathlib.Path]) -> list[Packed | Exception]:
    out: list[Packed | Exception] = []
    for data in items:
        try:
            out.append(_parse_and_pack(data))
        except Exception as exc:
            out.append(exc)
    return out


def _parse_and_pack(data: bytes | pathlib.Path) -> tuple[ParsedInstance, tuple[bytes, bytes]]:
    """The parsed instance and its packed `meta` and `x` values (instance document fields)."""
    p = _parse_any(data)
    attrs = dj.pick(p.meta, dj.INSTANCE_LEVEL)
    return p, (dj.encode_meta(p.meta), dj.encode_meta({"attrs": attrs, "bulk": p.bulk, "px": p.pixels}))


def _write_new(data: bytes, target: pathlib.Path, tmp_dir: pathlib.Path) -> tuple[int, str]:
    """Write a blob file (through a temporary file, so a reader never sees half of it): size, sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{secrets.token_hex(8)}.part"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return len(data), hashlib.sha256(data).hexdigest()


def _adopt(path: pathlib.Path, target: pathlib.Path) -> tuple[int, str] | None:
    """Move a spooled file into the blob store (same file system: no copy): size, sha256; None if it
    is on another file system."""
    size, sha = _hash_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except OSError:
        return None
    return size, sha


def _parse_any(data: bytes | pathlib.Path) -> ParsedInstance:
    if isinstance(data, bytes | bytearray | memoryview):
        return parse(io.BytesIO(bytes(data)))
    try:
        with pathlib.Path(data).open("rb") as fp:
            return parse(fp)
    except OSError as exc:
        raise InvalidInstance(f"cannot read {data}: {exc}") from None


async def _file_chunks(path: pathlib.Path) -> AsyncIterator[bytes]:
    src = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(src.read, 1024 * 1024):
            yield chunk
    finally:
        src.close()


def _expand(doc: dict[str, Any]) -> dict[str, Any]:
    """An instance document with its packed fields (attrs, bulk, px) unpacked."""
    packed = doc.pop("x", None)
    if packed is not None:
        doc.update(dj.decode_meta(packed))
    return doc


def _hash_file(path: pathlib.Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as src:
        while chunk := src.read(1024 * 1024):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


async def _upsert(collection: Any, uid: str, update: dict[str, Any]) -> Any:
    # Two first instances of a new study/series may race to insert it: the loser retries as an update.
    for attempt in range(3):
        try:
            return await collection.update_one({"_id": uid}, update, upsert=True)
        except DuplicateKeyError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _stored(doc: dict[str, Any], *, duplicate: bool, warnings: tuple[str, ...] = ()) -> StoredInstance:
    return StoredInstance(
        study_uid=doc["study"],
        series_uid=doc["series"],
        sop_uid=doc["_id"],
        sop_class_uid=doc["cls"],
        transfer_syntax_uid=doc["ts"],
        size=doc["size"],
        blob_key=doc["blob"],
        duplicate=duplicate,
        warnings=warnings,
    )


def _ref(d: dict[str, Any]) -> InstanceRef:
    return InstanceRef(d["study"], d["series"], d["_id"], d["cls"], d["ts"], d["blob"], d["size"])


def _instance_filter(study_uid: str, series_uid: str | None, sop_uid: str | None) -> dict[str, Any]:
    flt: dict[str, Any] = {"study": study_uid}
    if series_uid is not None:
        flt["series"] = series_uid
    if sop_uid is not None:
        flt["_id"] = sop_uid
    return flt


def _set_uri(node: dj.JSON, parts: list[str], uri: str) -> None:
    """Set the BulkDataURI at a path "TAG" or "TAG/item/TAG/..." (copying what it changes)."""
    tag = parts[0]
    if tag not in node:
        return
    if len(parts) == 1:
        node[tag] = {"vr": node[tag].get("vr", "OB"), "BulkDataURI": uri}
        return
    element = dict(node[tag])
    items = list(element.get("Value") or [])
    index = int(parts[1])
    if index >= len(items):
        return
    item = dict(items[index])
    _set_uri(item, parts[2:], uri)
    items[index] = item
    element["Value"] = items
    node[tag] = element


def _selected(
    out: dj.JSON, wanted: set[str], computed: dj.JSON, attrs: dj.JSON, extra: Sequence[str], rep: dj.JSON
) -> dj.JSON:
    """A QIDO result: `out` plus each wanted tag, from the computed attributes first, then the stored ones,
    then (for the `includefield` extras) the representative instance's; sorted by tag."""
    for tag in wanted:
        if tag in computed:
            out[tag] = computed[tag]
        elif tag in attrs:
            out[tag] = attrs[tag]
        elif tag in extra and tag in rep:
            out[tag] = rep[tag]
    return dict(sorted(out.items()))
