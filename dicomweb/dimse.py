"""The DICOM SCP (pynetdicom): C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET on the imaging store.

`fhir-server serve` starts it on FHIR_DICOM_PORT with AE title FHIR_DICOM_AET (app.py lifespan).

Threads and the event loop: pynetdicom runs one thread per association and calls our handlers there.
The store is async (motor), so a handler hands each store call to the server's event loop with
`asyncio.run_coroutine_threadsafe` and waits for it in its own thread; the loop is never blocked, and
several associations are served at once.

- C-STORE: every storage SOP class pynetdicom knows, with every transfer syntax it knows (implicit and
  explicit little endian, explicit big endian, deflated, JPEG baseline/extended/lossless, JPEG-LS,
  JPEG 2000, RLE, MPEG/HEVC, ...). Nothing is decoded: the dataset is written by pynetdicom to a temporary
  Part-10 file as it arrives (`STORE_RECV_CHUNKED_DATASET`) and handed to `DicomStore.store_instance`,
  which is idempotent, so re-sending is harmless. When the peer asks to release the association, the
  studies it brought are marked complete (ImagingStudy `available`) before the release is answered; an
  aborted association leaves them `registered`.
- C-FIND: Patient Root (PATIENT, STUDY, SERIES, IMAGE) and Study Root (STUDY, SERIES, IMAGE), answered
  from the same index and matching rules as QIDO-RS (`DicomStore.search`). PATIENT level is derived from
  the studies (one answer per PatientID).
- C-MOVE: to a node of FHIR_DICOM_NODES only (unknown destination: 0xA801). The sub-association proposes
  exactly the SOP class and transfer syntax of each stored instance (plus implicit/explicit little endian
  for uncompressed ones), so instances go out as they were stored, never transcoded.
- C-GET: over the same association, with the storage contexts and SCP role the requester proposed.
- Every association that stores, and every C-FIND, C-MOVE and C-GET, writes a DICOM-coded AuditEvent
  (transfer_audit.py): import 110107, query 110112, export 110106.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicomweb.nodes import known_nodes
from dicomweb.parse import InvalidInstance
from dicomweb.transfer_audit import Party, record_transfer

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

log = logging.getLogger(__name__)
T = TypeVar("T")

# Received datasets go to a temporary file as they arrive instead of memory; files we send by path are
# streamed as they are (no decoding, no transcoding).
_config.STORE_RECV_CHUNKED_DATASET = True
_config.STORE_SEND_CHUNKED_DATASET = True
# Query identifiers carry patient names and ids: they stay out of the logs.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

# Explicit and implicit VR little endian: what every SCP accepts, and what pynetdicom can re-encode
# into one another.
LITTLE_ENDIAN = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
PATIENT_ROOT = {
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
}
LEVELS = {"PATIENT", "STUDY", "SERIES", "IMAGE"}
# Attributes of the PATIENT level (PS3.4 C.6.1.1.2): a PATIENT query matches studies on these only.
PATIENT_KEYS = {
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDsSequence",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "NumberOfPatientRelatedStudies",
    "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances",
}
# Keys that steer the query rather than match anything.
CONTROL_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "TimezoneOffsetFromUTC"}
# Status codes (PS3.4 C.4).
SUCCESS, PENDING, CANCEL = 0x0000, 0xFF00, 0xFE00
IDENTIFIER_MISMATCH, UNABLE_TO_PROCESS = 0xA900, 0xC000
OUT_OF_RESOURCES, UNKNOWN_DESTINATION = 0xA700, 0xA801
STORE_CANNOT_UNDERSTAND = 0xC000


class QueryError(Exception):
    """A C-FIND/C-MOVE/C-GET identifier we cannot act on; `status` is the DIMSE failure status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Received:
    """What one association stored: its studies are marked complete when it is released."""

    studies: set[str] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)
    count: int = 0
    failed: int = 0


