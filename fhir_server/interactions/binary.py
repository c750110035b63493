"""Binary content outside FHIR JSON: raw uploads and downloads streamed through the blob store (up to 1 GB).

`POST [base]/Binary` and `PUT [base]/Binary/[id]` with a non-FHIR body (`Content-Type` = the content's own
type: application/pdf, video/mp4, ...) stream the body into the blob store (storage/blobs.py) under the
key `binary/<id>/<random>`; no request body is ever whole in memory, and the limit is its own setting
(`max_binary_bytes`, 413 beyond). Only when the blob is complete is the Binary version written, so a
refused, failed or interrupted upload leaves neither a Binary nor a blob, and an upload holds no lease on
any resource while it runs (the dossier it belongs to stays editable). A body whose Content-Type is a FHIR
format (application/fhir+json, application/json...) is a FHIR resource as for any type: a JSON file is
uploaded raw as application/octet-stream. `X-Security-Context` sets Binary.securityContext;
`Content-Disposition: attachment; filename*=UTF-8''...` keeps the original file name.

The JSON representation of such a Binary (our design choice): `data` is absent and `meta.extension`
carries the `binary-storage` extension (STORAGE_EXT) with the blob `key`, `size`, `sha256` (hex), `sha1`
(base64, the encoding of Attachment.hash) and the original `filename` when the client sent one
(`Content-Disposition`). Binary is not a DomainResource, so `meta` is the only place an extension may go.
Each version keeps its own blob, so vread and history of older versions point to their own content.
A FHIR JSON read (`Accept: application/fhir+json` or `_format`) of a blob whose size is at most
`binary_inline_bytes` returns `data` inlined, as clients of small Binaries expect; larger ones are
downloaded raw. Binaries created as FHIR JSON with `data` are stored as before.

`GET [base]/Binary/[id]` (and vread) with an `Accept` that names no FHIR format (`*/*`, the content type,
`video/*`, ...) answers the raw bytes with their Content-Type, Content-Length, ETag and HTTP Range
support (206/416, for video players). Without an `Accept` header the FHIR JSON is served, as for any type.

A client-sent storage extension is never trusted: on a JSON write it is kept only when it names the blob
the current version already has (a metadata-only round trip), and on a read a key outside
`binary/<this id>/` is ignored, so no Binary can be made to serve another one's content.

DocumentReference.content.attachment and DiagnosticReport.presentedForm pointing to `Binary/[id]` get
`size`, `hash` (SHA-1, base64), `contentType` and `title` (the original file name) filled on write when
missing; a size or hash that contradicts the Binary is refused (422).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from fhir_server.context import ServerContext, server
from fhir_server.errors import FHIRError
from fhir_server.http import JSON_FORMATS, XML_FORMATS, http_date, parse_etag, write_response
from fhir_server.storage.blobs import CHUNK, BlobTooLarge
from fhir_server.storage.store import StoredVersion, new_id

STORAGE_EXT = "https://fhir-server.example/fhir/StructureDefinition/binary-storage"
FHIR_FORMATS = JSON_FORMATS | XML_FORMATS
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.IGNORECASE)
_FILENAME = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))', re.IGNORECASE)


# ---- negotiation --------------------------------------------------------------------------------------


def _media(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def is_raw_body(request: Request) -> bool:
    """A write whose body is the content itself, not a FHIR resource (a non-FHIR Content-Type)."""
    ctype = _media(request.headers.get("content-type"))
    return bool(ctype) and ctype not in FHIR_FORMATS


def wants_raw(request: Request) -> bool:
    """A read asking for the content rather than the resource: no `_format`, and an Accept header
    naming no FHIR format (`*/*`, the content type...). No Accept at all keeps FHIR JSON."""
    if request.query_params.get("_format") is not None:
        return False
    accept = request.headers.get("accept")
    if not accept:
        return False
    kinds = {_media(part) for part in accept.split(",")}
    return not kinds & FHIR_FORMATS


# ---- the storage extension ----------------------------------------------------------------------------


def storage_info(resource: dict[str, Any] | None) -> dict[str, Any] | None:
    """{key, size, sha256, sha1, filename} from a Binary's storage extension, or None."""
    for ext in ((resource or {}).get("meta") or {}).get("extension") or []:
        if ext.get("url") != STORAGE_EXT:
            continue
        info: dict[str, Any] = {}
        for sub in ext.get("extension") or []:
            value = next((v for k, v in sub.items() if k.startswith("value")), None)
            if sub.get("url"):
                info[sub["url"]] = value
        return info if isinstance(info.get("key"), str) else None
    return None


