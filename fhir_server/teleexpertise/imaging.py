"""Imaging in a télédossier: linking ImagingStudies of the imaging store (dicomweb/) to a dossier.

A link is two references written in one transaction: `ServiceRequest.supportingInfo` → the ImagingStudy
(spec §7.1) and `ImagingStudy.basedOn` → the ServiceRequest (searchable: `ImagingStudy?basedon=`), plus the
dossier's access list on the ImagingStudy (access.py), so whoever sees the dossier sees the study, by FHIR
and by DICOMweb (dicomweb/security.py applies the same policy). The list is a sticky label (ResourceStore
keeps it when the imaging store rewrites the ImagingStudy) and `basedOn` is carried over by those rewrites
(dicomweb/imaging_study.py), so a study linked while it is still being received (`registered`) stays linked
as it completes; later addressees get it through access.linked_resources (it follows `basedon` and
`supportingInfo`).

Linking never blocks on the study: a transfer in progress, or a DICOM identity that differs from the dossier
Patient (birth date, sex, name, or a study filed under another Patient) still links; the differences are
returned as OperationOutcome warnings (code business-rule).

Which studies a requérant may link (and is offered as candidates): one they can already see, or one that
no dossier shares yet (a study just imported — CD/USB upload, query/retrieve, modality push — carries no
access list). A study of another dossier the user cannot see is refused as unknown, and not offered.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise import access
from fhir_server.teleexpertise.changes import Changes
from fhir_server.teleexpertise.codes import reference_of
from fhir_server.teleexpertise.dossier import Actor, visible

UID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
SEX = {"M": "male", "F": "female", "O": "other"}
PI_CODES = {"PI"}  # identifier type of an IPP (v2-0203 / FR Core)


@dataclass
class Study:
    uid: str
    doc: dict[str, Any]  # the ImagingStudy's current document in the resource store
    dicom: dict[str, Any] | None  # the imaging store's study document (DICOM identity), if any

    @property
    def ref(self) -> str:
        return f"ImagingStudy/{self.doc['_id']}"


def unknown_study(target: str) -> FHIRError:
    """Not received, or in a dossier the user cannot see: the same answer (existence does not leak)."""
    return FHIRError(422, f"the study {target} is not known", code="not-found")


def study_uid_of(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        value = str(ident.get("value") or "")
        if ident.get("system") == "urn:dicom:uid" and value.startswith("urn:oid:"):
            return value[len("urn:oid:") :]
    return None


async def resolve_study(ctx: ServerContext, target: str) -> Study:
    """An ImagingStudy by StudyInstanceUID (`1.2.3`, `urn:oid:1.2.3`) or by reference (`ImagingStudy/id`)."""
    target = target.strip()
    doc: dict[str, Any] | None = None
    if target.startswith("ImagingStudy/"):
        doc = await ctx.store.current("ImagingStudy", target.split("/", 1)[1])
    else:
        uid = target.removeprefix("urn:oid:")
        if not UID_RE.match(uid):
            raise FHIRError(
                400, f"{target!r} is neither a StudyInstanceUID nor an ImagingStudy reference", code="invalid"
            )
        from dicomweb.store import imaging_study_id

        doc = await ctx.store.current("ImagingStudy", imaging_study_id(uid))
    if doc is None or doc.get("gone") or not doc.get("res"):
        raise unknown_study(target)
    uid = study_uid_of(doc["res"]) or ""
    dicom = getattr(ctx, "dicom", None)
    study_doc = await dicom.study_doc(uid) if dicom is not None and uid else None
    return Study(uid, doc, study_doc)


def ipp_values(patient: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The Patient's IPPs (identifiers of type PI)."""
    out = []
    for ident in patient.get("identifier") or []:
        codes = {c.get("code") for c in ((ident.get("type") or {}).get("coding") or [])}
        if codes & PI_CODES and ident.get("value"):
            out.append((ident.get("system"), str(ident["value"])))
    return out


def may_link(actor: Actor, resource: dict[str, Any]) -> bool:
    """A study no dossier shares yet, or one the actor already sees."""
    return not access.acl(resource) or visible(actor, resource)


# ---- identity comparison ----------------------------------------------------------------------------


def _norm(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^A-Z0-9]", "", "".join(c for c in folded if not unicodedata.combining(c)).upper())


