"""A télédossier as the operations see it: the acting user, the ServiceRequest, its Tasks, and sides.

Operations start here: `acting_user` (403 for tokens that are not téléexpertise users), `load_task` /
`load_request` (404 when the user cannot see it: existence does not leak), then the side checks of
workflow.py. Also the pieces every transition writes: the state change itself, the access list growth, the
transition's AuditEvent, and the notification after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from fhir_server.auth.policy import dossier_principal, request_policy
from fhir_server.auth.scopes import allows
from fhir_server.context import ServerContext, resource_id_of
from fhir_server.errors import FHIRError, not_found
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.teleexpertise import access
from fhir_server.teleexpertise.changes import Changes
from fhir_server.teleexpertise.codes import (
    EXT_BUSINESS_STATUS,
    OPERATION,
    ROLE,
    business_status,
    coding,
    dossier_type,
    is_dossier,
    is_dossier_task,
    reference_of,
    set_extension,
    status_concept,
)
from fhir_server.teleexpertise.directory import Membership, Principal, read_live
from fhir_server.teleexpertise.workflow import State, Transition, check_transition, wrong_side

log = logging.getLogger(__name__)


@dataclass
class Actor:
    principal: Principal
    client_id: str
    address: str

    @property
    def practitioner(self) -> str:
        return self.principal.practitioner


async def acting_user(ctx: ServerContext, request: Request, rtype: str, action: str = "u") -> Actor:
    """The téléexpertise user behind the request, with the scope the operation needs."""
    access_token = getattr(request.state, "access", None)
    if access_token is not None and not allows(access_token.scopes, rtype, action):
        raise FHIRError(403, f"the token's scopes do not allow this operation on {rtype}", code="forbidden")
    principal = await dossier_principal(ctx, request_policy(request))
    if principal is None:
        raise FHIRError(403, "téléexpertise operations are done by a user with a téléexpertise role", code="forbidden")
    client = request.client.host if request.client else "unknown"
    return Actor(principal, access_token.client_id if access_token else "", client)


def visible(actor: Actor, resource: dict[str, Any]) -> bool:
    if actor.principal.regional_admin:
        return True
    return bool(access.acl(resource) & set(access.user_codes(actor.principal)))


async def load(ctx: ServerContext, actor: Actor, rtype: str, rid: str) -> dict[str, Any]:
    """The current document of a resource the actor can see (404 otherwise, as a read would answer)."""
    doc = await ctx.store.current(rtype, rid)
    if doc is None or doc.get("gone") or not visible(actor, doc["res"]):
        raise not_found(rtype, rid)
    return doc


async def load_task(ctx: ServerContext, actor: Actor, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Task document, its ServiceRequest document) for `Task/{id}/$op`."""
    task = await load(ctx, actor, "Task", resource_id_of(request))
    if not is_dossier_task(task["res"]):
        raise FHIRError(422, "this Task is not a téléexpertise Task", code="business-rule")
    sr_ref = reference_of(task["res"].get("focus")) or next(
        (r for r in (reference_of(b) for b in task["res"].get("basedOn") or []) if r), None
    )
    if not sr_ref or not sr_ref.startswith("ServiceRequest/"):
        raise FHIRError(422, "the Task has no ServiceRequest focus", code="business-rule")
    sr = await ctx.store.current("ServiceRequest", sr_ref.split("/", 1)[1])
    if sr is None or sr.get("gone"):
        raise FHIRError(422, f"the Task's dossier {sr_ref} is not known", code="business-rule")
    return task, sr


async def load_task_for_requis(
    ctx: ServerContext, actor: Actor, request: Request, transition: Transition
) -> tuple[dict[str, Any], dict[str, Any], Membership, State]:
    """(Task document, its ServiceRequest document, the actor's requis role, the Task's state) for a requis
    transition of `Task/{id}/$op`: 403 when the actor is not on the requis side, 409 when the transition is
    illegal from that state."""
    task, sr = await load_task(ctx, actor, request)
    acting = requis_membership(actor, task["res"])
    if acting is None:
        raise wrong_side(transition.operation, transition.side)
    state = task_state(task["res"])
    check_transition(transition, state, dossier_type=dossier_type(sr["res"]), what="the Task")
    return task, sr, acting, state


async def load_request(ctx: ServerContext, actor: Actor, rid: str) -> dict[str, Any]:
    sr = await load(ctx, actor, "ServiceRequest", rid)
    if not is_dossier(sr["res"]):
        raise FHIRError(
            422, "this ServiceRequest is not a télédossier (no teledossier-type category)", code="business-rule"
        )
    return sr


async def tasks_of(ctx: ServerContext, sr_id: str) -> list[dict[str, Any]]:
    flt = {"res": {"$exists": True}, "i.focus.r": f"ServiceRequest/{sr_id}"}
    docs = await ctx.database.resources("Task").find(flt).sort([("_id", 1)]).to_list(None)
    out = []
    for doc in docs:
        visible_doc = await ctx.store.current("Task", doc["_id"])
        if visible_doc and visible_doc.get("res") and is_dossier_task(visible_doc["res"]):
            out.append(visible_doc)
    return out


def task_state(task: dict[str, Any]) -> State:
    return (task.get("status", ""), business_status(task) or "")


def request_state(sr: dict[str, Any]) -> State:
    return (sr.get("status", ""), business_status(sr) or "")


# ---- sides ------------------------------------------------------------------------------------------


