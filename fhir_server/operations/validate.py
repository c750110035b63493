"""$validate: POST [base]/[type]/$validate, the checks of a write without the write.

The body is the resource itself, or a Parameters with `resource` (and optionally `profile`, `mode`); `profile` may
also be a URL parameter. The answer is always 200 with an OperationOutcome (FHIR R4 Resource-validate): every
issue found, errors and warnings (extensible bindings) and information (profiles not known here, hence not
checked), or a single information issue when there is nothing to say. A `profile` asked for explicitly must be one
of ours (an error issue otherwise).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import query_items, resource_type_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, read_resource_body, wants_pretty
from fhir_server.profile_validation import conformance_issues
from fhir_server.questionnaire_validation import prefetch
from fhir_server.validation import Issue, validate_resource

MODES = frozenset({"create", "update", "delete"})


def _unpack(body: dict[str, Any], rtype: str) -> tuple[Any, list[str], str | None]:
    """(resource, profiles, mode) from the request body."""
    if body.get("resourceType") != "Parameters" or rtype == "Parameters":
        return body, [], None
    resource, profiles, mode = None, [], None
    for param in body.get("parameter") or []:
        if not isinstance(param, dict):
            continue
        name = param.get("name")
        if name == "resource":
            resource = param.get("resource")
        elif name == "profile":
            value = param.get("valueUri") or param.get("valueCanonical")
            if isinstance(value, str):
                profiles.append(value)
        elif name == "mode":
            mode = param.get("valueCode")
    if resource is None:
        raise FHIRError(400, "the Parameters carry no 'resource' parameter", code="required")
    return resource, profiles, mode


async def validate(request: Request) -> Response:
    ctx = server(request)
    rtype = resource_type_of(request)
    body = await read_resource_body(request, ctx.settings.max_body_bytes)
    resource, profiles, mode = _unpack(body, rtype)
    profiles += [v for k, v in query_items(request) if k == "profile"]
    mode = mode or next((v for k, v in query_items(request) if k == "mode"), None)
    if mode is not None and mode not in MODES:
        raise FHIRError(400, f"mode {mode!r} is not one of {', '.join(sorted(MODES))}", code="invalid")
    issues: list[Issue] = []
    if isinstance(resource, dict) and resource.get("resourceType") != rtype:
        issues.append(Issue("error", "invalid", f"resourceType {resource.get('resourceType')!r} is not {rtype!r}", ()))
    elif mode != "delete":
        issues = validate_resource(resource, rtype)
        if isinstance(resource, dict) and not any(i.severity in ("error", "fatal") for i in issues):
            await prefetch(ctx, [resource])
            issues += conformance_issues(resource, profiles)
    if not issues:
        issues = [Issue("information", "informational", "no issues found", ())]
    outcome = {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}
    return fhir_response(outcome, 200, pretty=wants_pretty(request))
