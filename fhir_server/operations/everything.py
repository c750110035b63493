"""Patient/[id]/$everything: the patient, everything in its compartment, and what those reference.

Used for the DUI's "toutes les données d'une personne" (RGPD access) request. Supports `_since`
(lastUpdated on or after), `_type` (restrict the types) and `_count` with keyset paging: the types
are walked in order (the Patient first), each page also carries the Practitioners, Organizations,
Medications... its resources reference (search mode `include`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import query_items, resource_id_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, wants_pretty
from fhir_server.interactions.history import parse_since
from fhir_server.interactions.search import Scope, run_search
from fhir_server.search.compartments import compartment_filter, compartment_params
from fhir_server.validation import is_known_type


def _types(requested: list[str]) -> list[str]:
    members = set(compartment_params("Patient"))
    if requested:
        unknown = [t for t in requested if not is_known_type(t)]
        if unknown:
            raise FHIRError(400, f"_type: unknown resource type(s) {', '.join(unknown)}", code="invalid")
        types = [t for t in requested if t == "Patient" or t in members]
    else:
        types = sorted(members - {"Patient"})
        types.insert(0, "Patient")
    return types


async def everything(request: Request) -> Response:
    ctx = server(request)
    pid = resource_id_of(request)
    await ctx.store.read("Patient", pid)  # 404 / 410 first
    params = query_items(request)
    since = parse_since(request.query_params.get("_since"))
    requested = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
    types = _types(requested)
    extra: dict[str, dict[str, Any]] = {}
    for rtype in types:
        flt = {"_id": pid} if rtype == "Patient" else compartment_filter("Patient", pid, rtype)
        extra[rtype] = {"$and": [flt, {"lu": {"$gte": since}}]} if since else flt
    allowed = [(k, v) for k, v in params if k in ("_count", "_cursor", "_since", "_type", "_elements", "_summary")]
    scope = Scope(types, f"Patient/{pid}/$everything", extra, all_references=True)
    bundle = await run_search(request, ctx, scope, allowed)
    return fhir_response(bundle, 200, pretty=wants_pretty(request))
