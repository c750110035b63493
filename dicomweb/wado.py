"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, rendered images and thumbnails.

Instances leave as `multipart/related; type="application/dicom"`, one part per instance, each streamed
from its blob in chunks (a study is never whole in memory); an instance that must be converted to the
negotiated transfer syntax (negotiation.py, transcode.py) is converted alone. Frames of uncompressed
or encapsulated pixel data are byte ranges of the blob, found with the frame map made at ingest;
decoding happens only when the client wants uncompressed frames of compressed data, or a rendering.
"""

from __future__ import annotations

import asyncio
import io
import re
import warnings
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb import dicom_json as dj
from dicomweb import web_audit
from dicomweb.multipart import Part, content_type, new_boundary, one, write_parts
from dicomweb.negotiation import (
    EXPLICIT_LE,
    IMPLICIT_LE,
    FrameChoice,
    NotAcceptable,
    choose_syntax,
    dicom_choices,
    frame_choice,
    parse_accept,
    rendered_choice,
)
from dicomweb.rendering import RenderError, parse_options, render
from dicomweb.security import check_study_visible
from dicomweb.store import DicomStore, InstanceRef
from dicomweb.transcode import TranscodeError, transcode
from fhir_server.errors import FHIRError

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
DICOM_JSON = "application/dicom+json"


def store_of(request: Request) -> DicomStore:
    return request.app.state.dicom


def uid_param(request: Request, name: str) -> str | None:
    value = request.path_params.get(name)
    if value is None:
        return None
    if len(value) > 64 or not UID_RE.match(value):
        raise FHIRError(400, f"{value[:80]!r} is not a valid UID", code="invalid")
    return value


def not_acceptable(message: str) -> FHIRError:
    return FHIRError(406, message, code="not-supported")


async def _audit(request: Request, kind: str, study: str) -> None:
    doc = await store_of(request).study_doc(study)
    patients = [doc["pid"]] if doc and doc.get("pid") else []
    await web_audit.record(request, kind, studies=[study], patients=patients)


# ---- instances -------------------------------------------------------------------------------------


async def retrieve(request: Request) -> Response:
    """GET /studies/{study}[/series/{series}[/instances/{instance}]]: the instances, as stored or converted."""
    store = store_of(request)
    study, series, sop = uid_param(request, "study"), uid_param(request, "series"), uid_param(request, "instance")
    assert study is not None
    await check_study_visible(request, study)
    refs = await store.instances(study, series, sop)
    if not refs:
        raise FHIRError(404, "no such study, series or instance", code="not-found")
    choices = dicom_choices(parse_accept(request.headers.get("accept")))
    if not choices:
        raise not_acceptable('instances are served as multipart/related; type="application/dicom"')
    plan: list[tuple[InstanceRef, str]] = []
    refused: set[str] = set()
    for ref in refs:
        ts = choose_syntax(ref.transfer_syntax_uid, choices)
        if ts is None:
            refused.add(ref.transfer_syntax_uid)
        else:
            plan.append((ref, ts))
    if refused:
        raise not_acceptable(
            f"stored transfer syntax(es) {', '.join(sorted(refused))} cannot be converted to an acceptable one "
            "(add transfer-syntax=* to the Accept header to get them as stored)"
        )
    await _audit(request, "export", study)
    boundary = new_boundary()
    syntaxes = {ts for _, ts in plan}
    params = {"transfer_syntax": next(iter(syntaxes))} if len(syntaxes) == 1 else {}

    async def parts() -> AsyncIterator[Part]:
        for ref, ts in plan:
            headers = {"Content-Type": f"application/dicom; transfer-syntax={ts}"}
            if ts == ref.transfer_syntax_uid:
                headers["Content-Length"] = str(ref.size)
                yield Part(headers, store.read_instance(ref))
            else:
                data = await store.read_bytes(ref.blob_key)
                try:
                    converted = await asyncio.to_thread(transcode, data, ts)
                except TranscodeError:
                    # Decoding failed after negotiation (corrupt pixel data): send the instance as stored
                    # rather than cut the stream; its part says which syntax it is in.
                    headers["Content-Type"] = f"application/dicom; transfer-syntax={ref.transfer_syntax_uid}"
                    converted = data
                headers["Content-Length"] = str(len(converted))
                yield Part(headers, one(converted))

    return StreamingResponse(
        write_parts(parts(), boundary), media_type=content_type("application/dicom", boundary, **params)
    )


# ---- metadata --------------------------------------------------------------------------------------


def _json_ok(request: Request) -> None:
    for r in parse_accept(request.headers.get("accept")):
        media = r.part_type if r.type == "multipart/related" else r.type
        if media in (DICOM_JSON, "application/json", "*/*", "application/*", ""):
            return
    raise not_acceptable("metadata and query results are served as application/dicom+json")


async def metadata(request: Request) -> Response:
    """GET …/metadata: the DICOM JSON of each instance, streamed as one JSON array."""
    _json_ok(request)
    store = store_of(request)
    study, series, sop = uid_param(request, "study"), uid_param(request, "series"), uid_param(request, "instance")
    assert study is not None
    await check_study_visible(request, study)
    items = store.metadata(study, series, sop)
    first = await anext(items, None)
    if first is None:
        raise FHIRError(404, "no such study, series or instance", code="not-found")
    await _audit(request, "accessed", study)

    async def body() -> AsyncIterator[bytes]:
        yield b"[" + orjson.dumps(first)
        async for item in items:
            yield b"," + orjson.dumps(item)
        yield b"]"

    return StreamingResponse(body(), media_type=DICOM_JSON)


# ---- frames ----------------------------------------------------------------------------------------


async def _instance(request: Request) -> dict[str, Any]:
    study, series, sop = uid_param(request, "study"), uid_param(request, "series"), uid_param(request, "instance")
    assert study is not None and series is not None and sop is not None
    await check_study_visible(request, study)
    doc = await store_of(request).instance_doc(study, series, sop)
    if doc is None:
        raise FHIRError(404, "no such instance", code="not-found")
    return doc


def _frame_numbers(request: Request, doc: dict[str, Any]) -> list[int]:
    raw = request.path_params.get("frames", "")
    try:
        numbers = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise FHIRError(400, f"{raw[:40]!r} is not a comma-separated list of frame numbers", code="invalid") from None
    if not numbers:
        raise FHIRError(400, "no frame number given", code="invalid")
    if "7FE00010" not in (doc.get("bulk") or {}):
        raise FHIRError(404, "the instance has no pixel data", code="not-found")
    for n in numbers:
        if not 1 <= n <= doc.get("frames", 1):
            raise FHIRError(
                404, f"frame {n} does not exist (the instance has {doc.get('frames', 1)})", code="not-found"
            )
    return numbers


async def frames(request: Request) -> Response:
    """GET …/frames/{list}: uncompressed frames (octet-stream) or compressed ones as stored."""
    doc = await _instance(request)
    numbers = _frame_numbers(request, doc)
    try:
        choice = frame_choice(doc["ts"], parse_accept(request.headers.get("accept")))
    except NotAcceptable as exc:
        raise not_acceptable(str(exc)) from None
    store = store_of(request)
    await _audit(request, "accessed", doc["study"])
    boundary = new_boundary()

    async def parts() -> AsyncIterator[Part]:
        for n in numbers:
            headers = {"Content-Type": f"{choice.media_type}; transfer-syntax={choice.transfer_syntax}"}
            yield Part(headers, frame_body(store, doc, n, choice))

    return StreamingResponse(
        write_parts(parts(), boundary),
        media_type=content_type(choice.media_type, boundary, transfer_syntax=choice.transfer_syntax),
    )


async def frame_body(store: DicomStore, doc: dict[str, Any], number: int, choice: FrameChoice) -> AsyncIterator[bytes]:
    px = doc.get("px") or {}
    if choice.raw and doc["ts"] in (EXPLICIT_LE, IMPLICIT_LE) and px.get("fsize"):
        async for chunk in store.read_range(doc["blob"], px["off"] + (number - 1) * px["fsize"], px["fsize"]):
            yield chunk
        return
    if not choice.raw and px.get("enc") and px.get("frames"):
        fragments = px["frames"][number - 1]
        for offset, length in zip(fragments["o"], fragments["n"], strict=True):
            async for chunk in store.read_range(doc["blob"], offset, length):
                yield chunk
        return
    data = await _source(store, doc)
    yield await asyncio.to_thread(_decoded_frame if choice.raw else _encapsulated_frame, data, number - 1, doc)


async def _source(store: DicomStore, doc: dict[str, Any]) -> Any:
    path = store.local_path(doc["blob"])
    return path if path is not None else await store.read_bytes(doc["blob"])


def _decoded_frame(source: Any, index: int, doc: dict[str, Any]) -> bytes:
    """One frame decoded with pydicom, as little-endian bytes (bit-packed for 1-bit data)."""
    from pydicom import dcmread
    from pydicom.pixels import pack_bits, pixel_array

    src = source if not isinstance(source, bytes) else io.BytesIO(source)
    bits = dj.integer(doc.get("attrs") or {}, dj.T["BitsAllocated"]) or 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = pixel_array(src, index=index)
        except Exception:  # e.g. a deflated data set: decode it whole
            if isinstance(src, io.BytesIO):
                src.seek(0)
            try:
                arr = dcmread(src).pixel_array
            except Exception as exc:
                raise FHIRError(501, f"the frame cannot be decoded here: {exc}", code="not-supported") from None
            if doc.get("frames", 1) > 1:
                arr = arr[index]
    if bits == 1:
        return bytes(pack_bits(arr))
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).tobytes()


def _encapsulated_frame(source: Any, index: int, doc: dict[str, Any]) -> bytes:
    """A compressed frame whose fragments could not be mapped at ingest: pydicom finds it."""
    from pydicom import dcmread
    from pydicom.encaps import generate_frames

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(source if not isinstance(source, bytes) else io.BytesIO(source))
        for i, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=doc.get("frames", 1))):
            if i == index:
                return frame
    raise FHIRError(404, f"frame {index + 1} not found in the pixel data", code="not-found")


# ---- bulk data -------------------------------------------------------------------------------------


async def bulkdata(request: Request) -> Response:
    """GET …/bulkdata/{path}: a bulk value named by a BulkDataURI of the metadata."""
    doc = await _instance(request)
    path = request.path_params["path"]
    bulk = doc.get("bulk") or {}
    if path not in bulk:
        raise FHIRError(404, f"no bulk data at {path}", code="not-found")
    store = store_of(request)
    await _audit(request, "accessed", doc["study"])
    boundary = new_boundary()
    where = bulk[path]
    px = doc.get("px") or {}
    if path == "7FE00010" and px.get("enc"):
        # Encapsulated pixel data: its frames, compressed as stored.
        from dicomweb.negotiation import FRAME_MEDIA_TYPES

        media = FRAME_MEDIA_TYPES.get(doc["ts"], "application/octet-stream")
        choice = FrameChoice(False, media, doc["ts"])

        async def frame_parts() -> AsyncIterator[Part]:
            for n in range(1, doc.get("frames", 1) + 1):
                yield Part({"Content-Type": f"{media}; transfer-syntax={doc['ts']}"}, frame_body(store, doc, n, choice))

        return StreamingResponse(write_parts(frame_parts(), boundary), media_type=content_type(media, boundary))
    if where is not None and where[1] >= 0:
        body: AsyncIterator[bytes] = store.read_range(doc["blob"], where[0], where[1])
        length = where[1]
    else:
        value = await asyncio.to_thread(_value_at, await _source(store, doc), path)
        body, length = one(value), len(value)
    part = Part({"Content-Type": "application/octet-stream", "Content-Length": str(length)}, body)

    async def single() -> AsyncIterator[Part]:
        yield part

    return StreamingResponse(
        write_parts(single(), boundary), media_type=content_type("application/octet-stream", boundary)
    )


def _value_at(source: Any, path: str) -> bytes:
    from pydicom import dcmread

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node: Any = dcmread(source if not isinstance(source, bytes) else io.BytesIO(source))
        parts = path.split("/")
        try:
            for i in range(0, len(parts) - 1, 2):
                node = node[int(parts[i], 16)].value[int(parts[i + 1])]
            value = node[int(parts[-1], 16)].value
        except (KeyError, IndexError, ValueError):
            raise FHIRError(404, f"no bulk data at {path}", code="not-found") from None
    return bytes(value) if isinstance(value, bytes | bytearray) else bytes(str(value), "utf-8")


# ---- rendered ----------------------------------------------------------------------------------------


async def rendered(request: Request) -> Response:
    """GET …/instances/{i}/rendered, …/frames/{n}/rendered and …/thumbnail: JPEG or PNG."""
    doc = await _instance(request)
    thumbnail = request.url.path.endswith("/thumbnail")
    if "frames" in request.path_params:
        numbers = _frame_numbers(request, doc)
        if len(numbers) != 1:
            raise FHIRError(400, "rendered frames are requested one at a time", code="invalid")
        frame = numbers[0] - 1
    else:
        if "7FE00010" not in (doc.get("bulk") or {}):
            raise FHIRError(404, "the instance has no pixel data to render", code="not-found")
        frame = 0
    accept = request.query_params.get("accept") or request.headers.get("accept")
    try:
        media = rendered_choice(parse_accept(accept))
    except NotAcceptable as exc:
        raise not_acceptable(str(exc)) from None
    params = dict(request.query_params)
    if thumbnail and "viewport" not in params:
        params["viewport"] = "128,128"
    store = store_of(request)
    try:
        options = parse_options(params, media)
    except RenderError as exc:
        raise FHIRError(400, str(exc), code="invalid") from None
    try:
        image = await asyncio.to_thread(render, await _source(store, doc), frame, options)
    except RenderError as exc:
        raise FHIRError(501, str(exc), code="not-supported") from None
    await _audit(request, "accessed", doc["study"])
    return Response(image, media_type=media, headers={"Cache-Control": "private, no-store"})