def _storage_extension(key: str, size: int, sha256: str, sha1: str, filename: str | None) -> dict[str, Any]:
    parts = [
        {"url": "key", "valueString": key},
        {"url": "size", "valueUnsignedInt": size},
        {"url": "sha256", "valueString": sha256},
        {"url": "sha1", "valueBase64Binary": sha1},
    ]
    if filename:
        parts.append({"url": "filename", "valueString": filename})
    return {"url": STORAGE_EXT, "extension": parts}


def _without_storage(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("extension"), list):
        return resource
    kept = [e for e in meta["extension"] if not (isinstance(e, dict) and e.get("url") == STORAGE_EXT)]
    meta = {k: v for k, v in meta.items() if k != "extension"}
    if kept:
        meta["extension"] = kept
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


def _with_storage(resource: dict[str, Any], ext: dict[str, Any]) -> dict[str, Any]:
    out = _without_storage(resource)
    meta = dict(out.get("meta") or {})
    meta["extension"] = [*(meta.get("extension") or []), ext]
    out["meta"] = meta
    return out


def _own_key(rid: str, info: dict[str, Any] | None) -> str | None:
    """The blob key of a Binary if it is one of this Binary's own blobs (never another's)."""
    key = (info or {}).get("key")
    if isinstance(key, str) and key.startswith(f"binary/{rid}/") and ".." not in key:
        return key
    return None


async def sanitize_json_binary(ctx: ServerContext, request: Request, resource: dict[str, Any]) -> dict[str, Any]:
    """A FHIR JSON write of a Binary: `data` wins; a storage extension is kept only when it names the
    blob of the current version of this same Binary (whose size and hashes are restored from it)."""
    claimed = storage_info(resource)
    if claimed is None:
        return resource
    rid = request.path_params.get("id")
    if "data" in resource or rid is None or _own_key(rid, claimed) is None:
        return _without_storage(resource)
    current = await ctx.store.current("Binary", rid)
    stored = storage_info((current or {}).get("res"))
    if stored is None or stored.get("key") != claimed["key"]:
        return _without_storage(resource)
    return _with_storage(resource, next(e for e in current["res"]["meta"]["extension"] if e["url"] == STORAGE_EXT))


# ---- upload -------------------------------------------------------------------------------------------