def identity_differences(study: Study, patient_ref: str | None, patient: dict[str, Any]) -> list[str]:
    """The DICOM identity traits of a study that differ from the dossier Patient (only traits both sides
    hold are compared)."""
    out: list[str] = []
    subject = reference_of(study.doc["res"].get("subject"))
    if subject and patient_ref and subject.startswith("Patient/") and subject != patient_ref:
        out.append(f"patient (the study is filed under {subject})")
    if study.dicom is None:
        return out
    birth = str(study.dicom.get("birth") or "")
    birth_date = str(patient.get("birthDate") or "")
    if re.fullmatch(r"\d{8}", birth) and birth_date:
        dicom_date = f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"
        if dicom_date[: len(birth_date)] != birth_date[:10]:
            out.append(f"PatientBirthDate ({dicom_date} ≠ {birth_date})")
    sex = SEX.get(str(study.dicom.get("sex") or "").upper())
    gender = patient.get("gender")
    if sex and gender in ("male", "female", "other") and sex != gender:
        out.append(f"PatientSex ({study.dicom.get('sex')} ≠ {gender})")
    name = str(study.dicom.get("pnu") or "")
    family, _, rest = name.partition("^")
    given = rest.split("^", 1)[0]
    names = patient.get("name") or []
    if _norm(family) and names:
        families = {_norm(n.get("family") or "") for n in names} - {""}
        givens = {_norm(g) for n in names for g in n.get("given") or []} - {""}
        if families and _norm(family) not in families:
            out.append(
                f"PatientName family name ({family} ≠ {', '.join(sorted(n.get('family') or '' for n in names))})"
            )
        elif _norm(given) and givens and _norm(given) not in givens:
            out.append(f"PatientName given name ({given})")
    return out


def mismatch_issue(study: Study, differences: list[str]) -> dict[str, Any]:
    return {
        "severity": "warning",
        "code": "business-rule",
        "details": {"text": "DICOM identity differs from the dossier's patient"},
        "diagnostics": f"study {study.uid} ({study.ref}) was linked, but its DICOM identity differs from the "
        f"dossier's patient: {'; '.join(differences)}",
        "expression": ["ImagingStudy.subject"],
    }


# ---- the link ---------------------------------------------------------------------------------------


def link_study(changes: Changes, sr_doc: dict[str, Any], sr_new: dict[str, Any], study: Study) -> dict[str, Any]:
    """Queue the study's side of the link (basedOn, access list); returns the dossier with the study in
    `supportingInfo` (not queued: the caller writes the dossier once)."""
    sr_ref = f"ServiceRequest/{sr_doc['_id']}"
    res = changes.pending(study.ref) or study.doc["res"]
    based_on = list(res.get("basedOn") or [])
    if sr_ref not in {reference_of(b) for b in based_on}:
        based_on.append({"reference": sr_ref})
    codes = access.acl(res) | access.dossier_codes(sr_new)
    new = access.with_acl({**res, "basedOn": based_on}, codes)
    if new != res:
        changes.update("ImagingStudy", study.doc, new)
    info = list(sr_new.get("supportingInfo") or [])
    if study.ref not in {reference_of(i) for i in info}:
        info.append({"reference": study.ref, "display": f"DICOM study {study.uid}"})
    return {**sr_new, "supportingInfo": info}


def linked_refs(sr: dict[str, Any]) -> set[str]:
    return {r for r in (reference_of(i) for i in sr.get("supportingInfo") or []) if r and r.startswith("ImagingStudy/")}


async def candidate_studies(ctx: ServerContext, actor: Actor, sr: dict[str, Any]) -> list[dict[str, Any]]:
    """Current ImagingStudy documents of the dossier's Patient not linked to the dossier yet: those whose
    subject is the Patient, and those whose PatientID is one of its IPPs (a study that arrived before the
    Patient, or under an issuer that names the IPP's system)."""
    from dicomweb.imaging_study import patient_system

    patient_ref = reference_of(sr.get("subject"))
    if not patient_ref or not patient_ref.startswith("Patient/"):
        return []
    patient_doc = await ctx.store.current("Patient", patient_ref.split("/", 1)[1])
    patient = patient_doc["res"] if patient_doc and patient_doc.get("res") else {}
    ids: set[str] = set()
    flt = {"res": {"$exists": True}, "i.subject.r": patient_ref}
    async for doc in ctx.database.resources("ImagingStudy").find(flt, {"_id": 1}):
        ids.add(doc["_id"])
    dicom = getattr(ctx, "dicom", None)
    if dicom is not None:
        for system, value in ipp_values(patient):
            async for study in dicom.studies.find({"pid": value}, {"fhir": 1, "issuer": 1, "attrs": 1}):
                named = patient_system(ctx, study.get("issuer") or "", study.get("attrs") or {})
                if named is None or system is None or named == system:
                    ids.add(study["fhir"])
    linked = {r.split("/", 1)[1] for r in linked_refs(sr)}
    out = []
    for rid in sorted(ids - linked):
        doc = await ctx.store.current("ImagingStudy", rid)
        if doc and doc.get("res") and may_link(actor, doc["res"]):
            out.append(doc)
    return out
