"""The resource a write carries: read, checked against the URL, validated. Nothing is written before."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from fhir_server.context import server
from fhir_server.errors import FHIRError, OutcomeIssue
from fhir_server.http import read_resource_body
from fhir_server.profile_validation import conformance_issues
from fhir_server.questionnaire_validation import prefetch as prefetch_questionnaires
from fhir_server.validation import validate_resource

# Issue codes that say "this is not FHIR JSON" (400); the others say "this FHIR content is wrong" (422).
STRUCTURE_CODES = frozenset({"structure", "not-supported"})


def validate_or_raise(
    resource: Any, expected_type: str, *, model_check: bool = True, where: str = ""
) -> dict[str, Any]:
    """The resource if valid, else a 400 (not FHIR JSON) or 422 (wrong FHIR content) OperationOutcome.

    `where` prefixes the diagnostics and FHIRPaths (e.g. "Bundle.entry[3].resource") for bundle entries.
    """
    found = validate_resource(resource, expected_type, model_check=model_check)
    if isinstance(resource, dict) and not any(i.severity in ("error", "fatal") for i in found):
        # Our profiles claimed in meta.profile, our extensions, a QuestionnaireResponse against its Questionnaire.
        found = conformance_issues(resource)
    issues = [i for i in found if i.severity in ("error", "fatal")]
    if not issues:
        return resource
    outcome = [
        OutcomeIssue(
            i.severity,
            i.code,
            f"{where}: {i.diagnostics}" if where else i.diagnostics,
            tuple(_located(e, where) for e in i.expression),
        )
        for i in issues
    ]
    status = 400 if any(i.code in STRUCTURE_CODES for i in issues) else 422
    first, rest = outcome[0], outcome[1:]
    raise FHIRError(status, first.diagnostics, code=first.code, expression=first.expression, extra_issues=rest)


def _located(expression: str, where: str) -> str:
    if not where:
        return expression
    # "Patient.name[0]" inside entry 3 is "Bundle.entry[3].resource.name[0]".
    _, _, rest = expression.partition(".")
    return f"{where}.{rest}" if rest else where


def check_type(resource: dict[str, Any], resource_type: str) -> None:
    actual = resource.get("resourceType")
    if actual != resource_type:
        raise FHIRError(
            400,
            f"resourceType {actual!r} does not match the URL's type {resource_type!r}",
            code="invalid",
            expression=("resourceType",) if actual is None else (f"{actual}.resourceType",),
        )


async def incoming_resource(request: Request, resource_type: str) -> dict[str, Any]:
    from fhir_server.interactions import binary

    ctx = server(request)
    if resource_type == "Binary" and binary.is_raw_body(request):
        raise FHIRError(
            415, "raw Binary content goes to POST [base]/Binary or PUT [base]/Binary/[id]", code="not-supported"
        )
    body = await read_resource_body(request, ctx.settings.max_body_bytes)
    check_type(body, resource_type)
    await prefetch_questionnaires(ctx, [body])  # a QuestionnaireResponse's Questionnaire, for validate_or_raise
    resource = validate_or_raise(body, resource_type)
    # Binary content and the attachments pointing to it (interactions/binary.py).
    if resource_type == "Binary":
        resource = await binary.sanitize_json_binary(ctx, request, resource)
    await binary.complete_attachments(ctx, resource_type, resource)
    return resource


def check_body_id(resource: dict[str, Any], rid: str) -> None:
    """An update's body must carry the id of the URL (FHIR RESTful API, update)."""
    body_id = resource.get("id")
    if body_id is None:
        raise FHIRError(
            400,
            "the resource has no id: an update must carry the id of the URL",
            code="required",
            expression=(f"{resource['resourceType']}.id",),
        )
    if body_id != rid:
        raise FHIRError(
            400,
            f"the resource id {body_id!r} does not match the URL id {rid!r}",
            code="invalid",
            expression=(f"{resource['resourceType']}.id",),
        )
