"""update: PUT [base]/[type]/[id] (update-as-create with a client id), and conditional update
PUT [base]/[type]?criteria."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_writable, restricted_patient
from fhir_server.context import query_items, resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import parse_etag, write_response
from fhir_server.interactions import binary
from fhir_server.interactions.body import check_body_id, incoming_resource
from fhir_server.interactions.conditional import criteria_lease, matching, parse_criteria, single_match
from fhir_server.storage.store import new_id


async def update(request: Request) -> Response:
    ctx = server(request)
    rtype, rid = resource_type_of(request), resource_id_of(request)
    if rtype == "Binary" and binary.is_raw_body(request):
        return await binary.upload(request, rid)  # the content itself, streamed to the blob store
    resource = await incoming_resource(request, rtype)
    check_body_id(resource, rid)
    await _check_confined(request, rtype, rid, resource)
    if_match = parse_etag(request.headers.get("if-match"))
    version = await ctx.store.write(rtype, rid, resource, if_match=if_match)
    return write_response(request, version, ctx.base_url, 201 if version.created else 200)


async def _check_confined(request: Request, rtype: str, rid: str, resource: dict) -> None:
    """A patient-context token updates only inside its compartment, before and after the update."""
    if restricted_patient(request) is None:
        return
    ctx = server(request)
    current = await ctx.store.current(rtype, rid)
    if current is not None and current.get("res") is not None:
        check_writable(ctx, request, rtype, current["res"])
    check_writable(ctx, request, rtype, resource)


async def conditional_update(request: Request) -> Response:
    ctx = server(request)
    rtype = resource_type_of(request)
    criteria = parse_criteria(query_items(request))
    resource = await incoming_resource(request, rtype)
    if_match = parse_etag(request.headers.get("if-match"))
    async with criteria_lease(ctx, rtype, criteria):
        existing = single_match(await matching(ctx, rtype, criteria), rtype, criteria)
        if existing is None:
            # No match: create, with the body's id if it has one (FHIR R4 conditional update).
            rid = resource.get("id") or new_id()
            resource["id"] = rid
            check_writable(ctx, request, rtype, resource)
            if if_match is not None:
                raise FHIRError(412, "If-Match given but no resource matches the criteria", code="conflict")
            version = await ctx.store.write(rtype, rid, resource, require_new=True)
            return write_response(request, version, ctx.base_url, 201)
        rid = existing["_id"]
        if "id" in resource and resource["id"] != rid:
            raise FHIRError(
                400,
                f"the resource id {resource['id']!r} is not the id {rid!r} of the matching resource",
                code="invalid",
                expression=(f"{rtype}.id",),
            )
        resource["id"] = rid
        await _check_confined(request, rtype, rid, resource)
        version = await ctx.store.write(rtype, rid, resource, if_match=if_match)
    return write_response(request, version, ctx.base_url, 200)
