"""Closing, per side (CCTP §3.1.2.6: "clos" is distinguished per side).

`POST [base]/Task/[id]/$close` — parameter `side` (`requis` | `requerant`, needed only when the user is on
both sides):
- requis side: the answered Task goes completed / repondu → completed / clos-requis, with the extension
  tlx-ext-closed-by-requested (now);
- requérant side: closes the dossier, as below.
`POST [base]/ServiceRequest/[id]/$close` — the requérant closes the dossier: the ServiceRequest goes
active → completed / clos-requerant with tlx-ext-closed-by-requester (now), and each of its Tasks gets the
same extension, their own status unchanged (the requis side stays `repondu` until the requis closes).
Refused (409) while an addressee still works on it (a Task requested, in-progress or on-hold).
Each in one transaction with its AuditEvent.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import ServerContext, resource_id_of, server
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import (
    EXT_CLOSED_BY_REQUESTED,
    EXT_CLOSED_BY_REQUESTER,
    dossier_type,
    set_extension,
)
from fhir_server.teleexpertise.dossier import (
    Actor,
    acting_user,
    audit_transition,
    load_request,
    load_task,
    load_task_for_requis,
    now_instant,
    requerant_membership,
    request_state,
    requis_membership,
    set_request_state,
    set_task_state,
    task_state,
    tasks_of,
)
from fhir_server.teleexpertise.operation_input import operation_input
from fhir_server.teleexpertise.operation_output import collection_response, resource_response
from fhir_server.teleexpertise.workflow import (
    CLOSED_REQUIS,
    OPEN_TASK_STATES,
    REQUEST_CLOSED,
    REQUEST_TRANSITIONS,
    TASK_TRANSITIONS,
    check_transition,
    wrong_side,
)


async def close_task(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task")
    side = (await operation_input(request)).string("side")
    if side not in (None, "requis", "requerant"):
        raise FHIRError(400, "side is requis or requerant", code="invalid")
    task, sr = await load_task(ctx, actor, request)
    on_requis = requis_membership(actor, task["res"]) is not None
    on_requerant = await requerant_membership(ctx, actor, sr["res"]) is not None
    if side is None:
        if on_requis and on_requerant:
            raise FHIRError(
                422, "you are on both sides of this dossier: say which one you close (side)", code="required"
            )
        side = "requis" if on_requis else "requerant"
    if side == "requerant":
        return await _close_request(request, ctx, actor, sr["_id"])
    transition = TASK_TRANSITIONS["close"]

    async def step():  # type: ignore[no-untyped-def]
        task, sr, acting, state = await load_task_for_requis(ctx, actor, request, transition)
        new = set_task_state(task["res"], CLOSED_REQUIS)
        set_extension(new, EXT_CLOSED_BY_REQUESTED, "valueDateTime", now_instant())
        changes = Changes(ctx)
        changes.update("Task", task, new)
        audit_transition(
            changes, actor, "close", sr=sr["res"], task_refs=[f"Task/{task['_id']}"], acting=acting,
            detail=f"requis side: {state[0]}/{state[1]} -> {CLOSED_REQUIS[0]}/{CLOSED_REQUIS[1]}",
        )  # fmt: skip
        return (await changes.commit())[f"Task/{task['_id']}"]

    return resource_response(request, ctx, await retrying(step))


async def close_request(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "ServiceRequest")
    return await _close_request(request, ctx, actor, resource_id_of(request))


async def _close_request(request: Request, ctx: ServerContext, actor: Actor, sr_id: str) -> Response:
    transition = REQUEST_TRANSITIONS["close"]

    async def step():  # type: ignore[no-untyped-def]
        sr = await load_request(ctx, actor, sr_id)
        acting = await requerant_membership(ctx, actor, sr["res"])
        if acting is None:
            raise wrong_side("close", transition.side)
        state = request_state(sr["res"])
        check_transition(transition, state, dossier_type=dossier_type(sr["res"]), what="the dossier")
        tasks = await tasks_of(ctx, sr_id)
        busy = [t for t in tasks if task_state(t["res"]) in OPEN_TASK_STATES]
        if busy:
            raise FHIRError(
                409,
                "addressees are still working on this dossier: "
                + ", ".join(f"Task/{t['_id']} ({'/'.join(task_state(t['res']))})" for t in busy),
                code="business-rule",
            )
        now = now_instant()
        changes = Changes(ctx)
        new_sr = set_request_state(sr["res"], REQUEST_CLOSED)
        set_extension(new_sr, EXT_CLOSED_BY_REQUESTER, "valueDateTime", now)
        changes.update("ServiceRequest", sr, new_sr)
        refs: list[str] = []
        for t in tasks:
            closed: dict[str, Any] = {**t["res"]}
            set_extension(closed, EXT_CLOSED_BY_REQUESTER, "valueDateTime", now)
            changes.update("Task", t, closed)
            refs.append(f"Task/{t['_id']}")
        audit_transition(
            changes, actor, "close", sr=new_sr, task_refs=refs, acting=acting,
            detail=f"requérant side: {state[0]}/{state[1]} -> {REQUEST_CLOSED[0]}/{REQUEST_CLOSED[1]}",
        )  # fmt: skip
        committed = await changes.commit()
        return [v for k, v in committed.items() if k.startswith(("ServiceRequest/", "Task/"))]

    return collection_response(request, ctx, await retrying(step))
