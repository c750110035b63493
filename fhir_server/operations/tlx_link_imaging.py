"""`POST [base]/ServiceRequest/[id]/$link-imaging` and `GET [base]/ServiceRequest/[id]/$candidate-imaging`.

`$link-imaging` links DICOM studies to a télédossier (teleexpertise/imaging.py). Parameters, repeatable:
`study` — a StudyInstanceUID (valueString / valueOid / valueIdentifier `urn:dicom:uid`) or an ImagingStudy
(valueReference); and/or `candidates` (valueBoolean): also link every `$candidate-imaging` study (the
auto-link of the studies that arrived under the patient's IPP, spec test 8). Done by the requérant side, on
a draft or active dossier (409 once closed or revoked).
In one transaction: the ServiceRequest's `supportingInfo` gains the studies, each ImagingStudy gains
`basedOn` → the ServiceRequest and the dossier's access list, and an AuditEvent is written. Never blocked by
the study: one still being received (`registered`) links (spec §8 test 9), one whose DICOM identity differs
from the dossier's Patient links with a warning (test 10).

Answer: 200, a `collection` Bundle: the ServiceRequest, the linked ImagingStudies, and last an
OperationOutcome — `information` when all is well, one `warning` / `business-rule` issue per study whose
DICOM identity (PatientBirthDate, PatientSex, PatientName, or the Patient it is filed under) differs.

`$candidate-imaging` (requérant side; 403 for others who see the dossier): a `searchset` Bundle of the studies
of the dossier's Patient — by subject, or by PatientID = one of its IPPs — not linked yet and linkable by
the user (spec test 8).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import resource_id_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, wants_pretty
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.teleexpertise.addressing import catch_up_grants
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import reference_of
from fhir_server.teleexpertise.dossier import (
    acting_user,
    audit_transition,
    load_request,
    requerant_membership,
)
from fhir_server.teleexpertise.imaging import candidate_studies as candidates
from fhir_server.teleexpertise.imaging import (
    identity_differences,
    link_study,
    may_link,
    mismatch_issue,
    resolve_study,
    unknown_study,
)
from fhir_server.teleexpertise.operation_input import operation_input

OPEN_REQUEST_STATUSES = frozenset({"draft", "active", "on-hold"})


def _targets(params: Any) -> list[str]:
    out: list[str] = []
    for p in params.parameters:
        if p.get("name") != "study":
            continue
        if isinstance(p.get("valueReference"), dict):
            ref = reference_of(p["valueReference"])
            if ref:
                out.append(ref)
                continue
        if isinstance(p.get("valueIdentifier"), dict) and p["valueIdentifier"].get("value"):
            out.append(str(p["valueIdentifier"]["value"]))
            continue
        value = next(
            (p[k] for k in ("valueString", "valueOid", "valueUri", "valueId") if isinstance(p.get(k), str)), None
        )
        if value is None:
            raise FHIRError(
                400, "parameter study takes a StudyInstanceUID or an ImagingStudy reference", code="invalid"
            )
        out.append(value)
    for value in params.query.get("study", []):
        out += [v.strip() for v in value.split(",") if v.strip()]
    return list(dict.fromkeys(out))


async def link_imaging(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "ServiceRequest")
    params = await operation_input(request)
    rid = resource_id_of(request)
    targets = _targets(params)
    with_candidates = params.boolean("candidates")
    if not targets and not with_candidates:
        raise FHIRError(
            400, "give a study (StudyInstanceUID or ImagingStudy reference) or candidates=true", code="required"
        )

    async def step():  # type: ignore[no-untyped-def]
        sr = await load_request(ctx, actor, rid)
        acting = await requerant_membership(ctx, actor, sr["res"])
        if acting is None:
            raise FHIRError(403, "only the requérant side links studies to a dossier", code="forbidden")
        if sr["res"].get("status") not in OPEN_REQUEST_STATUSES:
            raise FHIRError(
                409, f"the dossier is {sr['res'].get('status')}: no more studies can be linked", code="conflict"
            )
        patient_ref = reference_of(sr["res"].get("subject"))
        patient: dict[str, Any] = {}
        if patient_ref and patient_ref.startswith("Patient/"):
            found = await ctx.store.current("Patient", patient_ref.split("/", 1)[1])
            patient = found["res"] if found and found.get("res") else {}
        changes = Changes(ctx)
        sr_new = sr["res"]
        studies, issues = [], []
        wanted = list(targets)
        if with_candidates:
            wanted += [f"ImagingStudy/{d['_id']}" for d in await candidates(ctx, actor, sr["res"])]
        for target in dict.fromkeys(wanted):
            study = await resolve_study(ctx, target)
            if not may_link(actor, study.doc["res"]):
                raise unknown_study(target)
            differences = identity_differences(study, patient_ref, patient)
            if differences:
                issues.append(mismatch_issue(study, differences))
            sr_new = link_study(changes, sr, sr_new, study)
            studies.append(study)
        if not studies:
            return {}, [], []
        if sr_new != sr["res"]:
            changes.update("ServiceRequest", sr, sr_new)
        detail = "linked " + ", ".join(f"{s.uid} ({s.doc['res'].get('status')})" for s in studies)
        audit_transition(changes, actor, "link-imaging", sr=sr_new, task_refs=[], acting=acting, detail=detail)
        committed = await changes.commit()
        return committed, studies, issues

    committed, studies, issues = await retrying(step)
    await catch_up_grants(ctx, rid)
    entries: list[dict[str, Any]] = []
    sr_version = committed.get(f"ServiceRequest/{rid}")
    sr_res = sr_version.resource if sr_version else (await ctx.store.current("ServiceRequest", rid) or {}).get("res")
    entries.append({"fullUrl": f"{ctx.base_url}/ServiceRequest/{rid}", "resource": sr_res})
    for study in studies:
        version = committed.get(study.ref)
        res = version.resource if version else study.doc["res"]
        entries.append({"fullUrl": f"{ctx.base_url}/{study.ref}", "resource": res})
    if not studies:
        issues = [{"severity": "information", "code": "informational", "diagnostics": "no study to link"}]
    elif not issues:
        issues = [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"{len(studies)} study(ies) linked; DICOM identity matches the dossier's patient",
            }
        ]
    entries.append({"resource": {"resourceType": "OperationOutcome", "issue": issues}})
    bundle = {"resourceType": "Bundle", "type": "collection", "timestamp": fhir_instant(now_ms()), "entry": entries}
    return fhir_response(bundle, 200, pretty=wants_pretty(request))


async def candidate_imaging(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "ServiceRequest", "r")
    sr = await load_request(ctx, actor, resource_id_of(request))
    if await requerant_membership(ctx, actor, sr["res"]) is None:
        raise FHIRError(403, "only the requérant side is offered studies to link", code="forbidden")
    docs = await candidates(ctx, actor, sr["res"])
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(docs),
        "entry": [
            {
                "fullUrl": f"{ctx.base_url}/ImagingStudy/{d['_id']}",
                "resource": d["res"],
                "search": {"mode": "match"},
            }
            for d in docs
        ],
    }
    return fhir_response(bundle, 200, pretty=wants_pretty(request))
