"""The audit trail: one FHIR AuditEvent per interaction, refusal and failed authentication (IHE BALP style).

Durable before the response leaves: `fhir_endpoint` awaits one insert of the finished AuditEvent (id
and meta already stamped) into the `audit_queue` collection. `AuditTrail` then writes queued events as
ordinary resources (the `AuditEvent` collection with their search index, and `history`) in batches in
the background, and every request that may read AuditEvents (their type, system-level search and
history, `$everything`, exports) first drains the queue, so a reader always sees the events of the
requests that answered before it. Materialising is idempotent (fixed ids; a duplicate key means
"already written"), so two instances draining together, or a crash between the writes and the
queue removal, lose nothing and duplicate nothing. AuditEvents are searchable with an AuditEvent
scope and cannot be updated or deleted through the API (405, `app.py`). Query strings go into
`entity.query` (base64, as BALP asks), never into the logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from pymongo.errors import BulkWriteError
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.aio import wait_event
from fhir_server.context import ServerContext
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.storage.store import history_id, new_id, stamp

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
    await _add_structures(ctx, request, event)
    location = response.headers.get("location")
    if location and "entity" in event:
        event["entity"][0]["what"] = {"reference": "/".join(location.split("/")[-4:-2])}
    await write(ctx, event)


async def _add_structures(ctx: ServerContext, request: Request, event: dict[str, Any]) -> None:
    """The acting user's téléexpertise structures as agents, so that a local administrator finds the
    events of their structure (auth/policy.py). Nothing is resolved for a token that is not a
    practitioner's, and the request's own resolution of the user is reused."""
    try:
        from fhir_server.auth.policy import acting_structures

        structures = await acting_structures(ctx, request)
    except Exception:
        log.exception("the acting user's structure could not be resolved for the audit trail")
        return
    event["agent"] += [structure_agent(s) for s in structures]


def structure_agent(structure: str) -> dict[str, Any]:
    """An agent naming the acting user's structure (Organization/…), not the requestor."""
    return {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "PROV"}]},
        "who": {"reference": structure},
        "requestor": False,
    }


async def _user_structures(ctx: ServerContext, user: str | None) -> list[str]:
    """The téléexpertise structures of a practitioner who logs in (one indexed query; logins are rare)."""
    if not user or not user.startswith("Practitioner/"):
        return []
    try:
        from fhir_server.teleexpertise.directory import resolve_principal

        principal = await resolve_principal(ctx, user)
    except Exception:
        log.exception("the structure of a user logging in could not be resolved for the audit trail")
        return []
    return sorted({m.structure for m in principal.memberships if m.structure}) if principal else []


async def write(ctx: ServerContext, event: dict[str, Any]) -> None:
    """Make one AuditEvent durable: queued when the server runs its AuditTrail, else written at once."""
    if ctx.audit is not None:
        await ctx.audit.append(event)
    else:
        await ctx.store.create_immutable("AuditEvent", event)


async def record_login(
    ctx: ServerContext,
    request: Request,
    *,
    client_id: str | None,
    mode: str,
    success: bool,
    reason: str = "",
    user: str | None = None,
) -> None:
    """An authentication (DICOM 110114 User Authentication / 110122 Login): at the token endpoint (the
    client authenticates) or an end user's login (`user` = Practitioner/…, Patient/…: who logged in)."""
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
                "who": {"reference": user}
                if user
                else {"identifier": {"value": client_id}}
                if client_id
                else {"display": "unknown client"},
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
    event["agent"] += [structure_agent(s) for s in await _user_structures(ctx, user)]
    await write(ctx, event)


QUEUE = "audit_queue"
# Routes that may return AuditEvents without naming the type in their path.
READS_ANY_TYPE = {"search_system", "system_history", "everything", "export_system", "export_patients", "export_group"}