def storage_contexts(pairs: set[tuple[str, str]]) -> list[PresentationContext]:
    """Presentation contexts to send stored instances exactly as they are: one per (SOP class, transfer
    syntax). Implicit VR little endian is the default every SCP accepts; a peer that refuses the others
    makes those sub-operations fail (reported), never transcoded behind the user's back."""
    contexts: list[PresentationContext] = []
    for sop_class, ts in sorted(pairs):
        cx = PresentationContext()
        cx.abstract_syntax = sop_class
        # One syntax per context: offered more, a peer picks its own preference (DCMTK: explicit VR) and
        # the instance would be re-encoded (or, from big endian, not sent at all).
        cx.transfer_syntax = [ts]
        contexts.append(cx)
    return contexts[:128]  # the most an association can propose (PS3.8 9.3.2.2)


def query_keys(identifier: Dataset) -> tuple[dict[str, str], list[str]]:
    """A C-FIND identifier as (matching keys with their values, every requested key). Empty values and
    `*` are return keys only; sequences are returned, not matched."""
    match: dict[str, str] = {}
    requested: list[str] = []
    for elem in identifier:
        keyword = elem.keyword
        if not keyword or elem.tag.group in (0x0000, 0x0002) or keyword in CONTROL_KEYS:
            continue
        requested.append(keyword)
        if elem.VR == "SQ" or elem.value is None:
            continue
        value = elem.value
        text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue | list) else str(value)
        if text.strip() in ("", "*"):
            continue
        match[keyword] = text.strip()
    return match, requested


def _uids(value: str | None) -> list[str]:
    return [u.strip() for u in (value or "").replace(",", "\\").split("\\") if u.strip()]


def response_identifier(result: dict[str, Any], requested: list[str], level: str, aet: str) -> Dataset:
    """A C-FIND answer: the requested keys only (empty when unknown), the level and where to retrieve."""
    full = Dataset.from_json(result)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # values come from the index as Unicode: sent as UTF-8
    for keyword in requested:
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        if tag in full:
            ds[tag] = full[tag]
        else:
            vr = dictionary_VR(tag).split(" or ")[0]
            ds[tag] = DataElement(tag, vr, [] if vr == "SQ" else None)
    ds.QueryRetrieveLevel = level
    ds.RetrieveAETitle = aet
    return ds


