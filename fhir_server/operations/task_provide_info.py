"""`POST [base]/Task/[id]/$provide-info`: the requérant gives complementary information (CCTP §3.1.2.4).

Parameters: `message` (valueString), `attachment` (valueReference, repeatable: a DocumentReference,
ImagingStudy… of the dossier, or one the user can see, which then joins the dossier). At least one.
Done by the requérant side, while the Task is open, at the requis's request (the Task is on-hold) or on
their own initiative. Effect, in one transaction: a Communication (completed; basedOn the ServiceRequest
and the open CommunicationRequests it answers, partOf the Task, sender = the acting PractitionerRole,
recipient = the Task's owner), those CommunicationRequests completed, an on-hold Task back to where it was
(in-progress if someone took charge, else requested), an AuditEvent; then the requis side is notified
(`info-given`). Answers the Task.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import server
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise import access
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import dossier_type, reference_of
from fhir_server.teleexpertise.dossier import (
    acting_user,
    audit_transition,
    grant,
    load,
    load_task,
    notify_after_commit,
    now_instant,
    requerant_membership,
    set_task_state,
    task_state,
)
from fhir_server.teleexpertise.operation_input import operation_input
from fhir_server.teleexpertise.operation_output import resource_response
from fhir_server.teleexpertise.workflow import ON_HOLD, TAKEN, TASK_TRANSITIONS, WAITING, check_transition, wrong_side

TRANSITION = TASK_TRANSITIONS["provide-info"]


async def provide_info(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task")
    params = await operation_input(request)
    message = params.string("message")
    attachments = params.references("attachment")
    if not message and not attachments:
        raise FHIRError(422, "give a message or an attachment", code="required")

    async def step():  # type: ignore[no-untyped-def]
        task, sr = await load_task(ctx, actor, request)
        acting = await requerant_membership(ctx, actor, sr["res"])
        if acting is None:
            raise wrong_side("provide-info", TRANSITION.side)
        state = task_state(task["res"])
        check_transition(TRANSITION, state, dossier_type=dossier_type(sr["res"]), what="the Task")
        task_ref, sr_ref = f"Task/{task['_id']}", f"ServiceRequest/{sr['_id']}"
        codes = access.dossier_codes(sr["res"])
        changes = Changes(ctx)
        payload = [{"contentString": message}] if message else []
        for ref in attachments:
            rtype, _, rid = ref.partition("/")
            if rtype not in access.GOVERNED:
                raise FHIRError(422, f"{ref} cannot be attached to a dossier", code="business-rule")
            doc = await load(ctx, actor, rtype, rid)
            await grant(changes, ctx, rtype, doc, codes)
            payload.append({"contentReference": {"reference": ref}})
        asks = [
            doc
            async for doc in ctx.database.resources("CommunicationRequest").find(
                {"res": {"$exists": True}, "i.based-on.r": sr_ref}
            )
            if doc["res"].get("status") == "active"
            and task_ref in {reference_of(a) for a in doc["res"].get("about") or []}
        ]
        answer = {
            "resourceType": "Communication",
            "status": "completed",
            "basedOn": [{"reference": sr_ref}, *({"reference": f"CommunicationRequest/{a['_id']}"} for a in asks)],
            "partOf": [{"reference": task_ref}],
            "sent": now_instant(),
            "sender": {"reference": acting.role},
            "payload": payload,
        }
        if sr["res"].get("subject"):
            answer["subject"] = sr["res"]["subject"]
        if task["res"].get("owner"):
            answer["recipient"] = [task["res"]["owner"]]
        answer_ref = changes.create("Communication", access.with_acl(answer, codes))
        for ask in asks:
            current = await ctx.store.current("CommunicationRequest", ask["_id"])
            if current and current.get("res"):
                changes.update("CommunicationRequest", current, {**current["res"], "status": "completed"})
        target = state
        if state == ON_HOLD:
            target = TAKEN if (task["res"].get("executionPeriod") or {}).get("start") else WAITING
            changes.update("Task", task, set_task_state(task["res"], target))
        audit_transition(
            changes, actor, "provide-info", sr=sr["res"], task_refs=[task_ref], acting=acting,
            detail=f"{state[0]}/{state[1]} -> {target[0]}/{target[1]} ({answer_ref})",
        )  # fmt: skip
        committed = await changes.commit()
        version = committed.get(task_ref)
        return version, sr["res"], acting

    version, sr, acting = await retrying(step)
    if version is None:
        version = await ctx.store.read("Task", request.path_params["id"])
    await notify_after_commit(
        ctx, TRANSITION.event, tasks=[version.resource or {}], service_request=sr, actor=acting.role
    )
    return resource_response(request, ctx, version)
