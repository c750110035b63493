"""The audit trail: one FHIR AuditEvent per interaction, refusal and failed authentication (IHE BALP style).

Written before the response leaves (`fhir_endpoint` awaits it), through the same versioned store as
any resource, so AuditEvents are searchable with an AuditEvent scope. They cannot be updated or
deleted through the API (405, `app.py`). Query strings go into `entity.query` (base64, as BALP asks),
never into the logs.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import ServerContext
from fhir_server.storage.clock import fhir_instant, now_ms

log = logging.getLogger(__name__)

# Route function -> (restful-interaction code, AuditEvent.action).
INTERACTIONS: dict[str, tuple[str, str]] = {
    "read": ("read", "R"),
    "vread": ("vread", "R"),
    "update": ("update", "U"),
    "conditional_update": ("update", "U"),
    "patch": ("patch", "U"),
    "conditional_patch": ("patch", "U"),
    "delete": ("delete", "D"),
    "conditional_delete": ("delete", "D"),
    "create": ("create", "C"),
    "search_type": ("search-type", "E"),
    "search_type_post": ("search-type", "E"),
    "search_compartment": ("search-type", "E"),
    "search_system": ("search-system", "E"),
    "system_history": ("history-system", "R"),
    "type_history": ("history-type", "R"),
    "instance_history": ("history-instance", "R"),
    "bundle": ("transaction", "E"),
    "everything": ("operation", "E"),
}
SUBTYPE_SYSTEM = "http://hl7.org/fhir/restful-interaction"


def _outcome(status: int) -> tuple[str, str]:
    if status < 400:
        return "0", "success"
    if status < 500:
        return "4", f"refused or failed ({status})"
    return "8", f"server error ({status})"


def audit_event(ctx: ServerContext, request: Request, interaction: str, status: int) -> dict[str, Any]:
    code, action = INTERACTIONS.get(interaction, ("operation", "E"))
    outcome, desc = _outcome(status)
    access = getattr(request.state, "access", None)
    client = request.client.host if request.client else "unknown"
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                    "code": "humanuser" if access and access.subject != access.client_id else "dataprocessor",
                }
            ]
        },
        "requestor": True,
        "network": {"address": client, "type": "2"},
    }
    if access is not None:
        agent["who"] = {"identifier": {"value": access.subject}}
        agent["altId"] = access.client_id
    else:
        agent["who"] = {"display": "unauthenticated"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": SUBTYPE_SYSTEM, "code": code}],
        "action": action,
        "recorded": fhir_instant(now_ms()),
        "outcome": outcome,
        "outcomeDesc": desc,
        "agent": [agent],
        "source": {
            "observer": {"display": "fhir-server"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
    }
    entity = _entity(request)
    if entity:
        event["entity"] = [entity]
    return event


def _entity(request: Request) -> dict[str, Any] | None:
    rtype = request.path_params.get("type")
    rid = request.path_params.get("id")
    entity: dict[str, Any] = {}
    if rtype and rid:
        entity["what"] = {"reference": f"{rtype}/{rid}"}
    elif rtype:
        entity["what"] = {"display": rtype}
    query = request.url.query
    if query:
        entity["query"] = base64.b64encode(query.encode()).decode()
    return entity or None


async def record(ctx: ServerContext, request: Request, interaction: str, response: Response) -> None:
    if not ctx.settings.audit_enabled:
        return
    event = audit_event(ctx, request, interaction, response.status_code)
    location = response.headers.get("location")
    if location and "entity" in event:
        event["entity"][0]["what"] = {"reference": "/".join(location.split("/")[-4:-2])}
    await ctx.store.create_immutable("AuditEvent", event)


async def record_login(
    ctx: ServerContext, request: Request, *, client_id: str | None, mode: str, success: bool, reason: str = ""
) -> None:
    """An authentication at the token endpoint (DICOM 110114 User Authentication / 110122 Login)."""
    if not ctx.settings.audit_enabled:
        return
    event = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110114",
            "display": "User Authentication",
        },
        "subtype": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110122", "display": "Login"}],
        "action": "E",
        "recorded": fhir_instant(now_ms()),
        "outcome": "0" if success else "4",
        "outcomeDesc": f"{mode}: {'success' if success else reason or 'refused'}",
        "agent": [
            {
                "who": {"identifier": {"value": client_id}} if client_id else {"display": "unknown client"},
                "altId": client_id,
                "requestor": True,
                "network": {"address": request.client.host if request.client else "unknown", "type": "2"},
            }
        ],
        "source": {
            "observer": {"display": "fhir-server"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
    }
    if not client_id:
        del event["agent"][0]["altId"]
    await ctx.store.create_immutable("AuditEvent", event)


async def purge_expired(ctx: ServerContext) -> int:
    """Remove AuditEvents older than the retention period (a server task; the API cannot delete them)."""
    from datetime import timedelta

    cutoff = now_ms() - timedelta(days=ctx.settings.audit_retention_days)
    removed = await ctx.database.resources("AuditEvent").delete_many({"lu": {"$lt": cutoff}})
    await ctx.database.history.delete_many({"t": "AuditEvent", "lu": {"$lt": cutoff}})
    return removed.deleted_count
