"""Cotation of an answered téléexpertise: one ChargeItem per answered Task (CCTP §3.1.2.8, R-45 mode 1; R-47).

The requis — the professional who answered, or a `ps` member of the addressed communauté (a medical
secretariat) — records the cotation on the platform; the bureau des entrées of the requis structure reads it
and, once it has carried it into its billing tool, marks it `billed`. Profile `tlx-chargeitem`:

- `status`: `billable` (created), `billed` (by the bureau des entrées), `entered-in-error` (withdrawn by the
  requis);
- `code`: CodeSystem `teleexpertise-act`, NGAP `TE2` (requis), `RQD` (requérant); required binding;
- extension `tlx-ext-imputation` (valueCoding, `billing-imputation`): `AM` (Assurance Maladie) or `PIE`
  (prestation inter-établissements);
- `subject`: the dossier's Patient; `performer.actor`: the PractitionerRole that answered (the Task's owner);
- `performingOrganization`: the requis structure (`reference`) with its billing site (`identifier`: the
  communauté's FINESS géographique or SIRET, `tlx-ext-billing-site`, else the structure's own: R-50);
  `requestingOrganization`: the same for the requérant (the requester's communauté and structure);
- `occurrenceDateTime`: the answer (`Task.executionPeriod.end`); `service`: the compte-rendu DiagnosticReport
  (R4 `service` cannot point to a Task); `supportingInformation`: the answered Task, then the dossier's
  ServiceRequest (search parameter `supporting-info`); `enterer`, `enteredDate`: the acting PractitionerRole, now;
- no `context`, no `account` (no Encounter: the stay is created later in the GAM, R-44).

The client sends `status`, `code`, the imputation extension, the Task in `supportingInformation` (and
whatever else it wants to record: `note`, `quantity`…); the server sets the other fields from the dossier (a
client's values are replaced on create and kept from the current version on update), the profile claim and
the access list: the Task's (the dossier's codes and the bureau des entrées of the requis structure,
granted by `$respond`) plus the author. Rules (téléexpertise users; every error an OperationOutcome):
- create (`POST ChargeItem`): the Task must be visible (404), the acting user its requis (403), the Task
  answered — completed / `repondu`, `clos-requis` or `clos-requerant` (409) — and without a live cotation
  (409: update that one); then validated against the profile (422, nothing written).
- update (`PUT`, `PATCH`): the requis changes code, imputation, notes… or withdraws it (`entered-in-error`),
  not once it is `billed` or withdrawn (409), and never marks it `billed` (403); the bureau des entrées of
  the requis structure moves `billable` → `billed` and changes nothing else (403; 409 from another status);
  anyone else who sees it (requérant side, administrators) gets 403, others 404. `If-Match` is honoured.
- delete: 409 for the requis (withdraw it with `entered-in-error`), 403 for others who see it, 404 otherwise.
- The Task's `tlx-ext-billing-code` mirrors the cotation's act code (removed when withdrawn), in the same
  transaction: what the bureau des entrées reads on the Task comes from the ChargeItem once one exists. Every
  create writes the Task (compare-and-swap on its version), so two cotations of one Task racing each other
  cannot both commit.
Tokens that are not a téléexpertise user's (system clients: interfaces, migration) keep the generic rules
of guarded_writes.py (trusted, access list kept on update). The bureau des entrées' worklist is a plain
search, `ChargeItem?performing-organization=Organization/<structure>&status=billable&occurrence=ge…
&_sort=-occurrence&_count=…`, served on MongoDB by the compound index created here (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_writable
from fhir_server.auth.policy import dossier_principal, request_policy
from fhir_server.context import ServerContext, resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError, not_found
from fhir_server.http import parse_etag, read_resource_body, write_response
from fhir_server.interactions.body import check_body_id, check_type, validate_or_raise
from fhir_server.interactions.patch import _apply as apply_patch  # the generic patch's own rules
from fhir_server.interactions.patch import _patch_document as patch_document
from fhir_server.teleexpertise import access
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import (
    BASE,
    EXT_BILLING_CODE,
    EXT_BILLING_SITE,
    FR_ID_TYPE,
    STRUCTURE_ID_TYPES,
    business_status,
    extension_value,
    first_code,
    is_dossier_task,
    reference_of,
    set_extension,
)
from fhir_server.teleexpertise.directory import Principal, org_kind, organizations, read_live
from fhir_server.teleexpertise.dossier import Actor, addressee_of, load, now_instant, requis_membership, visible

RESOURCE = "ChargeItem"
PROFILE = f"{BASE}/StructureDefinition/tlx-chargeitem"
ACT = f"{BASE}/CodeSystem/teleexpertise-act"
IMPUTATION = f"{BASE}/CodeSystem/billing-imputation"
EXT_IMPUTATION = f"{BASE}/StructureDefinition/tlx-ext-imputation"

BILLABLE, BILLED, WITHDRAWN = "billable", "billed", "entered-in-error"
# Task business statuses once the téléexpertise is answered (Task.status completed).
ANSWERED = frozenset({"repondu", "clos-requis", "clos-requerant"})
# Set by the server from the dossier: replaced on create, kept from the current version on update.
SERVER_FIELDS = (
    "subject", "performer", "performingOrganization", "requestingOrganization", "occurrenceDateTime",
    "occurrencePeriod", "occurrenceTiming", "service", "supportingInformation", "enteredDate", "enterer",
)  # fmt: skip


async def intercept(request: Request, interaction: str) -> Response | None:
    """A téléexpertise user's write of a ChargeItem (`create`, `update`, `patch`, `delete`), answered here;
    None when it is not ours: another type, another kind of token, or the delete of nothing."""
    if resource_type_of(request) != RESOURCE:
        return None
    ctx = server(request)
    principal = await dossier_principal(ctx, request_policy(request))
    if principal is None:
        return None
    await ensure_billing_indexes(ctx)
    actor = Actor(principal, "", "")
    if interaction == "create":
        return await _create(request, ctx, actor)
    if interaction == "delete":
        return await _delete(request, ctx, actor)
    rid = resource_id_of(request)
    if interaction == "patch":
        patch = await patch_document(request, ctx)
        return await _change(request, ctx, actor, rid, lambda current: apply_patch(patch, current, RESOURCE, rid))
    body = await _body(request, ctx)
    check_body_id(body, rid)
    return await _change(request, ctx, actor, rid, lambda current: body)


# ---- create -----------------------------------------------------------------------------------------------


async def _create(request: Request, ctx: ServerContext, actor: Actor) -> Response:
    body = await _body(request, ctx)
    if request.headers.get("if-none-exist") is not None:
        raise FHIRError(
            400, "If-None-Exist is not available on cotations (one per answered Task)", code="not-supported"
        )
    task_ref = _task_named(body)
    if task_ref is None:
        raise FHIRError(
            422,
            "a téléexpertise cotation names the answered Task in ChargeItem.supportingInformation",
            code="required",
            expression=("ChargeItem.supportingInformation",),
        )

    async def step():  # type: ignore[no-untyped-def]
        task, sr = await _dossier(ctx, actor, task_ref)
        acting = requis_membership(actor, task["res"])
        if acting is None:
            raise FHIRError(
                403,
                "the cotation is recorded by the requis of this Task (the professional who answered, or a member of "
                "the addressed communauté)",
                code="forbidden",
            )
        _check_answered(task["res"])
        existing = await cotation_of(ctx, task_ref)
        if existing is not None:
            raise FHIRError(
                409, f"{task_ref} already has a cotation (ChargeItem/{existing}): update it", code="business-rule"
            )
        status = body.get("status", BILLABLE)
        if status != BILLABLE:
            raise FHIRError(
                422,
                f"a cotation is recorded as {BILLABLE!r} (not {status!r}): the bureau des entrées marks it billed",
                code="business-rule",
                expression=("ChargeItem.status",),
            )
        charge = await compose(ctx, {**body, "status": BILLABLE}, task["res"], sr["res"], acting.role)
        codes = access.acl(task["res"]) | access.dossier_codes(sr["res"]) | {actor.practitioner}
        charge = access.with_acl(charge, codes)
        check_writable(ctx, request, RESOURCE, charge)
        validate_or_raise(charge, RESOURCE)  # core R4, the profile it claims, our extensions: 422
        changes = Changes(ctx)
        ref = changes.create(RESOURCE, charge)
        changes.update("Task", task, mirrored(task["res"], charge))
        return (await changes.commit())[ref]

    version = await retrying(step)
    return write_response(request, version, ctx.base_url, 201)


async def _body(request: Request, ctx: ServerContext) -> dict[str, Any]:
    body = await read_resource_body(request, ctx.settings.max_body_bytes)
    check_type(body, RESOURCE)
    return body


def _task_named(charge: dict[str, Any]) -> str | None:
    for item in charge.get("supportingInformation") or []:
        ref = reference_of(item)
        if ref and ref.startswith("Task/"):
            return ref
    return None


async def _dossier(ctx: ServerContext, actor: Actor, task_ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Task document, ServiceRequest document) of a cotation; 404 when the user cannot see the Task."""
    task = await load(ctx, actor, "Task", task_ref.split("/", 1)[1])
    if not is_dossier_task(task["res"]):
        raise FHIRError(422, f"{task_ref} is not a téléexpertise Task", code="business-rule")
    sr_ref = reference_of(task["res"].get("focus")) or ""
    sr = await ctx.store.current("ServiceRequest", sr_ref.split("/", 1)[1]) if sr_ref.startswith("Service") else None
    if sr is None or not sr.get("res"):
        raise FHIRError(422, f"the dossier of {task_ref} is not known", code="business-rule")
    return task, sr