class DicomServer:
    """The SCP: `await start()` in the server's event loop, `await stop()` at shutdown."""

    def __init__(self, ctx: ServerContext, host: str, port: int, aet: str) -> None:
        self.ctx, self.host, self.port, self.aet = ctx, host, port, aet
        self.timeout = ctx.settings.dicom_timeout_seconds
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._received: dict[int, _Received] = {}
        self._lock = threading.Lock()

    # -- life cycle

    def application_entity(self) -> AE:
        ae = AE(ae_title=self.aet)
        ae.maximum_associations = 20
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.maximum_pdu_size = 0  # no limit on what peers send us in one PDU
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            # Both roles: C-STORE from a modality (we are the SCP) and C-GET, where the requester
            # proposes to be the storage SCP and we send on the same association.
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        for model in (
            PatientRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelMove,
            PatientRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelGet,
        ):
            ae.add_supported_context(model, ALL_TRANSFER_SYNTAXES[:4])
        if self.ctx.settings.dicom_known_callers_only:
            ae.require_calling_aet = list(known_nodes(self.ctx.settings)) or ["-nobody-"]
        return ae

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if log.getEffectiveLevel() > logging.DEBUG:
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        handlers = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_ACSE_RECV, self._on_acse_received),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        ae = self.application_entity()
        self._server = await asyncio.to_thread(
            ae.start_server, (self.host, self.port), block=False, evt_handlers=handlers
        )
        self.port = self._server.server_address[1]
        log.info("DICOM SCP ready", extra={"aet": self.aet, "host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._server = None

    # -- bridging to the event loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(self.timeout)
        except FutureTimeout:
            future.cancel()
            raise

    @property
    def store(self) -> Any:
        return self.ctx.dicom

    # -- C-ECHO, C-STORE and the association's end

    def _on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    def _state(self, event: evt.Event) -> _Received:
        with self._lock:
            return self._received.setdefault(id(event.assoc), _Received())

    def _on_store(self, event: evt.Event) -> int:
        state = self._state(event)
        peer = event.assoc.requestor
        try:
            stored = self._call(
                # consume: the blob store may take pynetdicom's temporary file instead of copying it
                self.store.store_instance(event.dataset_path, source=f"dimse:{peer.ae_title}", consume=True)
            )
        except InvalidInstance as exc:
            state.failed += 1
            log.warning("C-STORE refused: %s", exc, extra={"calling_aet": peer.ae_title})
            return exc.failure_code or STORE_CANNOT_UNDERSTAND
        except Exception:
            state.failed += 1
            log.exception("C-STORE failed", extra={"calling_aet": peer.ae_title})
            return OUT_OF_RESOURCES
        state.count += 1
        state.studies.add(stored.study_uid)
        if getattr(stored, "patient_id", None):
            state.patients.add(stored.patient_id)
        return SUCCESS

    def _take_state(self, event: evt.Event) -> _Received | None:
        with self._lock:
            return self._received.pop(id(event.assoc), None)

    def _on_acse_received(self, event: evt.Event) -> None:
        # The peer's A-RELEASE request, seen before pynetdicom answers it: the studies are complete (and
        # audited) by the time the sender learns its transfer is over, e.g. before a PACS sends the final
        # C-MOVE response to whoever asked for the move.
        primitive = event.primitive
        if isinstance(primitive, A_RELEASE) and primitive.result is None and not event.assoc.is_requestor:
            self._on_released(event)

    def _on_released(self, event: evt.Event) -> None:
        state = self._take_state(event)
        if state is None or not (state.count or state.failed):
            return
        try:
            if state.studies:
                self._call(self.store.mark_complete(sorted(state.studies)))
        except Exception:
            log.exception("marking received studies complete failed")
        self._audit_import(event, state, "association released")

    def _on_aborted(self, event: evt.Event) -> None:
        # An aborted transfer is not complete: its studies stay `registered` until a later one ends.
        state = self._take_state(event)
        if state is not None and (state.count or state.failed):
            self._audit_import(event, state, "association aborted", success=False)

    def _on_closed(self, event: evt.Event) -> None:
        self._take_state(event)  # connections that ended without release or abort

    def _peer(self, event: evt.Event, *, requestor: bool = True) -> Party:
        peer = event.assoc.requestor
        return Party(aet=str(peer.ae_title).strip(), address=peer.address, requestor=requestor)

    def _me(self) -> Party:
        return Party(aet=self.aet, address=self.host)

    def _audit(self, kind: str, **details: Any) -> None:
        try:
            self._call(record_transfer(self.ctx, kind, **details))
        except Exception:
            log.exception("DICOM audit write failed")

    def _audit_import(self, event: evt.Event, state: _Received, how: str, *, success: bool = True) -> None:
        desc = f"{how}: {state.count} instance(s) stored, {state.failed} refused"
        self._audit(
            "import",
            source=self._peer(event),
            destination=self._me(),
            studies=state.studies,
            patients=state.patients,
            success=success and not state.failed,
            description=desc,
        )

    # -- C-FIND

    def _on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        model = str(event.request.AffectedSOPClassUID)
        try:
            identifier = event.identifier
            level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
            match, requested = query_keys(identifier)
            results = self._call(self.find(model, level, match, requested))
        except QueryError as exc:
            log.info("C-FIND refused: %s", exc)
            yield exc.status, None
            return
        except ValueError as exc:  # a malformed matching value (dicomweb.matching.QueryError)
            log.info("C-FIND refused: %s", exc)
            yield IDENTIFIER_MISMATCH, None
            return
        except Exception:
            log.exception("C-FIND failed")
            yield UNABLE_TO_PROCESS, None
            return
        self._audit(
            "query",
            source=self._me(),
            destination=self._peer(event),
            query=f"{level} " + " ".join(f"{k}={v}" for k, v in sorted(match.items())),
            description=f"C-FIND {level}: {len(results)} match(es)",
        )
        for result in results:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, response_identifier(result, requested, level, self.aet)

    async def find(self, model: str, level: str, match: dict[str, str], requested: list[str]) -> list[dict[str, Any]]:
        """DICOM JSON results of a C-FIND, as the index answers QIDO-RS."""
        if level not in LEVELS or (level == "PATIENT" and model not in PATIENT_ROOT):
            raise QueryError(IDENTIFIER_MISMATCH, f"QueryRetrieveLevel {level!r} is not valid for this model")
        include = [k for k in requested if k not in match]
        if level == "PATIENT":
            return await self._find_patients(match, include)
        # Higher-level unique keys (StudyInstanceUID at SERIES level...) are matching keys like any other.
        return await self.store.search(level, match, includefields=tuple(include))

    async def _find_patients(self, match: dict[str, str], include: list[str]) -> list[dict[str, Any]]:
        wanted = {k: v for k, v in match.items() if k in PATIENT_KEYS}
        fields = ["PatientBirthDate", "PatientSex", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
        studies = await self.store.search("STUDY", wanted, includefields=tuple(fields + include))
        patients: dict[str, dict[str, Any]] = {}
        counts: dict[str, list[int]] = {}
        for study in studies:
            pid = _json_value(study, "00100020") or ""
            if pid not in patients:
                patients[pid] = {k: v for k, v in study.items() if _patient_tag(k)}
                counts[pid] = [0, 0, 0]
            c = counts[pid]
            c[0] += 1
            c[1] += int(_json_value(study, "00201206") or 0)
            c[2] += int(_json_value(study, "00201208") or 0)
        for pid, attrs in patients.items():
            studies_n, series_n, instances_n = counts[pid]
            attrs["00201200"] = {"vr": "IS", "Value": [studies_n]}
            attrs["00201202"] = {"vr": "IS", "Value": [series_n]}
            attrs["00201204"] = {"vr": "IS", "Value": [instances_n]}
        return list(patients.values())

    # -- C-MOVE and C-GET

    async def resolve(self, level: str, match: dict[str, str]) -> list[Any]:
        """The stored instances (InstanceRef) a retrieve identifier designates."""
        if level not in LEVELS:
            raise QueryError(IDENTIFIER_MISMATCH, f"QueryRetrieveLevel {level!r} is not valid")
        if level == "PATIENT":
            pids = _uids(match.get("PatientID"))
            if not pids:
                raise QueryError(IDENTIFIER_MISMATCH, "a PATIENT level retrieve needs PatientID")
            study_uids = []
            for pid in pids:
                found = await self.store.search("STUDY", {"PatientID": pid})
                study_uids += [_json_value(s, "0020000D") for s in found]
            refs: list[Any] = []
            for uid in study_uids:
                if uid:
                    refs += await self.store.instances(uid)
            return refs
        studies = _uids(match.get("StudyInstanceUID"))
        series = _uids(match.get("SeriesInstanceUID"))
        sops = _uids(match.get("SOPInstanceUID"))
        key = {"STUDY": studies, "SERIES": series, "IMAGE": sops}[level]
        if not key:
            raise QueryError(IDENTIFIER_MISMATCH, f"a {level} level retrieve needs the level's unique key")
        if level == "STUDY":
            refs = []
            for uid in studies:
                refs += await self.store.instances(uid)
            return refs
        # SERIES / IMAGE: the study may be absent from a Patient Root identifier: find it in the index.
        if not studies:
            found = await self.store.search(
                "SERIES" if level == "SERIES" else "IMAGE",
                {"SeriesInstanceUID" if level == "SERIES" else "SOPInstanceUID": "\\".join(key)},
            )
            studies = sorted({_json_value(f, "0020000D") or "" for f in found} - {""})
        refs = []
        for study in studies:
            for ref in await self.store.instances(study):
                if level == "SERIES" and ref.series_uid in series:
                    refs.append(ref)
                elif level == "IMAGE" and ref.sop_uid in sops and (not series or ref.series_uid in series):
                    refs.append(ref)
        return refs

    def load(self, ref: Any) -> Dataset:
        """A stored instance as a dataset pynetdicom re-encodes unchanged (its elements stay raw).
        Called in the association's thread: a local blob is read there, others through the loop."""
        path = self.store.local_path(ref.blob_key)
        if path is not None:
            return dcmread(path)
        return dcmread(io.BytesIO(self._call(self.store.read_bytes(ref.blob_key))))

    def _retrieve_request(self, event: evt.Event) -> tuple[str, list[Any]]:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        match, _ = query_keys(identifier)
        refs = self._call(self.resolve(level, match))
        return level, refs

    def _send(self, event: evt.Event, refs: list[Any], sent: list[Any]) -> Iterator[tuple[int, Dataset | None]]:
        for ref in refs:
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                ds = self.load(ref)
            except Exception:
                log.exception("reading a stored instance failed")
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = [ref.sop_uid]
                yield OUT_OF_RESOURCES, failed
                return
            sent.append(ref)
            yield PENDING, ds

    def _on_move(self, event: evt.Event) -> Iterator[Any]:
        destination = str(event.move_destination).strip()
        node = known_nodes(self.ctx.settings).get(destination)
        if node is None:
            log.info("C-MOVE to an unknown destination %r", destination)
            yield None, None
            return
        try:
            level, refs = self._retrieve_request(event)
        except QueryError as exc:
            log.info("C-MOVE refused: %s", exc)
            yield node.host, node.port, {}
            yield 1
            yield exc.status, None
            return
        except Exception:
            log.exception("C-MOVE failed")
            yield node.host, node.port, {}
            yield 1
            yield UNABLE_TO_PROCESS, None
            return
        contexts = storage_contexts({(r.sop_class_uid, r.transfer_syntax_uid) for r in refs})
        yield node.host, node.port, {"contexts": contexts} if contexts else {}
        yield len(refs)
        sent: list[Any] = []
        try:
            yield from self._send(event, refs, sent)
        finally:
            self._audit_export(event, level, sent, refs, Party(aet=node.aet, address=node.host))

    def _on_get(self, event: evt.Event) -> Iterator[Any]:
        try:
            level, refs = self._retrieve_request(event)
        except QueryError as exc:
            log.info("C-GET refused: %s", exc)
            yield 1
            yield exc.status, None
            return
        except Exception:
            log.exception("C-GET failed")
            yield 1
            yield UNABLE_TO_PROCESS, None
            return
        yield len(refs)
        sent: list[Any] = []
        try:
            yield from self._send(event, refs, sent)
        finally:
            self._audit_export(event, level, sent, refs, self._peer(event))

    def _audit_export(self, event: evt.Event, level: str, sent: list[Any], refs: list[Any], to: Party) -> None:
        op = "C-GET" if to.aet == str(event.assoc.requestor.ae_title).strip() and to.requestor else "C-MOVE"
        self._audit(
            "export",
            source=self._me(),
            destination=to,
            studies={r.study_uid for r in sent} or {r.study_uid for r in refs},
            success=len(sent) == len(refs),
            description=f"{op} {level} by {str(event.assoc.requestor.ae_title).strip()}: "
            f"{len(sent)} of {len(refs)} instance(s) sent",
        )


def _json_value(attrs: dict[str, Any], tag: str) -> Any:
    values = (attrs.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _patient_tag(tag: str) -> bool:
    # Patient module attributes are group 0010 (plus the character set of the values).
    return tag.startswith("0010") or tag == "00080005"