def _filename(request: Request) -> str | None:
    disposition = request.headers.get("content-disposition")
    if not disposition:
        return None
    m = _FILENAME_STAR.search(disposition)
    if m:
        try:
            return unquote(m.group(2).strip(), encoding=m.group(1) or "utf-8", errors="strict") or None
        except (LookupError, UnicodeDecodeError):
            pass
    m = _FILENAME.search(disposition)
    if m:
        name = m.group(1) if m.group(1) is not None else m.group(2).strip()
        return re.sub(r"\\(.)", r"\1", name) or None
    return None


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body in blob-store-sized chunks (uvicorn hands ~64 KiB pieces)."""
    buf = bytearray()
    async for part in request.stream():
        if not part:
            continue
        buf += part
        if len(buf) >= CHUNK:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


async def upload(request: Request, rid: str | None = None) -> Response:
    """POST (rid None) or PUT of a Binary whose body is the raw content."""
    from fhir_server.auth.patient_context import check_writable
    from fhir_server.interactions.body import validate_or_raise

    ctx = server(request)
    if ctx.blobs is None:
        raise FHIRError(501, "this server has no blob store for Binary content", code="not-supported")
    limit = ctx.settings.max_binary_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FHIRError(413, f"Binary content larger than {limit} bytes", code="too-costly")
    if rid is None and request.headers.get("if-none-exist") is not None:
        raise FHIRError(400, "If-None-Exist is not supported with a raw Binary body", code="not-supported")
    if_match = parse_etag(request.headers.get("if-match"))
    if if_match is not None and rid is not None:
        current = await ctx.store.current("Binary", rid)
        if current is None or current.get("gone") or current["v"] != if_match:
            raise FHIRError(
                412, f"If-Match version {if_match} is not the current version of Binary/{rid}", code="conflict"
            )
    # Everything that can refuse the write is checked before the body is read (and again when writing).
    shell: dict[str, Any] = {"resourceType": "Binary", "contentType": request.headers["content-type"].strip()}
    context = request.headers.get("x-security-context")
    if context:
        shell["securityContext"] = {"reference": context.strip()}
    validate_or_raise(shell, "Binary")
    creating = rid is None
    rid = rid or new_id()
    shell = {"resourceType": "Binary", "id": rid, **{k: v for k, v in shell.items() if k != "resourceType"}}
    if creating:
        check_writable(ctx, request, "Binary", shell)
    else:
        from fhir_server.interactions.update import _check_confined

        await _check_confined(request, "Binary", rid, shell)

    try:
        version = await store_content(
            ctx, shell, _body(request), filename=_filename(request), creating=creating, if_match=if_match, limit=limit
        )
    except ClientDisconnect:
        raise FHIRError(400, "the upload was interrupted before its end", code="incomplete") from None
    return write_response(request, version, ctx.base_url, 201 if version.created else 200)


async def store_content(
    ctx: ServerContext,
    shell: dict[str, Any],
    chunks: AsyncIterable[bytes],
    *,
    filename: str | None = None,
    creating: bool = True,
    if_match: int | None = None,
    limit: int | None = None,
) -> StoredVersion:
    """Write a version of Binary `shell["id"]` (its contentType, securityContext...) whose content is
    `chunks`, streamed to the blob store. Also for server code (e.g. the compte-rendu PDF): pass
    `shell={"resourceType": "Binary", "id": new_id(), "contentType": "application/pdf"}`.
    On any failure the blob is removed and no version is written."""
    if ctx.blobs is None:
        raise FHIRError(501, "this server has no blob store for Binary content", code="not-supported")
    rid = shell["id"]
    key = f"binary/{rid}/{uuid.uuid4().hex}"
    sha1 = hashlib.sha1(usedforsecurity=False)

    async def hashed() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            sha1.update(chunk)
            yield chunk

    try:
        info = await ctx.blobs.put(key, hashed(), max_bytes=limit)
    except BlobTooLarge:
        raise FHIRError(413, f"Binary content larger than {limit} bytes", code="too-costly") from None
    written = False
    try:
        sha1_b64 = base64.b64encode(sha1.digest()).decode()
        resource = _with_storage(shell, _storage_extension(key, info.size, info.sha256, sha1_b64, filename))
        if creating:
            version = await ctx.store.write("Binary", rid, resource, require_new=True, fresh=True)
        else:
            version = await ctx.store.write("Binary", rid, resource, if_match=if_match)
        written = True
    finally:
        if not written:  # refused (412...) or failed: the blob must not outlive the attempt
            await ctx.blobs.delete(key)
    return version


async def store_bytes(
    ctx: ServerContext,
    content: bytes,
    content_type: str,
    *,
    filename: str | None = None,
    security_context: str | None = None,
) -> StoredVersion:
    """Create a blob-backed Binary from bytes the server made (e.g. the compte-rendu PDF)."""
    shell: dict[str, Any] = {"resourceType": "Binary", "id": new_id(), "contentType": content_type}
    if security_context:
        shell["securityContext"] = {"reference": security_context}

    async def one() -> AsyncIterator[bytes]:
        yield content

    return await store_content(ctx, shell, one(), filename=filename)


# ---- download -----------------------------------------------------------------------------------------


def _byte_range(request: Request, size: int, etag: str, last_modified: str) -> tuple[int, int] | None:
    """The one range [start, end] asked for, None for the whole content; 416 when unsatisfiable.

    Several ranges (multipart/byteranges) and malformed headers get the whole content, as RFC 9110
    allows; an If-Range that no longer matches too."""
    header = request.headers.get("range")
    if not header:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() not in (etag, last_modified):
        return None
    m = _RANGE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    else:
        suffix = int(last)
        start, end = max(0, size - suffix), size - 1
        if suffix == 0:
            start = size  # unsatisfiable
    if start >= size or size == 0:
        raise FHIRError(
            416,
            f"the range {header!r} is outside the {size} bytes",
            code="invalid",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


def _raw_headers(version: StoredVersion, info: dict[str, Any] | None) -> dict[str, str]:
    resource = version.resource or {}
    headers = {
        "ETag": f'W/"{version.version}"',
        "Last-Modified": http_date(version.last_updated),
        "Accept-Ranges": "bytes",
        "Content-Type": str(resource.get("contentType") or "application/octet-stream"),
        # Served from the API's origin: whatever the content, it must not run as a page of that origin.
        "Content-Security-Policy": "sandbox",
    }
    context = (resource.get("securityContext") or {}).get("reference")
    if context:
        headers["X-Security-Context"] = context
    if info and info.get("filename"):
        headers["Content-Disposition"] = f"inline; filename*=UTF-8''{quote(str(info['filename']), safe='')}"
    if info and isinstance(info.get("sha256"), str):
        try:
            digest = base64.b64encode(bytes.fromhex(info["sha256"])).decode()
            headers["Repr-Digest"] = f"sha-256=:{digest}:"
        except ValueError:
            pass
    return headers


async def raw_response(request: Request, ctx: ServerContext, version: StoredVersion) -> Response:
    """The content of one Binary version, whole (200) or one byte range (206)."""
    resource = version.resource or {}
    info = storage_info(resource)
    key = _own_key(version.id, info)
    headers = _raw_headers(version, info if key else None)
    if key is not None and ctx.blobs is not None:
        size = await ctx.blobs.size(key)
        if size is None:
            raise FHIRError(404, f"the content of Binary/{version.id} is not available", code="not-found")
        span = _byte_range(request, size, headers["ETag"], headers["Last-Modified"])
        start, end = span or (0, size - 1)
        headers["Content-Length"] = str(max(0, end - start + 1))
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if size == 0:
            return Response(b"", status, headers)
        return StreamingResponse(ctx.blobs.open(key, start, end + 1), status, headers)
    try:
        data = base64.b64decode(resource.get("data") or "", validate=False)
    except (binascii.Error, ValueError):
        data = b""
    span = _byte_range(request, len(data), headers["ETag"], headers["Last-Modified"])
    if span is None:
        return Response(data, 200, headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start : end + 1], 206, headers)


async def json_representation(ctx: ServerContext, version: StoredVersion) -> dict[str, Any] | None:
    """The Binary as FHIR JSON: a blob small enough (`binary_inline_bytes`) gets its `data` inlined."""
    resource = version.resource
    info = storage_info(resource)
    key = _own_key(version.id, info)
    if resource is None or key is None or ctx.blobs is None or "data" in resource:
        return resource
    size = await ctx.blobs.size(key)
    if size is None or size > ctx.settings.binary_inline_bytes:
        return resource
    data = await ctx.blobs.read_bytes(key)
    return {**resource, "data": base64.b64encode(data).decode()}


# ---- attachments pointing to a Binary ------------------------------------------------------------------

# Where attachments live in the resource types that get size/hash/title completed.
ATTACHMENT_PATHS: dict[str, tuple[str, str | None]] = {
    "DocumentReference": ("content", "attachment"),
    "DiagnosticReport": ("presentedForm", None),
}


def _binary_id(ctx: ServerContext, url: str) -> str | None:
    for prefix in ("Binary/", f"{ctx.base_url}/Binary/"):
        if url.startswith(prefix):
            rid = url[len(prefix) :].split("/", 1)[0]
            return rid or None
    return None


async def _content_facts(ctx: ServerContext, rid: str) -> dict[str, Any] | None:
    """size, hash (SHA-1 base64), contentType and file name of Binary/rid, or None if it is unknown."""
    current = await ctx.store.current("Binary", rid)
    resource = (current or {}).get("res")
    if resource is None:
        return None
    info = storage_info(resource)
    facts: dict[str, Any] = {"contentType": resource.get("contentType")}
    if _own_key(rid, info) is not None and isinstance(info, dict):
        facts.update(size=info.get("size"), hash=info.get("sha1"), title=info.get("filename"))
    elif "data" in resource:
        data = base64.b64decode(resource["data"])
        facts.update(size=len(data), hash=base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode())
    return facts


async def complete_attachments(ctx: ServerContext, resource_type: str, resource: dict[str, Any]) -> None:
    """Fill size, hash, contentType and title of attachments whose url is `Binary/[id]` (in place)."""
    where = ATTACHMENT_PATHS.get(resource_type)
    if where is None:
        return
    outer, inner = where
    for index, item in enumerate(resource.get(outer) or []):
        attachment = item.get(inner) if inner and isinstance(item, dict) else item
        if not isinstance(attachment, dict) or not isinstance(attachment.get("url"), str):
            continue
        rid = _binary_id(ctx, attachment["url"])
        facts = await _content_facts(ctx, rid) if rid else None
        if not facts:
            continue
        path = f"{resource_type}.{outer}[{index}]" + (f".{inner}" if inner else "")
        for field in ("size", "hash"):
            given, actual = attachment.get(field), facts.get(field)
            if given is not None and actual is not None and given != actual:
                raise FHIRError(
                    422,
                    f"{path}.{field} {given!r} does not match the content of Binary/{rid} ({actual!r})",
                    code="business-rule",
                    expression=(f"{path}.{field}",),
                )
        for field in ("contentType", "size", "hash", "title"):
            if attachment.get(field) is None and facts.get(field) is not None:
                attachment[field] = facts[field]
