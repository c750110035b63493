"""What a workflow operation answers: the Task it moved (200, with its version headers), or, when it
changed several resources ($send, $readdress, the requérant's $close), a `collection` Bundle of them
(the ServiceRequest first, then the Tasks)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import ServerContext
from fhir_server.http import fhir_response, version_headers, wants_pretty
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.storage.store import StoredVersion


def resource_response(request: Request, ctx: ServerContext, version: StoredVersion) -> Response:
    return fhir_response(version.resource, 200, version_headers(version, ctx.base_url), pretty=wants_pretty(request))


def collection_response(request: Request, ctx: ServerContext, versions: list[StoredVersion]) -> Response:
    order = {"ServiceRequest": 0, "Task": 1}
    ordered = sorted(versions, key=lambda v: (order.get(v.resource_type, 2), v.resource_type, v.id))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": fhir_instant(now_ms()),
        "entry": [
            {"fullUrl": f"{ctx.base_url}/{v.resource_type}/{v.id}", "resource": v.resource}
            for v in ordered
            if v.resource_type in ("ServiceRequest", "Task")
        ],
    }
    return fhir_response(bundle, 200, pretty=wants_pretty(request))
