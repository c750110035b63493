"""STOW-RS (PS3.18 10.5): POST /studies[/{study}] with a multipart/related; type="application/dicom" body.

The body is parsed as it arrives (multipart.py): each part (in memory, or spooled to a file when large)
is handed to the store (DicomStore.store_instance, which writes it, or moves the file, into the blob
store) while the next parts are still being received, so memory does not grow with the upload (at
most a few parts are held) and the study is queryable during it. The
response (application/dicom+json) lists stored instances in ReferencedSOPSequence and refused ones in
FailedSOPSequence with their FailureReason; HTTP 200 when all were stored, 202 when some failed, 409
when none could be stored, 400 for a body that is not a readable multipart message, 413 past
FHIR_DICOMWEB_MAX_STOW_BYTES. Re-sent instances count as stored (the store is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb import dicom_json as dj
from dicomweb import web_audit
from dicomweb.multipart import MalformedMultipart, MultipartSpooler, ReceivedPart, TooLarge, parse_content_type
from dicomweb.parse import InvalidInstance
from dicomweb.store import DicomStore, StoredInstance
from dicomweb.wado import DICOM_JSON, store_of, uid_param
from fhir_server.errors import FHIRError

log = logging.getLogger(__name__)

PROCESSING_FAILURE = 0x0110
CANNOT_UNDERSTAND = 0xC000
STUDY_MISMATCH = 0xA900  # "Data Set does not match SOP Class" family: the instance is not of this study
OUT_OF_RESOURCES = 0xA700

# Parts received ahead of the store (each in memory up to multipart.MEMORY_LIMIT), and the most the
# worker stores in one batch.
QUEUE_MAX = 8
BATCH_MAX = 16


@dataclass
class Failure:
    sop_class_uid: str
    sop_uid: str
    code: int
    reason: str


async def store_studies(request: Request) -> Response:
    store = store_of(request)
    settings = request.app.state.server.settings
    target = uid_param(request, "study")
    media, params = parse_content_type(request.headers.get("content-type", ""))
    if media != "multipart/related":
        raise FHIRError(415, 'STOW-RS takes multipart/related; type="application/dicom"', code="not-supported")
    part_type = params.get("type", "application/dicom").lower()
    if part_type != "application/dicom":
        raise FHIRError(
            415, f"parts of type {part_type} are not supported: send application/dicom", code="not-supported"
        )
    boundary = params.get("boundary")
    if not boundary:
        raise FHIRError(400, "the multipart Content-Type has no boundary", code="invalid")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.dicomweb_max_stow_bytes:
        raise FHIRError(413, f"the upload is larger than {settings.dicomweb_max_stow_bytes} bytes", code="too-costly")

    stored: list[StoredInstance] = []
    failed: list[Failure] = []
    spooler = MultipartSpooler(boundary, store.tmp_dir, settings.dicomweb_max_stow_bytes)
    # Parts are stored by a worker while the reader goes on receiving (at most a few parts ahead).
    queue: asyncio.Queue[ReceivedPart | None] = asyncio.Queue(maxsize=QUEUE_MAX)

    async def worker() -> None:
        done = False
        while not done:
            # The parts waiting in the queue are stored together (one database write for the batch).
            batch = [await queue.get()]
            while batch[-1] is not None and not queue.empty() and len(batch) < BATCH_MAX:
                batch.append(queue.get_nowait())
            if batch[-1] is None:
                done = True
                batch.pop()
            if not batch:
                continue
            try:
                await _store_parts(store, batch, target, stored, failed)
            except Exception:  # never let the reader wait on a dead worker
                log.exception("STOW-RS part failed")
                failed.extend(Failure("", "", PROCESSING_FAILURE, "processing failure") for _ in batch)

    task = asyncio.create_task(worker())
    error: FHIRError | None = None
    try:
        try:
            async for chunk in request.stream():
                for part in spooler.feed(chunk):
                    await queue.put(part)
            spooler.finish()
        except TooLarge as exc:
            error = FHIRError(413, str(exc), code="too-costly")
        except MalformedMultipart as exc:
            error = FHIRError(400, f"the multipart body cannot be read: {exc}", code="invalid")
        await queue.put(None)
        await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        spooler.cleanup()
        while not queue.empty():
            leftover = queue.get_nowait()
            if leftover is not None:
                leftover.discard()
        studies = list(dict.fromkeys(s.study_uid for s in stored))
        if studies:
            await store.mark_complete(studies)

    studies = list(dict.fromkeys(s.study_uid for s in stored))
    await web_audit.record(
        request,
        "import",
        studies=studies,
        success=bool(stored) and not failed and error is None,
        description=f"STOW-RS: {len(stored)} stored, {len(failed)} failed"
        + (f"; {error.diagnostics}" if error else ""),
    )
    if error is not None and not stored:
        raise error
    if not stored and not failed:
        raise FHIRError(400, "the request holds no DICOM instance", code="invalid")
    status = 200 if not failed and error is None else (202 if stored else 409)
    headers = {}
    if failed:
        headers["Warning"] = f'299 {request.url.netloc}: "{_quote(failed[0].reason)}"'
    elif error is not None:
        headers["Warning"] = f'299 {request.url.netloc}: "{_quote(error.diagnostics)}"'
    body = _response(store, stored, failed, target)
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON, headers=headers)


def _quote(text: str) -> str:
    return text.replace('"', "'").replace("\r", " ").replace("\n", " ")[:300]


async def _store_parts(
    store: DicomStore,
    parts: list[ReceivedPart],
    target: str | None,
    stored: list[StoredInstance],
    failed: list[Failure],
) -> None:
    """Store a batch of parts, recording each as stored or failed in the order they came."""
    outcomes: list[StoredInstance | Failure | None] = [None] * len(parts)

    async def failure(part: ReceivedPart, code: int, reason: str, known: tuple[str, str, str] | None = None) -> Failure:
        # The UIDs of a refused part are read only then (a header read), for its FailedSOPSequence item.
        ids = known or await asyncio.to_thread(_identify, part.content)
        return Failure(ids[0], ids[1], code, reason)

    try:
        todo: list[int] = []
        for i, part in enumerate(parts):
            ctype = part.content_type.split(";")[0].strip().lower()
            if ctype and ctype != "application/dicom":
                outcomes[i] = await failure(part, CANNOT_UNDERSTAND, f"a part of type {ctype} is not a DICOM instance")
                continue
            if target is not None:
                ids = await asyncio.to_thread(_identify, part.content)
                if ids[2] and ids[2] != target:
                    reason = f"the instance belongs to study {ids[2]}, not {target}"
                    outcomes[i] = await failure(part, STUDY_MISMATCH, reason, ids)
                    continue
            todo.append(i)
        results = await store.store_instances([parts[i].content for i in todo], source="stow", consume=True)
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, StoredInstance):
                outcomes[i] = result
            elif isinstance(result, InvalidInstance):
                outcomes[i] = await failure(parts[i], result.failure_code, result.reason)
            elif isinstance(result, OSError):
                log.error("STOW-RS part could not be stored", exc_info=result)
                outcomes[i] = await failure(parts[i], OUT_OF_RESOURCES, f"storage failed: {result.strerror or result}")
            else:
                log.error("STOW-RS part could not be stored", exc_info=result)
                outcomes[i] = await failure(parts[i], PROCESSING_FAILURE, "processing failure")
    finally:
        for part in parts:
            part.discard()  # stored parts were moved away already
    for outcome in outcomes:
        if isinstance(outcome, StoredInstance):
            stored.append(outcome)
        elif outcome is not None:
            failed.append(outcome)


def _identify(content: Any) -> tuple[str, str, str]:
    """SOP Class, SOP Instance and Study UIDs of a part, as far as they can be read (for the response)."""
    from pydicom import dcmread

    path = io.BytesIO(content) if isinstance(content, bytes) else content
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, stop_before_pixels=True, force=True, specific_tags=["SOPClassUID", "SOPInstanceUID",
                                                                                  "StudyInstanceUID"])  # fmt: skip
        return (
            str(ds.get("SOPClassUID", "") or ""),
            str(ds.get("SOPInstanceUID", "") or ""),
            str(ds.get("StudyInstanceUID", "") or ""),
        )
    except Exception:
        return "", "", ""


def _response(store: DicomStore, stored: list[StoredInstance], failed: list[Failure], target: str | None) -> dj.JSON:
    t = dj.tag_of
    body: dj.JSON = {}
    studies = list(dict.fromkeys(s.study_uid for s in stored)) or ([target] if target else [])
    if len(studies) == 1:
        body[t("RetrieveURL")] = dj.element(t("RetrieveURL"), [f"{store.base}/studies/{studies[0]}"], "UR")  # type: ignore[index,arg-type]
    refs = []
    for s in stored:
        url = f"{store.base}/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}"
        refs.append(
            {
                "00081150": {"vr": "UI", "Value": [s.sop_class_uid]},
                "00081155": {"vr": "UI", "Value": [s.sop_uid]},
                "00081190": {"vr": "UR", "Value": [url]},
            }
        )
    fails = []
    for f in failed:
        item: dj.JSON = {}
        if f.sop_class_uid:
            item["00081150"] = {"vr": "UI", "Value": [f.sop_class_uid]}
        if f.sop_uid:
            item["00081155"] = {"vr": "UI", "Value": [f.sop_uid]}
        item["00081197"] = {"vr": "US", "Value": [f.code]}
        fails.append(item)
    body["00081198"] = {"vr": "SQ", "Value": fails} if fails else {"vr": "SQ"}
    body["00081199"] = {"vr": "SQ", "Value": refs} if refs else {"vr": "SQ"}
    return body
