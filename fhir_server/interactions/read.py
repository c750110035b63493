"""read: GET [base]/[type]/[id], with If-None-Match / If-Modified-Since (304)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_visible
from fhir_server.auth.policy import check_readable
from fhir_server.auth.scope_queries import check_matches
from fhir_server.context import ServerContext, resource_id_of, resource_type_of, server
from fhir_server.http import fhir_response, parse_etag, parse_http_date, version_headers, wants_pretty
from fhir_server.storage.store import StoredVersion


def not_modified(request: Request, version: StoredVersion) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        if "*" in tags:
            return True
        return any(_etag_version(t) == version.version for t in tags)
    ims = request.headers.get("if-modified-since")
    if ims is not None:
        since = parse_http_date(ims)
        # HTTP dates have second precision: compare at that precision.
        return since is not None and version.last_updated.replace(microsecond=0) <= since
    return False


def _etag_version(tag: str) -> int | None:
    try:
        return parse_etag(tag)
    except Exception:
        return None


async def respond_with_version(request: Request, ctx: ServerContext, version: StoredVersion) -> Response:
    """A read or vread answer: access checks, then 304 or the resource with its versioning headers."""
    check_visible(ctx, request, version.resource_type, version.resource)
    await check_matches(ctx, request, version.resource_type, version.id)  # SMART v2 `?` scopes (read only)
    await check_readable(ctx, request, version.resource_type, version.resource or {})
    headers = version_headers(version, ctx.base_url)
    if not_modified(request, version):
        return fhir_response(None, 304, headers)
    if version.resource_type == "Binary":
        from fhir_server.interactions import binary

        if binary.wants_raw(request):
            return await binary.raw_response(request, ctx, version)  # the content, not the resource
        return fhir_response(await binary.json_representation(ctx, version), 200, headers, pretty=wants_pretty(request))
    return fhir_response(version.resource, 200, headers, pretty=wants_pretty(request))


async def read(request: Request) -> Response:
    ctx = server(request)
    version = await ctx.store.read(resource_type_of(request), resource_id_of(request))
    return await respond_with_version(request, ctx, version)