def _check_answered(task: dict[str, Any]) -> None:
    state = (task.get("status"), business_status(task))
    if state[0] != "completed" or state[1] not in ANSWERED:
        raise FHIRError(
            409,
            f"the Task is {state[0]}/{state[1]}: a cotation is recorded once the téléexpertise is answered",
            code="business-rule",
        )


async def cotation_of(ctx: ServerContext, task_ref: str) -> str | None:
    """The id of the live cotation of a Task (not withdrawn), if any."""
    flt = {"res": {"$exists": True}, "i.supporting-info.r": task_ref, "res.status": {"$ne": WITHDRAWN}}
    doc = await ctx.database.resources(RESOURCE).find_one(flt, {"_id": 1})
    return doc["_id"] if doc else None


async def compose(
    ctx: ServerContext, body: dict[str, Any], task: dict[str, Any], sr: dict[str, Any], enterer: str
) -> dict[str, Any]:
    """The ChargeItem to store: the client's fields, and the server's from the dossier (SERVER_FIELDS)."""
    out = {k: v for k, v in body.items() if k not in (*SERVER_FIELDS, "id")}
    out["resourceType"] = RESOURCE
    out["meta"] = _meta(body.get("meta"))
    patient = reference_of(sr.get("subject"))
    if not patient or not patient.startswith("Patient/"):
        raise FHIRError(422, "the dossier has no Patient to bill for", code="business-rule")
    out["subject"] = {"reference": patient}
    responder = reference_of(task.get("owner")) or ""
    out["performer"] = [{"actor": {"reference": responder if responder.startswith("PractitionerRole/") else enterer}}]
    performing = await billing_organization(ctx, await _organization_of(ctx, addressee_of(task)))
    if performing:
        out["performingOrganization"] = performing
    requesting = await billing_organization(ctx, await _organization_of(ctx, reference_of(sr.get("requester"))))
    if requesting:
        out["requestingOrganization"] = requesting
    now = now_instant()
    out["occurrenceDateTime"] = (task.get("executionPeriod") or {}).get("end") or now
    report = next(
        (r for r in (reference_of(o.get("valueReference")) for o in task.get("output") or [] if isinstance(o, dict))
         if r and r.startswith("DiagnosticReport/")),
        None,
    )  # fmt: skip
    if report:
        out["service"] = [{"reference": report}]
    out["supportingInformation"] = [{"reference": f"Task/{task['id']}"}, {"reference": f"ServiceRequest/{sr['id']}"}]
    out["enteredDate"] = now
    out["enterer"] = {"reference": enterer}
    return out


