"""`POST [base]/ServiceRequest/[id]/$send`: send a draft télédossier to its addressees (CCTP §3.1.2.2).

Parameters: `addressee` (valueReference, repeatable): a communauté (Organization) or a professional
(PractitionerRole); `invitee` (parts email, family, given, rpps; repeatable): a professional outside the
annuaire, invited by e-mail (teleexpertise/invitation.py); without either, the draft's `performer` list. Done
by the requérant side.
Effect, in one transaction: the ServiceRequest becomes active / en-attente-reponse with the addressees as
`performer`; one Task per addressee (requested / en-attente-reponse, owner = the addressee); the access
list of the dossier and of everything linked to it (the Patient included) grows with the addressees; an
AuditEvent; for invitees, their pending Practitioner and invitation PractitionerRole. Then each addressee is
notified (`sent`), except invitees still to enrol, who get the invitation e-mail with their enrolment link
(teleexpertise/invitation_mail.py). Answers a collection Bundle: the ServiceRequest, then the Tasks. 409 when
the dossier is not a draft, 403 for anyone but the requérant side.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import resource_id_of, server
from fhir_server.teleexpertise import invitation, invitation_mail
from fhir_server.teleexpertise.addressing import address, catch_up_grants, check_addressees
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import dossier_type, reference_of
from fhir_server.teleexpertise.dossier import (
    acting_user,
    addressee_of,
    audit_transition,
    load_request,
    notify_after_commit,
    requerant_membership,
    request_state,
    set_request_state,
)
from fhir_server.teleexpertise.operation_input import operation_input
from fhir_server.teleexpertise.operation_output import collection_response
from fhir_server.teleexpertise.workflow import REQUEST_ACTIVE, REQUEST_TRANSITIONS, check_transition, wrong_side
from fhir_server.teleexpertise.worklists import ensure_worklist_indexes

TRANSITION = REQUEST_TRANSITIONS["send"]


async def send(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "ServiceRequest")
    params = await operation_input(request)
    invitees = invitation.invitees(params)  # 422 before anything is written
    rid = resource_id_of(request)
    await ensure_worklist_indexes(ctx)

    async def step():  # type: ignore[no-untyped-def]
        sr = await load_request(ctx, actor, rid)
        acting = await requerant_membership(ctx, actor, sr["res"])
        if acting is None:
            raise wrong_side("send", TRANSITION.side)
        state = request_state(sr["res"])
        check_transition(TRANSITION, state, dossier_type=dossier_type(sr["res"]), what="the dossier")
        targets = params.references("addressee")
        if not targets and not invitees:
            targets = [r for r in (reference_of(p) for p in sr["res"].get("performer") or []) if r]
        addressees = (
            await check_addressees(ctx, targets, dossier=f"ServiceRequest/{rid}") if targets or not invitees else []
        )
        changes = Changes(ctx)
        invited = await invitation.invite(changes, ctx, rid, invitees)
        addressees += [i.role for i in invited if i.role not in addressees]
        sr_new, task_refs = await address(
            changes,
            ctx,
            sr,
            set_request_state(sr["res"], REQUEST_ACTIVE),
            addressees,
            {i.role: i.codes for i in invited},
        )
        detail = (
            f"{state[0]}/{state[1]} -> {REQUEST_ACTIVE[0]}/{REQUEST_ACTIVE[1]}; addressed to {', '.join(addressees)}"
            + (f"; {invitation.describe(invited)}" if invited else "")
        )
        audit_transition(changes, actor, "send", sr=sr_new, task_refs=task_refs, acting=acting, detail=detail)
        committed = await changes.commit()
        return committed, task_refs, acting, invited

    async with invitation.serialised(ctx, invitees):
        committed, task_refs, acting, invited = await retrying(step)
    await catch_up_grants(ctx, rid)
    sr_version = committed[f"ServiceRequest/{rid}"]
    tasks = [committed[ref].resource or {} for ref in task_refs]
    enrolling = {i.role for i in invited if i.enrol}
    await notify_after_commit(
        ctx, TRANSITION.event, tasks=[t for t in tasks if addressee_of(t) not in enrolling],
        service_request=sr_version.resource or {}, actor=acting.role,
    )  # fmt: skip
    await invitation_mail.queue(ctx, invited, tasks, sr_version.resource or {})
    return collection_response(request, ctx, [sr_version, *(committed[ref] for ref in task_refs)])
