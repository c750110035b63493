"""create: POST [base]/[type], and conditional create with If-None-Exist."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_writable
from fhir_server.context import resource_type_of, server
from fhir_server.http import fhir_response, version_headers, wants_pretty, write_response
from fhir_server.interactions import binary
from fhir_server.interactions.body import incoming_resource
from fhir_server.interactions.conditional import criteria_lease, matching, parse_criteria, single_match
from fhir_server.storage.store import as_version


async def create(request: Request) -> Response:
    ctx = server(request)
    rtype = resource_type_of(request)
    if rtype == "Binary" and binary.is_raw_body(request):
        return await binary.upload(request)  # the content itself, streamed to the blob store
    resource = await incoming_resource(request, rtype)
    # The server assigns the id of a created resource; a client id in the body is ignored.
    resource.pop("id", None)
    check_writable(ctx, request, rtype, resource)
    condition = request.headers.get("if-none-exist")
    if condition is None:
        version = await ctx.store.create(rtype, resource)
        return write_response(request, version, ctx.base_url, 201)
    criteria = parse_criteria(condition)
    async with criteria_lease(ctx, rtype, criteria):
        existing = single_match(await matching(ctx, rtype, criteria), rtype, criteria)
        if existing is None:
            version = await ctx.store.create(rtype, resource)
            return write_response(request, version, ctx.base_url, 201)
    # Already there: 200 with the existing resource, nothing written.
    found = as_version(rtype, existing)
    return fhir_response(
        found.resource, 200, version_headers(found, ctx.base_url, location=True), pretty=wants_pretty(request)
    )
