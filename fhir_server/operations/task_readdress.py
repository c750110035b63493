"""Re-addressing a dossier already sent (CCTP §3.1.2.2: addressing error, second opinion…).

`POST [base]/ServiceRequest/[id]/$readdress` — parameters `addressee` (valueReference, repeatable) and/or
`invitee` (parts email, family, given, rpps; repeatable: a professional outside the annuaire invited by e-mail,
teleexpertise/invitation.py): adds addressees to an active dossier; done by the requérant side.
`POST [base]/Task/[id]/$readdress` — parameters `addressee` (repeatable), `invitee` and `addressingError`
(valueBoolean, default false): adds addressees, and when the Task was an addressing error, that Task goes
cancelled / readresse (from an open state only). Done by the requérant side, or by this Task's
addressee (who redirects it).

Either way, in one transaction: one new Task per new addressee (requested / en-attente-reponse), the
addressees join `ServiceRequest.performer` and the access list of the dossier and of everything linked to
it, an AuditEvent; then the new addressees are notified (`readdressed`) — invitees still to enrol get the
invitation e-mail instead. An addressee that already has an open Task is refused (422). Answers a collection
Bundle: the ServiceRequest, then the Tasks written.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import ServerContext, resource_id_of, server
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise import invitation, invitation_mail
from fhir_server.teleexpertise.addressing import address, catch_up_grants, check_addressees, open_addressees
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import dossier_type
from fhir_server.teleexpertise.directory import Membership
from fhir_server.teleexpertise.dossier import (
    Actor,
    acting_user,
    addressee_of,
    audit_transition,
    load_request,
    load_task,
    notify_after_commit,
    requerant_membership,
    request_state,
    requis_membership,
    set_task_state,
    task_state,
    tasks_of,
)
from fhir_server.teleexpertise.operation_input import operation_input
from fhir_server.teleexpertise.operation_output import collection_response
from fhir_server.teleexpertise.workflow import (
    READDRESSED,
    REQUEST_TRANSITIONS,
    TASK_TRANSITIONS,
    check_transition,
    wrong_side,
)
from fhir_server.teleexpertise.worklists import ensure_worklist_indexes

REQUEST = REQUEST_TRANSITIONS["readdress"]
TASK = TASK_TRANSITIONS["readdress"]


async def _readdress(
    ctx: ServerContext,
    actor: Actor,
    sr_id: str,
    targets: list[str],
    acting_for: Any,
    old_task_id: str | None,
    addressing_error: bool,
    invitees: list[invitation.Invitee],
) -> tuple[list[Any], list[str], Membership, list[invitation.Invited]]:
    sr = await load_request(ctx, actor, sr_id)
    acting: Membership | None = await acting_for(sr)
    if acting is None:
        raise wrong_side("readdress", REQUEST.side)
    state = request_state(sr["res"])
    check_transition(REQUEST, state, dossier_type=dossier_type(sr["res"]), what="the dossier")
    dossier = f"ServiceRequest/{sr_id}"
    addressees = await check_addressees(ctx, targets, dossier=dossier) if targets or not invitees else []
    tasks = await tasks_of(ctx, sr_id)
    changes = Changes(ctx)
    invited = await invitation.invite(changes, ctx, sr_id, invitees)
    addressees += [i.role for i in invited if i.role not in addressees]
    detail = ""
    if old_task_id is not None and addressing_error:
        old = next((t for t in tasks if t["_id"] == old_task_id), None)
        if old is None:
            raise FHIRError(404, f"Task/{old_task_id} is not known", code="not-found")
        old_state = task_state(old["res"])
        check_transition(TASK, old_state, dossier_type=dossier_type(sr["res"]), what="the Task")
        changes.update("Task", old, set_task_state(old["res"], READDRESSED))
        tasks = [t for t in tasks if t["_id"] != old_task_id]
        detail = f"Task/{old_task_id} {old_state[0]}/{old_state[1]} -> {READDRESSED[0]}/{READDRESSED[1]}; "
    already = sorted(set(addressees) & await open_addressees(tasks))
    if already:
        raise FHIRError(422, f"already addressed (an open Task exists): {', '.join(already)}", code="business-rule")
    sr_new, task_refs = await address(changes, ctx, sr, dict(sr["res"]), addressees, {i.role: i.codes for i in invited})
    audit_refs = [*([f"Task/{old_task_id}"] if detail else []), *task_refs]
    invited_detail = f"; {invitation.describe(invited)}" if invited else ""
    audit_transition(
        changes, actor, "readdress", sr=sr_new, task_refs=audit_refs, acting=acting,
        detail=f"{detail}re-addressed to {', '.join(addressees)}{invited_detail}",
    )  # fmt: skip
    committed = await changes.commit()
    written = [v for k, v in committed.items() if k.startswith(("ServiceRequest/", "Task/"))]
    return written, task_refs, acting, invited


async def _finish(request: Request, ctx: ServerContext, sr_id: str, result: Any) -> Response:
    written, task_refs, acting, invited = result
    await catch_up_grants(ctx, sr_id)
    sr = next((v.resource for v in written if v.resource_type == "ServiceRequest"), {}) or {}
    by_ref = {f"{v.resource_type}/{v.id}": v for v in written}
    tasks = [by_ref[r].resource or {} for r in task_refs]
    enrolling = {i.role for i in invited if i.enrol}
    await notify_after_commit(
        ctx, REQUEST.event, tasks=[t for t in tasks if addressee_of(t) not in enrolling], service_request=sr,
        actor=acting.role,
    )  # fmt: skip
    await invitation_mail.queue(ctx, invited, tasks, sr)
    return collection_response(request, ctx, written)


async def readdress_request(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "ServiceRequest")
    params = await operation_input(request)
    targets = params.references("addressee")
    invitees = invitation.invitees(params)  # 422 before anything is written
    sr_id = resource_id_of(request)
    await ensure_worklist_indexes(ctx)

    async def acting_for(sr: dict[str, Any]) -> Membership | None:
        return await requerant_membership(ctx, actor, sr["res"])

    async with invitation.serialised(ctx, invitees):
        result = await retrying(lambda: _readdress(ctx, actor, sr_id, targets, acting_for, None, False, invitees))
    return await _finish(request, ctx, sr_id, result)


async def readdress_task(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task")
    params = await operation_input(request)
    targets = params.references("addressee")
    invitees = invitation.invitees(params)  # 422 before anything is written
    addressing_error = params.boolean("addressingError")
    task, sr = await load_task(ctx, actor, request)
    sr_id = sr["_id"]

    async def acting_for(sr: dict[str, Any]) -> Membership | None:
        current = await ctx.store.current("Task", task["_id"])
        return await requerant_membership(ctx, actor, sr["res"]) or requis_membership(actor, (current or task)["res"])

    async with invitation.serialised(ctx, invitees):
        result = await retrying(
            lambda: _readdress(ctx, actor, sr_id, targets, acting_for, task["_id"], addressing_error, invitees)
        )
    return await _finish(request, ctx, sr_id, result)
