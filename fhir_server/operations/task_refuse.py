"""`POST [base]/Task/[id]/$refuse`: an addressee refuses (or recuses itself from) the dossier.

Parameters: `reason` (valueString, required: Task.statusReason), `recusation` (valueBoolean, default
false: a récusation rather than a refusal, businessStatus `recuse`). Done by the Task's addressee side
while it is open. The Task goes rejected / refuse (or recuse); when every addressee has now refused
(every Task of the dossier not cancelled by a re-addressing is rejected), the ServiceRequest goes revoked /
refuse. One transaction with the AuditEvent; then the requérant is notified (`refused`). Answers the Task.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import server
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.dossier import (
    acting_user,
    audit_transition,
    load_task_for_requis,
    notify_after_commit,
    request_state,
    set_request_state,
    set_task_state,
    task_state,
    tasks_of,
)
from fhir_server.teleexpertise.operation_input import operation_input
from fhir_server.teleexpertise.operation_output import resource_response
from fhir_server.teleexpertise.workflow import (
    READDRESSED,
    RECUSED,
    REFUSED,
    REQUEST_ACTIVE,
    REQUEST_REVOKED,
    TASK_TRANSITIONS,
)

TRANSITION = TASK_TRANSITIONS["refuse"]


async def refuse(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task")
    params = await operation_input(request)
    reason = params.string("reason")
    if not reason:
        raise FHIRError(422, "a refusal gives its reason (parameter reason)", code="required")
    target = RECUSED if params.boolean("recusation") else REFUSED

    async def step():  # type: ignore[no-untyped-def]
        task, sr, acting, state = await load_task_for_requis(ctx, actor, request, TRANSITION)
        new = set_task_state(task["res"], target)
        new["statusReason"] = {"text": reason}
        changes = Changes(ctx)
        changes.update("Task", task, new)
        task_ref = f"Task/{task['_id']}"
        others = [t for t in await tasks_of(ctx, sr["_id"]) if t["_id"] != task["_id"]]
        live = [task_state(t["res"]) for t in others if task_state(t["res"]) != READDRESSED]
        detail = f"{state[0]}/{state[1]} -> {target[0]}/{target[1]}"
        if all(s[0] == "rejected" for s in live) and request_state(sr["res"]) == REQUEST_ACTIVE:
            changes.update("ServiceRequest", sr, set_request_state(sr["res"], REQUEST_REVOKED))
            detail += f"; every addressee refused: dossier {REQUEST_REVOKED[0]}/{REQUEST_REVOKED[1]}"
        audit_transition(changes, actor, "refuse", sr=sr["res"], task_refs=[task_ref], acting=acting, detail=detail)
        return (await changes.commit())[task_ref], sr["res"], acting

    version, sr, acting = await retrying(step)
    await notify_after_commit(
        ctx, TRANSITION.event, tasks=[version.resource or {}], service_request=sr, actor=acting.role
    )
    return resource_response(request, ctx, version)
