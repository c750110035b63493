"""vread: GET [base]/[type]/[id]/_history/[vid]."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_visible
from fhir_server.auth.policy import check_readable
from fhir_server.context import resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, version_headers, wants_pretty
from fhir_server.interactions.read import not_modified


async def vread(request: Request) -> Response:
    ctx = server(request)
    vid = request.path_params["vid"]
    if not vid.isdigit():
        raise FHIRError(404, f"version {vid!r} is not known", code="not-found")
    rtype = resource_type_of(request)
    version = await ctx.store.vread(rtype, resource_id_of(request), int(vid))
    check_visible(ctx, request, rtype, version.resource)
    await check_readable(ctx, request, rtype, version.resource or {})
    headers = version_headers(version, ctx.base_url)
    if not_modified(request, version):
        return fhir_response(None, 304, headers)
    return fhir_response(version.resource, 200, headers, pretty=wants_pretty(request))
