"""The DICOM SCU (pynetdicom): C-ECHO, C-FIND and C-MOVE/C-GET query/retrieve from a PACS, C-STORE export.

Each exchange runs the blocking pynetdicom association in a worker thread (`asyncio.to_thread`); what
arrives by C-GET is stored through the event loop, as the SCP does (dimse.py).

Retrieving a study from a PACS is normally a C-MOVE whose destination is our own AE title: the PACS
must know this server as a DICOM node (AE title FHIR_DICOM_AET, FHIR_DICOM_PORT) and opens its own
association to our SCP, which stores the instances and marks the study complete. A PACS that cannot
reach us (or a server without an SCP) can use C-GET instead, which brings the instances back on the
association we opened.

Export sends each stored instance as it was stored: the association proposes the instances' own
(SOP class, transfer syntax) pairs, and a file whose transfer syntax the peer accepted is streamed
from the blob without decoding; an uncompressed one the peer wants in another uncompressed transfer
syntax is re-encoded by pynetdicom; anything else is reported as failed, never silently transcoded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicomweb import dimse
from dicomweb.nodes import DicomNode

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

log = logging.getLogger(__name__)

MODELS = {
    "PATIENT": (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
    ),
    "STUDY": (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
    ),
}
# Return keys asked for when the caller names none.
DEFAULT_KEYS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "StudyInstanceUID",
        "PatientID",
        "PatientName",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
# Transfer syntaxes proposed for C-GET storage: as stored at the PACS when it is one of these.
GET_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
]


class DimseError(Exception):
    """The peer could not be reached, refused the association or answered with a failure."""


@dataclass
class RetrieveResult:
    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    studies: set[str] = field(default_factory=set)  # what arrived (C-GET; C-MOVE: what was asked)


@dataclass
class ExportResult:
    sent: int = 0
    failed: list[str] = field(default_factory=list)  # SOP Instance UIDs


class DicomClient:
    def __init__(self, ctx: ServerContext, aet: str | None = None) -> None:
        self.ctx = ctx
        self.aet = aet or ctx.settings.dicom_aet
        self.timeout = ctx.settings.dicom_timeout_seconds

    def _ae(self) -> AE:
        ae = AE(ae_title=self.aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        return ae

    def _associate(self, ae: AE, node: DicomNode, **kwargs: Any) -> Any:
        assoc = ae.associate(node.host, node.port, ae_title=node.aet, **kwargs)
        if not assoc.is_established:
            why = "rejected the association" if assoc.is_rejected else "could not be reached"
            raise DimseError(f"DICOM node {node.aet} ({node.host}:{node.port}) {why}")
        return assoc

    # -- C-ECHO

    async def echo(self, node: DicomNode) -> int:
        def run() -> int:
            ae = self._ae()
            ae.add_requested_context(Verification)
            assoc = self._associate(ae, node)
            try:
                status = assoc.send_c_echo()
            finally:
                assoc.release()
            if "Status" not in status:
                raise DimseError(f"no C-ECHO response from {node.aet}")
            return int(status.Status)

        return await asyncio.to_thread(run)

    # -- C-FIND

    async def find(
        self,
        node: DicomNode,
        level: str,
        keys: dict[str, str],
        *,
        model: str = "STUDY",
        return_keys: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """The matches (DICOM JSON) of a C-FIND at `level` with matching `keys` (keyword -> value)."""
        identifier = build_identifier(level, keys, list(return_keys) or list(DEFAULT_KEYS[level]))
        find_model = MODELS[model][0]

        def run() -> list[dict[str, Any]]:
            ae = self._ae()
            ae.add_requested_context(find_model)
            assoc = self._associate(ae, node)
            results: list[dict[str, Any]] = []
            try:
                for status, ds in assoc.send_c_find(identifier, find_model):
                    if not status or "Status" not in status:
                        raise DimseError(f"C-FIND to {node.aet}: no response (timeout or abort)")
                    code = int(status.Status)
                    if code in (0xFF00, 0xFF01) and ds is not None:
                        results.append(ds.to_json_dict())
                    elif code != 0x0000:
                        raise DimseError(f"C-FIND to {node.aet} failed with status 0x{code:04X}")
            finally:
                if assoc.is_established:
                    assoc.release()
            return results

        return await asyncio.to_thread(run)

    # -- C-MOVE / C-GET

    async def move(
        self, node: DicomNode, level: str, keys: dict[str, str], *, destination: str | None = None, model: str = "STUDY"
    ) -> RetrieveResult:
        """Ask `node` to send what `keys` designate to `destination` (default: us)."""
        identifier = build_identifier(level, keys, [])
        move_model = MODELS[model][1]
        dest = destination or self.aet

        def run() -> RetrieveResult:
            ae = self._ae()
            ae.add_requested_context(move_model)
            assoc = self._associate(ae, node)
            try:
                return _final(assoc.send_c_move(identifier, dest, move_model), node, "C-MOVE")
            finally:
                if assoc.is_established:
                    assoc.release()

        result = await asyncio.to_thread(run)
        result.studies = set(_split(keys.get("StudyInstanceUID")))
        return result

    async def get(self, node: DicomNode, level: str, keys: dict[str, str], *, model: str = "STUDY") -> RetrieveResult:
        """Retrieve what `keys` designate from `node` on our own association, into the store."""
        identifier = build_identifier(level, keys, [])
        get_model = MODELS[model][2]
        loop = asyncio.get_running_loop()
        arrived: set[str] = set()
        store = self.ctx.dicom

        def on_store(event: evt.Event) -> int:
            future = asyncio.run_coroutine_threadsafe(
                store.store_instance(event.dataset_path, source=f"dimse-get:{node.aet}", consume=True), loop
            )
            try:
                stored = future.result(self.timeout)
            except Exception as exc:
                log.warning("C-GET instance refused: %s", exc)
                return int(getattr(exc, "failure_code", dimse.STORE_CANNOT_UNDERSTAND))
            arrived.add(stored.study_uid)
            return dimse.SUCCESS

        def run() -> RetrieveResult:
            ae = self._ae()
            ae.add_requested_context(get_model)
            roles = []
            # 127 more contexts at most: the most common storage classes, each with the usual syntaxes.
            for cx in StoragePresentationContexts[:127]:
                ae.add_requested_context(cx.abstract_syntax, GET_TRANSFER_SYNTAXES)
                roles.append(build_role(cx.abstract_syntax, scp_role=True))
            assoc = self._associate(ae, node, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
            try:
                return _final(assoc.send_c_get(identifier, get_model), node, "C-GET")
            finally:
                if assoc.is_established:
                    assoc.release()

        result = await asyncio.to_thread(run)
        result.studies = arrived
        if arrived:
            await store.mark_complete(sorted(arrived))
        return result

    # -- C-STORE export

    async def export(self, node: DicomNode, refs: list[Any]) -> ExportResult:
        """Send the stored instances `refs` (InstanceRef) to `node`."""
        result = ExportResult()
        if not refs:
            return result
        contexts = dimse.storage_contexts({(r.sop_class_uid, r.transfer_syntax_uid) for r in refs})
        loop = asyncio.get_running_loop()

        def run() -> None:
            ae = self._ae()
            assoc = self._associate(ae, node, contexts=contexts)
            try:
                accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
                for ref in refs:
                    if not assoc.is_established:
                        result.failed.append(ref.sop_uid)
                        continue
                    ok = self._send_one(assoc, ref, accepted, loop)
                    if ok:
                        result.sent += 1
                    else:
                        result.failed.append(ref.sop_uid)
            finally:
                if assoc.is_established:
                    assoc.release()

        await asyncio.to_thread(run)
        return result

    def _send_one(self, assoc: Any, ref: Any, accepted: set[tuple[str, str]], loop: asyncio.AbstractEventLoop) -> bool:
        path, temporary = asyncio.run_coroutine_threadsafe(instance_file(self.ctx, ref), loop).result(self.timeout)
        try:
            if (ref.sop_class_uid, ref.transfer_syntax_uid) in accepted:
                status = assoc.send_c_store(path)  # streamed as stored (STORE_SEND_CHUNKED_DATASET)
            elif ref.transfer_syntax_uid in dimse.LITTLE_ENDIAN and any(
                (ref.sop_class_uid, ts) in accepted for ts in dimse.LITTLE_ENDIAN
            ):
                status = assoc.send_c_store(dcmread(path))  # pynetdicom re-encodes implicit <-> explicit
            else:
                log.warning("export: %s accepted no transfer syntax for %s", assoc.acceptor.ae_title, ref.sop_uid)
                return False
        except Exception:
            log.exception("export: sending %s failed", ref.sop_uid)
            return False
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        code = int(status.Status) if status and "Status" in status else -1
        return code == 0x0000 or 0xB000 <= code <= 0xBFFF


async def instance_file(ctx: ServerContext, ref: Any) -> tuple[Path, bool]:
    """A Part-10 file of the stored instance: the blob itself when it is a local file, else a temporary
    copy (object storage); the flag says whether the caller must delete it."""
    path = ctx.dicom.local_path(ref.blob_key)
    if path is not None:
        return path, False
    fd, name = tempfile.mkstemp(suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in ctx.dicom.read_instance(ref):
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), True


def build_identifier(level: str, keys: dict[str, str], return_keys: list[str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in return_keys:
        if keyword not in keys:
            setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").replace(",", "\\").split("\\") if v]


def _final(responses: Iterable[tuple[Dataset, Dataset | None]], node: DicomNode, op: str) -> RetrieveResult:
    last: Dataset | None = None
    for status, _identifier in responses:
        if not status or "Status" not in status:
            raise DimseError(f"{op} to {node.aet}: no response (timeout or abort)")
        last = status
    if last is None:
        raise DimseError(f"{op} to {node.aet}: no response")
    code = int(last.Status)
    result = RetrieveResult(
        status=code,
        completed=int(last.get("NumberOfCompletedSuboperations", 0) or 0),
        failed=int(last.get("NumberOfFailedSuboperations", 0) or 0),
        warning=int(last.get("NumberOfWarningSuboperations", 0) or 0),
    )
    if code not in (0x0000, 0xFE00) and not 0xB000 <= code <= 0xBFFF:
        raise DimseError(f"{op} from {node.aet} failed with status 0x{code:04X} ({result.failed} failed)")
    return result
