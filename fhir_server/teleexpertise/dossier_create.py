"""Creating a télédossier: `POST [base]/ServiceRequest` by a téléexpertise user (spec §8 test 1, CCTP §3.1.2.1).

The dossier is created as a draft (`status` draft, business status `brouillon`) in the author's context:
the `requester` is the author's PractitionerRole in one communauté, whose parent is the dossier's
structure. A user in several communautés chooses one — the `communaute` parameter (`?communaute=
Organization/ID` or `ID`), or a `requester` PractitionerRole of theirs in the body — otherwise 422.
The dossier and the Patient's access list (and its other references') are written in one transaction,
with the creation's AuditEvent. Without patient context, the Patient is created with the dossier from its
traits (a contained Patient, INSi queried once before the transaction) or as an unknown identity
(`?identity-unknown=true`): dossier_identity.py.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.http import write_response
from fhir_server.interactions.body import validate_or_raise
from fhir_server.questionnaire_validation import prefetch as prefetch_questionnaires
from fhir_server.teleexpertise import access, dossier_identity
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import (
    DOSSIER_ID,
    URGENT_TYPES,
    dossier_type,
    reference_of,
)
from fhir_server.teleexpertise.directory import Membership, Principal
from fhir_server.teleexpertise.dossier import Actor, audit_transition, grant, now_instant, set_request_state
from fhir_server.teleexpertise.guarded_writes import visible_to
from fhir_server.teleexpertise.workflow import REQUEST_DRAFT


def _unprocessable(message: str, expression: str | None = None) -> FHIRError:
    return FHIRError(422, message, code="business-rule", expression=(expression,) if expression else ())


def author_context(request: Request, principal: Principal, body: dict[str, Any]) -> Membership:
    """The author's PractitionerRole for this dossier (R-07: chosen when the user has several)."""
    candidates = principal.ps_memberships
    if not candidates:
        raise FHIRError(403, "only a health professional (profile ps) creates a télédossier", code="forbidden")
    requester = reference_of(body.get("requester"))
    chosen = request.query_params.get("communaute")
    if requester:
        found = next((m for m in candidates if m.role == requester), None)
        if found is None:
            raise _unprocessable(
                f"the requester {requester} is not one of your PractitionerRoles", "ServiceRequest.requester"
            )
        return found
    if chosen:
        org = chosen if chosen.startswith("Organization/") else f"Organization/{chosen}"
        matching = [m for m in candidates if m.organization == org]
        if len(matching) != 1:
            raise _unprocessable(f"you are not a member of the communauté {org}")
        return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(sorted(m.organization or m.role for m in candidates))
    raise _unprocessable(
        f"you belong to several communautés ({names}): choose the dossier's context with the communaute parameter "
        "(?communaute=Organization/ID) or a requester PractitionerRole"
    )


def author_codes(principal: Principal, m: Membership) -> set[str]:
    codes = {principal.practitioner, m.role}
    if m.kind == "communaute" and m.organization:
        codes.add(m.organization)
    if m.structure:
        codes.add(access.admin_code(m.structure))
    return codes


async def create_dossier(request: Request, ctx: ServerContext, principal: Principal, body: dict[str, Any]) -> Response:
    if request.headers.get("if-none-exist") is not None:
        raise FHIRError(400, "If-None-Exist is not available when creating a télédossier", code="not-supported")
    body = {k: v for k, v in body.items() if k != "id"}
    kind = dossier_type(body)
    if kind is None:
        raise _unprocessable(
            "a télédossier has a category from https://fhir-server.example/fhir/CodeSystem/teledossier-type",
            "ServiceRequest.category",
        )
    if body.get("status") != "draft":
        raise _unprocessable(
            "a télédossier is created as a draft; ServiceRequest/[id]/$send sends it", "ServiceRequest.status"
        )
    m = author_context(request, principal, body)
    # Without patient context: traits (a contained Patient) or identity-unknown=true; 400/422 before INSi.
    body, wanted = dossier_identity.identity_request(request, body)
    subject = reference_of(body.get("subject"))
    if not subject or not subject.startswith("Patient/"):
        raise _unprocessable("a télédossier's subject is a Patient", "ServiceRequest.subject")
    codes = author_codes(principal, m)
    sr = dict(body)
    sr["requester"] = {"reference": m.role}
    sr.setdefault("intent", "order")
    sr.setdefault("priority", "stat" if kind in URGENT_TYPES else "routine")
    sr.setdefault("authoredOn", now_instant())
    sr = set_request_state(sr, REQUEST_DRAFT)
    identifiers = [i for i in sr.get("identifier") or [] if isinstance(i, dict) and i.get("system") != DOSSIER_ID]
    sr["identifier"] = [*identifiers, {"system": DOSSIER_ID, "value": "pending"}]
    await prefetch_questionnaires(ctx, [sr])
    validate_or_raise(sr, "ServiceRequest")  # 400/422 before anything is written
    # INSi is called once, here: never inside the transaction's retry loop.
    identity = await dossier_identity.resolve(ctx, wanted) if wanted else None

    async def step() -> Any:
        changes = Changes(ctx)
        base = sr
        if identity is not None:
            # The new Patient gets the dossier's access list, in the same transaction.
            patient_ref = changes.create("Patient", access.with_acl(identity.patient, codes))
            base = dossier_identity.repoint(sr, dossier_identity.PENDING, patient_ref)
        # What the dossier points to joins it: the Patient, the request form, attachments, studies.
        targets = [subject if identity is None else None, *(reference_of(i) for i in body.get("supportingInfo") or [])]
        targets += [reference_of(body.get("encounter")), *(reference_of(i) for i in body.get("insurance") or [])]
        for target in dict.fromkeys(t for t in targets if t and t != dossier_identity.PENDING):
            rtype, _, rid = target.partition("/")
            if rtype not in access.GOVERNED:
                continue
            doc = await ctx.store.current(rtype, rid)
            if doc is None or not doc.get("res") or not visible_to(principal, doc["res"]):
                raise _unprocessable(f"the reference {target} is not known")
            await grant(changes, ctx, rtype, doc, codes)
        ref = changes.create("ServiceRequest", {})
        rid = ref.split("/", 1)[1]
        resource = access.with_acl({**base, "identifier": [*identifiers, {"system": DOSSIER_ID, "value": rid}]}, codes)
        changes.writes[ref].resource = {**resource, "id": rid}
        detail = "created: draft/brouillon" + (f"; patient: {identity.detail}" if identity else "")
        audit_transition(
            changes, Actor(principal, _client(request), _address(request)), "create",
            sr={**resource, "id": rid}, task_refs=[], acting=m, detail=detail,
        )  # fmt: skip
        return (await changes.commit())[ref]

    version = await retrying(step)
    return write_response(request, version, ctx.base_url, 201, issues=identity.issues if identity else None)


def _client(request: Request) -> str:
    token = getattr(request.state, "access", None)
    return token.client_id if token else ""


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
