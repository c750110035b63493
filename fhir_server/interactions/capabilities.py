"""capabilities: GET [base]/metadata, a CapabilityStatement built from what the server really does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import FHIR_VERSION, __version__, conformance
from fhir_server.auth.oauth import oauth_base
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

SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
CORE = "http://hl7.org/fhir/OperationDefinition/"
EVERY_TYPE = "Resource"  # in `types`: the operation is declared on every resource type


def ours(definition_id: str) -> str:
    """The canonical URL of one of our OperationDefinitions (profiles/operations/, profiles/teleexpertise/)."""
    return f"{conformance.CANONICAL_BASE}/OperationDefinition/{definition_id}"


@dataclass(frozen=True)
class Operation:
    """One operation the server serves, as /metadata declares it."""

    name: str  # the code, without `$`
    definition: str  # canonical URL of its OperationDefinition
    types: tuple[str, ...] = ()  # the resource types it is invoked on (type or instance level); () = system level


# Every operation app.py routes (tests/test_capabilities_operations.py checks it against the routing table):
# standard ones point to their official definitions, ours to the OperationDefinitions of profiles/.
OPERATIONS: tuple[Operation, ...] = (
    Operation("export", BULK_DATA + "export"),
    Operation("export", BULK_DATA + "patient-export", ("Patient",)),
    Operation("export", BULK_DATA + "group-export", ("Group",)),
    Operation("everything", CORE + "Patient-everything", ("Patient",)),
    Operation("validate", CORE + "Resource-validate", (EVERY_TYPE,)),
    Operation("retrieve", ours("imagingstudy-retrieve"), ("ImagingStudy",)),
    Operation("export-dicom", ours("imagingstudy-export-dicom"), ("ImagingStudy",)),
    Operation("cda", ours("documentreference-cda"), ("DocumentReference",)),
    Operation("from-cda", ours("documentreference-from-cda"), ("DocumentReference",)),
    Operation("send-hl7", ours("send-hl7"), ("DocumentReference", "DiagnosticReport")),
    # Téléexpertise (teleexpertise/routes.py, operations/activity_export.py).
    Operation("activity-export", ours("tlx-activity-export")),
    Operation("send", ours("tlx-servicerequest-send"), ("ServiceRequest",)),
    Operation("readdress", ours("tlx-servicerequest-readdress"), ("ServiceRequest",)),
    Operation("close", ours("tlx-servicerequest-close"), ("ServiceRequest",)),
    Operation("link-imaging", ours("tlx-servicerequest-link-imaging"), ("ServiceRequest",)),
    Operation("candidate-imaging", ours("tlx-servicerequest-candidate-imaging"), ("ServiceRequest",)),
    Operation("worklist", ours("tlx-task-worklist"), ("Task",)),
    Operation("accept", ours("tlx-task-accept"), ("Task",)),
    Operation("request-info", ours("tlx-task-request-info"), ("Task",)),
    Operation("provide-info", ours("tlx-task-provide-info"), ("Task",)),
    Operation("respond", ours("tlx-task-respond"), ("Task",)),
    Operation("close", ours("tlx-task-close"), ("Task",)),
    Operation("refuse", ours("tlx-task-refuse"), ("Task",)),
    Operation("readdress", ours("tlx-task-readdress"), ("Task",)),
)


def _operations(rtype: str | None) -> list[dict[str, str]]:
    """The `operation` list of a resource entry (rtype) or of `rest` (None: system level)."""
    return [
        {"name": op.name, "definition": op.definition}
        for op in OPERATIONS
        if (not op.types if rtype is None else rtype in op.types or EVERY_TYPE in op.types)
    ]


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
        **({"operation": ops} if (ops := _operations(rtype)) else {}),
    }


def _security(ctx: ServerContext) -> dict[str, Any]:
    """SMART App Launch: the service code and the OAuth endpoints (also in .well-known/smart-configuration)."""
    if not ctx.settings.auth_enabled:
        return {"cors": True, "description": "Security is switched off (FHIR_AUTH_ENABLED=false)."}
    base = oauth_base(ctx) + "/oauth/"
    uris = [{"url": name, "valueUri": base + name} for name in ("authorize", "token", "revoke", "introspect")]
    return {
        "cors": True,
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}], "text": "SMART App Launch"}],
        "extension": [{"url": OAUTH_URIS, "extension": uris}],
        "description": "Bearer access tokens (JWT) are required on every request but /metadata; SMART App Launch "
        "(.well-known/smart-configuration) and Backend Services.",
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
        # Bulk Data Access ($export at system, Patient and Group level; jobs/export.py).
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        **({"implementationGuide": ig} if (ig := conformance.registry().implementation_guides()) else {}),
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "security": _security(ctx),
                "resource": [_resource_entry(ctx, t) for t in sorted(R4_RESOURCE_TYPES)],
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "operation": _operations(None),
            }
        ],
    }


async def capabilities(request: Request) -> Response:
    ctx = server(request)
    # Built once per process: it depends only on the registry and the settings. (Starlette's State keeps its
    # attributes in `_state`, not in `__dict__`: read it with getattr.)
    statement = getattr(request.app.state, "capability_statement", None)
    if statement is None:
        statement = request.app.state.capability_statement = _statement_body(ctx)
    return fhir_response(statement, 200, pretty=wants_pretty(request))