def _meta(meta: Any) -> dict[str, Any]:
    """The client's meta without the server's fields, claiming the profile (the access list is set apart)."""
    out = (
        {k: v for k, v in (meta or {}).items() if k not in ("versionId", "lastUpdated")}
        if isinstance(meta, dict)
        else {}
    )
    profiles = [p for p in out.get("profile") or [] if isinstance(p, str) and p != PROFILE]
    out["profile"] = [PROFILE, *profiles]
    return out


async def _organization_of(ctx: ServerContext, ref: str | None) -> str | None:
    """The organisation of an addressee or requester: itself, or a PractitionerRole's organisation."""
    if ref and ref.startswith("PractitionerRole/"):
        return reference_of((await read_live(ctx, ref) or {}).get("organization"))
    return ref


async def billing_organization(ctx: ServerContext, org_ref: str | None) -> dict[str, Any] | None:
    """A Reference to the structure of an organisation, carrying its billing site: the communauté's
    `tlx-ext-billing-site` (R-50), else the structure's own FINESS géographique or SIRET."""
    if not org_ref or not org_ref.startswith("Organization/"):
        return None
    org = (await organizations(ctx, {org_ref})).get(org_ref)
    if org is None:
        return None
    structure_ref, structure = org_ref, org
    if org_kind(org) != "structure":
        structure_ref = reference_of(org.get("partOf")) or ""
        structure = (await organizations(ctx, {structure_ref})).get(structure_ref)
        if structure is None:
            return None
    site = extension_value(org, EXT_BILLING_SITE) if structure is not org else None
    if not isinstance(site, dict):
        site = next(
            (i for i in structure.get("identifier") or []
             if isinstance(i, dict) and first_code(i.get("type") or {}, FR_ID_TYPE) in STRUCTURE_ID_TYPES
             and i.get("value")),
            None,
        )  # fmt: skip
    out: dict[str, Any] = {"reference": structure_ref}
    if site:
        out["identifier"] = {k: site[k] for k in ("use", "type", "system", "value") if k in site}
    if structure.get("name"):
        out["display"] = structure["name"]
    return out


