"""`POST [base]/Task/[id]/$accept`: an addressee takes the dossier in charge ("pris en charge", CCTP §3.1.2.6).

No parameters. Done by the addressed professional or a member of the addressed communauté. The Task goes
requested / en-attente-reponse → in-progress / pris-en-charge; its owner becomes the acting professional's
PractitionerRole, the addressee stays in `restriction.recipient`; `executionPeriod.start` is now. One
transaction with the AuditEvent. Answers the Task. 409 from any other state, 403 for anyone else.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import server
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.dossier import (
    acting_user,
    addressee_of,
    audit_transition,
    load_task_for_requis,
    now_instant,
    set_task_state,
)
from fhir_server.teleexpertise.operation_output import resource_response
from fhir_server.teleexpertise.workflow import TAKEN, TASK_TRANSITIONS

TRANSITION = TASK_TRANSITIONS["accept"]


async def accept(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task")

    async def step():  # type: ignore[no-untyped-def]
        task, sr, acting, state = await load_task_for_requis(ctx, actor, request, TRANSITION)
        new = set_task_state(task["res"], TAKEN)
        new["restriction"] = {**(new.get("restriction") or {}), "recipient": [{"reference": addressee_of(task["res"])}]}
        new["owner"] = {"reference": acting.role}
        new["executionPeriod"] = {**(new.get("executionPeriod") or {}), "start": now_instant()}
        changes = Changes(ctx)
        changes.update("Task", task, new)
        audit_transition(
            changes, actor, "accept", sr=sr["res"], task_refs=[f"Task/{task['_id']}"], acting=acting,
            detail=f"{state[0]}/{state[1]} -> {TAKEN[0]}/{TAKEN[1]}",
        )  # fmt: skip
        return (await changes.commit())[f"Task/{task['_id']}"]

    return resource_response(request, ctx, await retrying(step))