class AuditTrail:
    """The queue in front of the AuditEvent collection (see the module docstring)."""

    def __init__(self, ctx: ServerContext, batch: int = 500, delay: float = 0.2) -> None:
        self.ctx = ctx
        self.queue = ctx.database.db[QUEUE]
        self.batch = batch
        self.delay = delay  # lets a burst of requests share one batch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def append(self, event: dict[str, Any]) -> None:
        lu = now_ms()
        rid = new_id()
        await self.queue.insert_one({"_id": rid, "lu": lu, "res": stamp(event, rid, 1, lu)})
        self._wake.set()

    async def drain(self) -> int:
        """Materialise every queued event; returns how many this call wrote."""
        written = 0
        async with self._lock:
            while docs := await self.queue.find({}, limit=self.batch).to_list(None):
                await self._materialise(docs)
                await self.queue.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
                written += len(docs)
        return written

    async def _materialise(self, docs: list[dict[str, Any]]) -> None:
        store = self.ctx.store
        await store.database.ensure_type_indexes("AuditEvent")
        history = [
            {"_id": history_id("AuditEvent", d["_id"], 1), "t": "AuditEvent", "id": d["_id"], "v": 1, "lu": d["lu"]}
            | {"op": "create", "res": d["res"]}
            for d in docs
        ]
        current = [
            {"_id": d["_id"], "v": 1, "lu": d["lu"], "res": d["res"], "i": store.index_fn(d["res"])} for d in docs
        ]
        await asyncio.gather(
            _insert_new(store.database.history, history), _insert_new(store.database.resources("AuditEvent"), current)
        )

    async def loop(self) -> None:
        while True:
            await wait_event(self._wake, 5.0)  # 5 s: events queued by other instances
            self._wake.clear()
            await asyncio.sleep(self.delay)
            try:
                await self.drain()
            except Exception:
                log.exception("audit queue drain failed; retrying")
                await asyncio.sleep(1.0)


async def _insert_new(collection: Any, docs: list[dict[str, Any]]) -> None:
    """Insert, treating documents already present (an earlier, interrupted drain) as written."""
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
            raise


async def before_read(ctx: ServerContext, request: Request, interaction: str) -> None:
    """Drain the queue before a request that may read AuditEvents."""
    if ctx.audit is None:
        return
    if request.path_params.get("type") == "AuditEvent" or interaction in READS_ANY_TYPE:
        await ctx.audit.drain()


async def purge_expired(ctx: ServerContext) -> int:
    """Remove AuditEvents older than the retention period (a server task; the API cannot delete them)."""
    from datetime import timedelta

    now = now_ms()
    cutoff = now - timedelta(days=ctx.settings.audit_retention_days)
    # Logins stay longer (monthly active users over 18 months, teleexpertise/activity.py).
    login_days = max(ctx.settings.audit_retention_days, ctx.settings.login_audit_retention_days)
    login_cutoff = now - timedelta(days=login_days)
    removed = 0
    for flt in ({"lu": {"$lt": cutoff}, "res.type.code": {"$ne": "110114"}}, {"lu": {"$lt": login_cutoff}}):
        removed += (await ctx.database.resources("AuditEvent").delete_many(flt)).deleted_count
        await ctx.database.history.delete_many({"t": "AuditEvent", **flt})
    return removed


async def record_hl7(
    ctx: ServerContext,
    *,
    inbound: bool,
    peer: str,
    application: str,
    message_type: str,
    trigger: str,
    control_id: str,
    ack_code: str,
    text: str,
    resources: list[str] | None = None,
) -> None:
    """An HL7 v2 message received (DICOM 110107 Import) or sent (110106 Export) over MLLP, with the
    resources it wrote or carried as entities."""
    if not ctx.settings.audit_enabled:
        return
    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    subtype = [{"system": "http://terminology.hl7.org/CodeSystem/v2-0076", "code": message_type or "unknown"}]
    if trigger:
        subtype.append({"system": "http://terminology.hl7.org/CodeSystem/v2-0003", "code": trigger})
    entities: list[dict[str, Any]] = [
        {
            "what": {"identifier": {"system": "urn:fhir-server:hl7v2:message", "value": f"{application}|{control_id}"}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "detail": [{"type": "MSH-10", "valueString": control_id or "(none)"}],
        }
    ]
    entities += [{"what": {"reference": ref}} for ref in resources or []]
    event = {
        "resourceType": "AuditEvent",
        "type": {
            "system": dcm,
            "code": "110107" if inbound else "110106",
            "display": "Import" if inbound else "Export",
        },
        "subtype": subtype,
        "action": "C" if inbound and resources else "E",
        "recorded": fhir_instant(now_ms()),
        "outcome": "0" if ack_code in ("AA", "CA") else "4" if ack_code in ("AE", "AR", "CE", "CR") else "8",
        "outcomeDesc": f"{ack_code}: {text}"[:1000],
        "agent": [
            {
                "who": {"identifier": {"value": application or "unknown"}},
                "requestor": inbound,
                "network": {"address": peer or "unknown", "type": "2"},
            }
        ],
        "source": {
            "observer": {"display": "fhir-server"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
        "entity": entities,
    }
    await write(ctx, event)