async def requerant_membership(ctx: ServerContext, actor: Actor, sr: dict[str, Any]) -> Membership | None:
    """The actor's role on the requérant side of a dossier: the author's own PractitionerRole, or the actor's
    `ps` role in the author's communauté; None when the actor is not on that side."""
    role = reference_of(sr.get("requester"))
    if not role:
        return None
    own = actor.principal.membership(role)
    if own is not None and "ps" in own.profiles:
        return own
    if not role.startswith("PractitionerRole/"):
        return None
    org = reference_of((await read_live(ctx, role) or {}).get("organization"))
    return next((m for m in actor.principal.ps_memberships if org and m.organization == org), None)


async def is_requerant(ctx: ServerContext, actor: Actor, sr: dict[str, Any]) -> bool:
    return await requerant_membership(ctx, actor, sr) is not None


def addressee_of(task: dict[str, Any]) -> str | None:
    """The addressee a Task was created for: its communauté (kept in restriction.recipient once a
    professional took charge) or the addressed PractitionerRole."""
    recipients = [reference_of(r) for r in (task.get("restriction") or {}).get("recipient") or []]
    recipients = [r for r in recipients if r]
    return recipients[0] if recipients else reference_of(task.get("owner"))


def requis_membership(actor: Actor, task: dict[str, Any]) -> Membership | None:
    """The actor's PractitionerRole that acts as this Task's addressee, or None."""
    p = actor.principal
    targets = {addressee_of(task), reference_of(task.get("owner"))} - {None}
    for m in p.requis_memberships:
        if m.invitation is not None and m.invitation != reference_of(task.get("focus")):
            continue  # an invitation role answers its own dossier only
        if m.role in targets or (m.organization in targets and m.kind == "communaute"):
            return m
    return None


# ---- what every transition writes -------------------------------------------------------------------


def set_task_state(task: dict[str, Any], state: State) -> dict[str, Any]:
    out = {**task, "status": state[0], "businessStatus": status_concept(state[1]), "lastModified": now_instant()}
    return out


def set_request_state(sr: dict[str, Any], state: State) -> dict[str, Any]:
    out = {**sr, "status": state[0]}
    set_extension(out, EXT_BUSINESS_STATUS, "valueCodeableConcept", status_concept(state[1]))
    return out


def now_instant() -> str:
    return fhir_instant(now_ms())


async def grant(changes: Changes, ctx: ServerContext, rtype: str, doc: dict[str, Any], codes: set[str]) -> None:
    """Queue an access-list extension of a resource (nothing when it already holds the codes)."""
    ref = f"{rtype}/{doc['_id']}"
    current = changes.pending(ref) or doc["res"]
    if codes <= access.acl(current):
        return
    changes.update(rtype, doc, access.with_acl(current, access.acl(current) | codes))


async def grant_dossier(changes: Changes, ctx: ServerContext, sr_doc: dict[str, Any], codes: set[str]) -> None:
    """Extend the access list of a dossier and of every resource linked to it (the Patient included)."""
    await grant(changes, ctx, "ServiceRequest", sr_doc, codes)
    for rtype, doc in await access.linked_resources(ctx, sr_doc["res"]):
        await grant(changes, ctx, rtype, doc, codes)


def audit_transition(
    changes: Changes,
    actor: Actor,
    operation: str,
    *,
    sr: dict[str, Any],
    task_refs: list[str],
    acting: Membership | None,
    detail: str,
) -> None:
    """The transition's AuditEvent (operation, dossier, Tasks, patient, user, role and organisation),
    written in the same transaction as the transition."""
    patient = reference_of(sr.get("subject"))
    entities: list[dict[str, Any]] = [
        {"what": {"reference": ref}, "type": _entity_type("2", "System Object")} for ref in task_refs
    ]
    entities.append(
        {
            "what": {"reference": f"ServiceRequest/{sr['id']}"},
            "type": _entity_type("2", "System Object"),
            "description": "télédossier",
            "detail": [{"type": "transition", "valueString": detail}],
        }
    )
    if patient:
        entities.append(
            {
                "what": {"reference": patient},
                "type": _entity_type("1", "Person"),
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    user: dict[str, Any] = {
        "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser")]},
        "who": {"reference": actor.practitioner},
        "requestor": True,
        "network": {"address": actor.address, "type": "2"},
    }
    if actor.client_id:
        user["altId"] = actor.client_id
    agents = [user]
    if acting is not None:
        user["role"] = [{"coding": [coding(ROLE, p) for p in sorted(acting.profiles)]}]
        agents.append({"who": {"reference": acting.role}, "requestor": False})
        org = acting.organization or acting.structure
        if org:
            agents.append({"who": {"reference": org}, "requestor": False})
    changes.create(
        "AuditEvent",
        {
            "resourceType": "AuditEvent",
            "type": coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation"),
            "subtype": [
                coding("http://hl7.org/fhir/restful-interaction", "operation", "operation"),
                coding(OPERATION, operation),
            ],
            "action": "E",
            "recorded": now_instant(),
            "outcome": "0",
            "outcomeDesc": detail,
            "agent": agents,
            "source": {
                "observer": {"display": "fhir-server"},
                "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
            },
            "entity": entities,
        },
    )


def _entity_type(code: str, display: str) -> dict[str, str]:
    return coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", code, display)


async def notify_after_commit(
    ctx: ServerContext, event: str | None, *, tasks: list[dict[str, Any]], service_request: dict[str, Any], actor: str
) -> None:
    """Tell the other side (teleexpertise/notify.py). The transition is committed already: a failed notice
    is logged, never undone, and never fails the request."""
    if event is None:
        return
    try:
        from fhir_server.teleexpertise.notify import notify
    except ImportError:  # the notification module has not landed
        return
    for task in tasks:
        try:
            await notify(ctx, event, task=task, service_request=service_request, actor=actor)
        except Exception:
            log.exception("téléexpertise notification failed", extra={"event": event})


def dossier_kind(sr: dict[str, Any]) -> str | None:
    return dossier_type(sr)
