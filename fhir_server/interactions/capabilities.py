"""capabilities: GET [base]/metadata, a CapabilityStatement built from what the server really does."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import FHIR_VERSION, __version__, conformance
from fhir_server.context import ServerContext, server
from fhir_server.http import fhir_response, wants_pretty
from fhir_server.storage.store import fhir_instant, now_ms
from fhir_server.validation import R4_RESOURCE_TYPES

TYPE_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
SYSTEM_INTERACTIONS = ["history-system", "search-system"]


def _resource_entry(ctx: ServerContext, rtype: str) -> dict[str, Any]:
    params = ctx.registry.params_for(rtype)
    # Our profiles of this type (profiles/, conformance.py): validated on write when claimed.
    supported = {"supportedProfile": p} if (p := conformance.registry().profiles_by_type().get(rtype)) else {}
    return {
        "type": rtype,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        **supported,
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical"],
        "searchParam": [
            {"name": p.code, "definition": p.url, "type": p.type}
            for p in sorted(params.values(), key=lambda p: p.code)
            if p.type != "special"
        ],
    }


def _statement_body(ctx: ServerContext) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir_instant(now_ms()),
        "publisher": "fhir-server",
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "fhir-server FHIR R4 endpoint", "url": ctx.base_url},
        "fhirVersion": FHIR_VERSION,
        **({"implementationGuide": ig} if (ig := conformance.registry().implementation_guides()) else {}),
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": True,
                    "description": "Bearer access tokens (JWT) are required on every request but /metadata.",
                },
                "resource": [_resource_entry(ctx, t) for t in sorted(R4_RESOURCE_TYPES)],
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }


async def capabilities(request: Request) -> Response:
    ctx = server(request)
    # Built once per process: it depends only on the registry and the settings.
    statement = request.app.state.__dict__.get("capability_statement")
    if statement is None:
        statement = request.app.state.capability_statement = _statement_body(ctx)
    return fhir_response(statement, 200, pretty=wants_pretty(request))