def mirrored(task: dict[str, Any], charge: dict[str, Any]) -> dict[str, Any]:
    """The Task with its billing code taken from the cotation (none once the cotation is withdrawn)."""
    new = copy.deepcopy(task)
    code = first_code(charge.get("code"), ACT)
    if charge.get("status") == WITHDRAWN or not code:
        kept = [e for e in new.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == EXT_BILLING_CODE)]
        new.pop("extension", None)
        if kept:
            new["extension"] = kept
    else:
        set_extension(new, EXT_BILLING_CODE, "valueCode", code)
    return new


# ---- update, patch ----------------------------------------------------------------------------------------


async def _change(
    request: Request,
    ctx: ServerContext,
    actor: Actor,
    rid: str,
    new_body: Callable[[dict[str, Any]], dict[str, Any]],
) -> Response:
    if_match = parse_etag(request.headers.get("if-match"))

    async def step():  # type: ignore[no-untyped-def]
        current = await ctx.store.current(RESOURCE, rid)
        if current is None or not current.get("res") or not visible(actor, current["res"]):
            raise not_found(RESOURCE, rid)  # a cotation is created by POST, never by an update
        if if_match is not None and if_match != current["v"]:
            raise FHIRError(
                412, f"If-Match version {if_match} is not the current version {current['v']}", code="conflict"
            )
        cur = current["res"]
        new = new_body(copy.deepcopy(cur))
        task_ref = _task_named(cur)
        task = await ctx.store.current("Task", task_ref.split("/", 1)[1]) if task_ref else None
        task = task if task and task.get("res") else None
        acting = requis_membership(actor, task["res"]) if task else None
        if acting is not None:
            stored = _requis_change(cur, new)
        elif _bureau_of(actor.principal, cur):
            stored = _be_change(cur, new)
        else:
            raise FHIRError(
                403,
                "a cotation is changed by the requis of its Task, and marked billed by the bureau des entrées of "
                "the requis structure",
                code="forbidden",
            )
        stored = access.with_acl({**stored, "id": rid}, access.acl(cur))
        check_writable(ctx, request, RESOURCE, stored)
        validate_or_raise(stored, RESOURCE)
        changes = Changes(ctx)
        changes.update(RESOURCE, current, stored)
        if acting is not None and task is not None:
            task_new = mirrored(task["res"], stored)
            if task_new != task["res"]:
                changes.update("Task", task, task_new)
        return (await changes.commit())[f"{RESOURCE}/{rid}"]

    version = await retrying(step)
    return write_response(request, version, ctx.base_url, 200)


