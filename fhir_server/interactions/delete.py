"""delete: DELETE [base]/[type]/[id], and conditional delete DELETE [base]/[type]?criteria.

A delete writes a new version (a tombstone): later reads answer 410 Gone and history keeps every
version. Deleting what does not exist, or is already deleted, is a success that writes nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_writable, restricted_patient
from fhir_server.context import resource_id_of, resource_type_of, server
from fhir_server.http import fhir_response, parse_etag
from fhir_server.interactions.conditional import matched_under_lease


async def _delete(request: Request, rtype: str, rid: str) -> Response:
    ctx = server(request)
    if restricted_patient(request) is not None:
        current = await ctx.store.current(rtype, rid)
        check_writable(ctx, request, rtype, (current or {}).get("res"))
    version = await ctx.store.delete(rtype, rid, if_match=parse_etag(request.headers.get("if-match")))
    return fhir_response(None, 204, {"ETag": f'W/"{version.version}"'} if version else None)


async def delete(request: Request) -> Response:
    return await _delete(request, resource_type_of(request), resource_id_of(request))


async def conditional_delete(request: Request) -> Response:
    rtype = resource_type_of(request)
    async with matched_under_lease(request, rtype) as rid:
        if rid is None:
            return fhir_response(None, 204)
        return await _delete(request, rtype, rid)
