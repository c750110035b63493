"""What every interaction needs from HTTP: FHIR JSON bodies in and out, and the versioning headers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import FHIRError, OutcomeIssue, operation_outcome
from fhir_server.storage.store import StoredVersion

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
XML_FORMATS = {"xml", "application/xml", "application/fhir+xml", "application/xml+fhir", "text/xml"}
_ETAG = re.compile(r'^\s*(?:W/)?"?([^"]*)"?\s*$')


def wants_pretty(request: Request) -> bool:
    return request.query_params.get("_pretty", "").lower() == "true"


def check_format(request: Request) -> None:
    """Answer JSON, or refuse with 406 when the client asks for a format we do not produce."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        base = fmt.split(";")[0].strip().lower()
        if base in JSON_FORMATS:
            return
        raise FHIRError(406, f"_format {fmt!r} is not supported: this server speaks JSON", code="not-supported")
    accept = request.headers.get("accept", "")
    if not accept:
        return
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if kinds & (JSON_FORMATS | {"*/*", "application/*"}) or not kinds & XML_FORMATS:
        return
    raise FHIRError(406, f"Accept {accept!r}: this server produces application/fhir+json", code="not-supported")


def dumps(body: Any, pretty: bool = False) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)


def fhir_response(
    body: Any | None, status: int = 200, headers: dict[str, str] | None = None, *, pretty: bool = False
) -> Response:
    content = b"" if body is None else dumps(body, pretty)
    media = None if body is None else FHIR_JSON + "; charset=utf-8"
    return Response(content, status_code=status, headers=headers, media_type=media)


def outcome_response(error: FHIRError, pretty: bool = False) -> Response:
    return fhir_response(error.outcome(), error.status, error.headers or None, pretty=pretty)


def http_date(t: datetime) -> str:
    return format_datetime(t.astimezone(UTC), usegmt=True)


def version_headers(version: StoredVersion, base_url: str, *, location: bool = False) -> dict[str, str]:
    headers = {"ETag": f'W/"{version.version}"', "Last-Modified": http_date(version.last_updated)}
    if location:
        path = f"{version.resource_type}/{version.id}/_history/{version.version}"
        headers["Location"] = f"{base_url}/{path}"
        headers["Content-Location"] = headers["Location"]
    return headers


async def read_limited_body(request: Request, max_bytes: int) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to exceed `max_bytes` (from
    Content-Length, or while streaming a chunked body): never more than the limit in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FHIRError(413, f"request body larger than {max_bytes} bytes", code="too-costly")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise FHIRError(413, f"request body larger than {max_bytes} bytes", code="too-costly")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_resource_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413/415 OperationOutcome."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype in XML_FORMATS:
        raise FHIRError(415, "XML bodies are not supported: send application/fhir+json", code="not-supported")
    raw = await read_limited_body(request, max_bytes)
    if not raw.strip():
        raise FHIRError(400, "the request has no body", code="invalid")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FHIRError(400, f"the body is not valid JSON: {exc}", code="structure") from None
    if not isinstance(body, dict):
        raise FHIRError(400, "the body must be a JSON object (a FHIR resource)", code="structure")
    return body


def parse_etag(value: str | None) -> int | None:
    """`W/"3"` -> 3. A malformed If-Match is the client's error (400), not a silent mismatch."""
    if value is None:
        return None
    m = _ETAG.match(value)
    if not m or not m.group(1).isdigit():
        raise FHIRError(400, f'malformed ETag {value!r}: expected W/"<versionId>"', code="invalid")
    return int(m.group(1))


def parse_http_date(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def prefer_return(request: Request) -> str:
    prefer = request.headers.get("prefer", "")
    for part in prefer.split(","):
        key, _, val = part.strip().partition("=")
        if key.strip().lower() == "return":
            return val.strip().strip('"').lower()
    return "representation"


def prefer_handling(request: Request) -> str:
    prefer = request.headers.get("prefer", "")
    for part in prefer.split(","):
        key, _, val = part.strip().partition("=")
        if key.strip().lower() == "handling":
            return val.strip().strip('"').lower()
    return "lenient"


def write_response(
    request: Request,
    version: StoredVersion,
    base_url: str,
    status: int,
    issues: list[OutcomeIssue] | None = None,
) -> Response:
    """Answer a create/update/patch according to `Prefer: return=`."""
    headers = version_headers(version, base_url, location=True)
    pretty = wants_pretty(request)
    mode = prefer_return(request)
    if mode == "minimal":
        return fhir_response(None, status, headers)
    if mode == "operationoutcome":
        verb = "created" if status == 201 else "updated"
        info = OutcomeIssue("information", "informational", f"{version.resource_type}/{version.id} {verb}")
        return fhir_response(operation_outcome([info, *(issues or [])]), status, headers, pretty=pretty)
    return fhir_response(version.resource, status, headers, pretty=pretty)
