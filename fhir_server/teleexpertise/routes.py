"""The téléexpertise operations, spliced into app.py's route list before the generic `/{type}` ones.

(The generic write/bundle/history routes of app.py call guarded_writes.py, which applies the
téléexpertise rules and hands every request on to the generic handler; same function names, so the
audit trail records the same interaction codes.) Operations are routed with the action `*` (token
required, no blanket scope check): each checks the scope it needs on Task or ServiceRequest itself
(dossier.acting_user).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.operations import (
    task_accept,
    task_close,
    task_provide_info,
    task_readdress,
    task_refuse,
    task_request_info,
    task_respond,
    task_worklist,
    tlx_link_imaging,
    tlx_send,
)

Endpoint = Callable[[Request], Awaitable[Response]]
RouteFactory = Callable[[str, Endpoint, list[str], str | None], Route]


def routes(r: RouteFactory) -> list[Route]:
    return [
        r("/ServiceRequest/{id}/$send", tlx_send.send, ["POST"], "*"),
        r("/ServiceRequest/{id}/$readdress", task_readdress.readdress_request, ["POST"], "*"),
        r("/ServiceRequest/{id}/$close", task_close.close_request, ["POST"], "*"),
        r("/ServiceRequest/{id}/$link-imaging", tlx_link_imaging.link_imaging, ["POST"], "*"),
        r("/ServiceRequest/{id}/$candidate-imaging", tlx_link_imaging.candidate_imaging, ["GET"], "*"),
        r("/Task/$worklist", task_worklist.worklist, ["GET"], "*"),
        r("/Task/{id}/$accept", task_accept.accept, ["POST"], "*"),
        r("/Task/{id}/$request-info", task_request_info.request_info, ["POST"], "*"),
        r("/Task/{id}/$provide-info", task_provide_info.provide_info, ["POST"], "*"),
        r("/Task/{id}/$respond", task_respond.respond, ["POST"], "*"),
        r("/Task/{id}/$close", task_close.close_task, ["POST"], "*"),
        r("/Task/{id}/$refuse", task_refuse.refuse, ["POST"], "*"),
        r("/Task/{id}/$readdress", task_readdress.readdress_task, ["POST"], "*"),
    ]
