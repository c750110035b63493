"""`POST [base]/Task/[id]/$request-info`: the requis asks the requérant for complementary information.

Parameters: `message` (valueString, optional; the question). Done by the Task's addressee side, from
requested or in-progress. Effect, in one transaction: a CommunicationRequest (active; basedOn the
ServiceRequest, about the Task, requester = the acting PractitionerRole, recipient = the dossier's
requester, payload = the message), the Task on-hold / attente-info-complementaire, an AuditEvent; then
the requérant is notified (`info-requested`). For greffe-renale dossiers this does not block the answer
(workflow.NON_BLOCKING_INFO_TYPES). Answers the Task.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import server
from fhir_server.teleexpertise import access
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.dossier import (
    acting_user,
    audit_transition,
    load_task_for_requis,
    notify_after_commit,
    now_instant,
    set_task_state,
)
from fhir_server.teleexpertise.operation_input import operation_input
from fhir_server.teleexpertise.operation_output import resource_response
from fhir_server.teleexpertise.workflow import ON_HOLD, TASK_TRANSITIONS

TRANSITION = TASK_TRANSITIONS["request-info"]


async def request_info(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task")
    params = await operation_input(request)
    message = params.string("message")

    async def step():  # type: ignore[no-untyped-def]
        task, sr, acting, state = await load_task_for_requis(ctx, actor, request, TRANSITION)
        task_ref, sr_ref = f"Task/{task['_id']}", f"ServiceRequest/{sr['_id']}"
        ask = {
            "resourceType": "CommunicationRequest",
            "status": "active",
            "basedOn": [{"reference": sr_ref}],
            "about": [{"reference": task_ref}],
            "authoredOn": now_instant(),
            "requester": {"reference": acting.role},
        }
        if sr["res"].get("subject"):
            ask["subject"] = sr["res"]["subject"]
        if sr["res"].get("requester"):
            ask["recipient"] = [sr["res"]["requester"]]
        if message:
            ask["payload"] = [{"contentString": message}]
        changes = Changes(ctx)
        ask_ref = changes.create("CommunicationRequest", access.with_acl(ask, access.dossier_codes(sr["res"])))
        changes.update("Task", task, set_task_state(task["res"], ON_HOLD))
        audit_transition(
            changes, actor, "request-info", sr=sr["res"], task_refs=[task_ref], acting=acting,
            detail=f"{state[0]}/{state[1]} -> {ON_HOLD[0]}/{ON_HOLD[1]} ({ask_ref})",
        )  # fmt: skip
        return (await changes.commit())[task_ref], sr["res"], acting

    version, sr, acting = await retrying(step)
    await notify_after_commit(
        ctx, TRANSITION.event, tasks=[version.resource or {}], service_request=sr, actor=acting.role
    )
    return resource_response(request, ctx, version)