def _requis_change(cur: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    if cur.get("status") in (BILLED, WITHDRAWN):
        raise FHIRError(
            409,
            f"the cotation is {cur.get('status')}: it no longer changes"
            + (" (the bureau des entrées carried it into the billing tool)" if cur.get("status") == BILLED else ""),
            code="business-rule",
        )
    status = new.get("status")
    if status == BILLED:
        raise FHIRError(403, "the bureau des entrées of the requis structure marks a cotation billed", code="forbidden")
    if status not in (BILLABLE, WITHDRAWN):
        raise FHIRError(
            422,
            f"a cotation is {BILLABLE}, {BILLED} or {WITHDRAWN} (not {status!r})",
            code="business-rule",
            expression=("ChargeItem.status",),
        )
    out = {k: v for k, v in new.items() if k not in SERVER_FIELDS}
    out.update({k: cur[k] for k in SERVER_FIELDS if k in cur})
    out["meta"] = _meta(new.get("meta"))
    return out


def _bureau_of(principal: Principal, charge: dict[str, Any]) -> bool:
    """The user is the bureau des entrées of a structure the cotation is shared with (the requis one)."""
    return bool({access.be_code(s) for s in principal.be_structures} & access.acl(charge))


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "text", "status")}


def _be_change(cur: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    if new.get("status") != BILLED or _content(new) != _content(cur):
        raise FHIRError(
            403, "the bureau des entrées moves a cotation to billed and changes nothing else", code="forbidden"
        )
    if cur.get("status") != BILLABLE:
        raise FHIRError(
            409, f"only a billable cotation is billed (this one is {cur.get('status')})", code="business-rule"
        )
    return {**cur, "status": BILLED}


# ---- delete -----------------------------------------------------------------------------------------------


async def _delete(request: Request, ctx: ServerContext, actor: Actor) -> Response | None:
    rid = resource_id_of(request)
    current = await ctx.store.current(RESOURCE, rid)
    if current is None or not current.get("res"):
        return None  # deleting nothing: the generic delete answers (a success that writes nothing)
    if not visible(actor, current["res"]):
        raise not_found(RESOURCE, rid)
    task_ref = _task_named(current["res"])
    task = await read_live(ctx, task_ref) if task_ref else None
    if task is not None and requis_membership(actor, task) is not None:
        raise FHIRError(409, f"a cotation is not deleted: withdraw it (status {WITHDRAWN})", code="business-rule")
    raise FHIRError(403, "a cotation is withdrawn by the requis of its Task, not deleted", code="forbidden")


# ---- the bureau des entrées' worklist -------------------------------------------------------------------


BILLING_INDEXES = [
    IndexModel(
        [("i.performing-organization.r", ASCENDING), ("i.occurrence.max", DESCENDING), ("_id", ASCENDING)],
        name="tlx_performing_organization_occurrence",
    )
]


async def ensure_billing_indexes(ctx: ServerContext) -> None:
    """The compound index of the bureau des entrées' worklist (Database.add_indexes: MongoDB only). One
    multikey field only (`performing-organization`): `status` stays a residual filter, since a compound
    index cannot hold two array fields of one document."""
    await ctx.database.add_indexes(RESOURCE, BILLING_INDEXES)
