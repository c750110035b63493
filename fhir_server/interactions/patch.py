"""patch: PATCH [base]/[type]/[id] (and PATCH [base]/[type]?criteria) with a JSON Patch document.

The patched resource is validated like any other write. Without If-Match, a patch that loses a race
is re-applied on top of the newer version, so concurrent patches of different elements both land.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_writable
from fhir_server.context import ServerContext, resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import parse_etag, write_response
from fhir_server.interactions.body import validate_or_raise
from fhir_server.interactions.conditional import matched_under_lease
from fhir_server.questionnaire_validation import prefetch as prefetch_questionnaires

JSON_PATCH = "application/json-patch+json"
MAX_RETRIES = 20


async def _patch_document(request: Request, ctx: ServerContext) -> jsonpatch.JsonPatch:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != JSON_PATCH:
        raise FHIRError(
            415,
            f"PATCH needs Content-Type {JSON_PATCH} (FHIRPath Patch is not supported yet)",
            code="not-supported",
        )
    raw = await request.body()
    if len(raw) > ctx.settings.max_body_bytes:
        raise FHIRError(413, "patch document too large", code="too-costly")
    try:
        ops = orjson.loads(raw)
        if not isinstance(ops, list):
            raise ValueError("a JSON Patch document is a JSON array of operations")
        return jsonpatch.JsonPatch(ops)
    except (orjson.JSONDecodeError, ValueError, jsonpatch.JsonPatchException) as exc:
        raise FHIRError(400, f"invalid JSON Patch document: {exc}", code="structure") from None


def _apply(patch: jsonpatch.JsonPatch, resource: dict[str, Any], rtype: str, rid: str) -> dict[str, Any]:
    try:
        patched = patch.apply(resource)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise FHIRError(422, f"the patch cannot be applied: {exc}", code="processing") from None
    if not isinstance(patched, dict) or patched.get("resourceType") != rtype or patched.get("id") != rid:
        raise FHIRError(422, "a patch may not change resourceType or id", code="processing")
    return validate_or_raise(patched, rtype)


async def _patch(request: Request, rtype: str, rid: str) -> Response:
    ctx = server(request)
    patch = await _patch_document(request, ctx)
    client_if_match = parse_etag(request.headers.get("if-match"))
    for _ in range(MAX_RETRIES):
        current = await ctx.store.read(rtype, rid)
        if client_if_match is not None and client_if_match != current.version:
            raise FHIRError(
                412,
                f"If-Match version {client_if_match} is not the current version {current.version}",
                code="conflict",
            )
        check_writable(ctx, request, rtype, current.resource)
        await prefetch_questionnaires(ctx, [current.resource])  # a QuestionnaireResponse's Questionnaire
        patched = _apply(patch, current.resource or {}, rtype, rid)
        check_writable(ctx, request, rtype, patched)
        try:
            version = await ctx.store.write(rtype, rid, patched, if_match=current.version)
        except FHIRError as exc:
            if exc.status == 412 and client_if_match is None:
                continue  # lost a race: re-apply on the newer version
            raise
        return write_response(request, version, ctx.base_url, 200)
    raise FHIRError(503, f"{rtype}/{rid} is under heavy concurrent writes; retry", code="transient")


async def patch(request: Request) -> Response:
    return await _patch(request, resource_type_of(request), resource_id_of(request))


async def conditional_patch(request: Request) -> Response:
    rtype = resource_type_of(request)
    async with matched_under_lease(request, rtype) as rid:
        if rid is None:
            raise FHIRError(404, f"no {rtype} matches the criteria", code="not-found")
        return await _patch(request, rtype, rid)
