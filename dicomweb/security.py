"""DICOMweb requests go through the same security layer as FHIR ones.

The Bearer token is verified by the same code (fhir_server/auth/bearer.py), revocation check and rate
limit as `fhir_server/app.py`; the SMART scopes are those of the ImagingStudy type: search (`s`) for QIDO-RS,
read (`r`) for WADO-RS and the viewer's data, create (`c`) for STOW-RS. A patient-context token
(`patient/ImagingStudy.rs` with a launch patient) sees only the studies linked to its Patient.
Errors are OperationOutcomes, like every error of the server.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from fhir_server.auth.bearer import verified_access
from fhir_server.auth.policy import denied_patients, request_policy, search_restriction, team_patients
from fhir_server.auth.scopes import allows
from fhir_server.auth.tokens import AccessToken
from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.search.engine import LIVE

RESOURCE = "ImagingStudy"


def authenticate(request: Request) -> AccessToken | None:
    """The verified token (None when the server runs without auth); 401 otherwise."""
    return verified_access(request)


def authorize(request: Request, action: str) -> None:
    """Scope check for an ImagingStudy action; sets request.state.patient for patient-context tokens."""
    access = authenticate(request)
    if access is None:
        return
    if allows(access.scopes, RESOURCE, action):
        return
    if access.patient and allows(access.scopes, RESOURCE, action, context="patient"):
        if action == "c":
            raise FHIRError(403, "a patient-context token cannot store instances", code="forbidden")
        request.state.patient = access.patient
        return
    raise FHIRError(403, f"the token's scopes do not allow this on {RESOURCE} (DICOMweb)", code="forbidden")


async def visible_studies(request: Request) -> list[str] | None:
    """The StudyInstanceUIDs this request may see; None: no restriction.

    Two rules, the same as for FHIR reads and searches of ImagingStudy: a patient-context token sees
    its patient's studies; and the access policy (auth/policy.py: confidentiality labels, Consent
    deny, care team, téléexpertise dossier access lists) applies to the study's ImagingStudy, so a
    study nobody shared with the user is not found by DICOMweb either. One indexed query each.
    """
    allowed: set[str] | None = None
    patient = getattr(request.state, "patient", None)
    if patient is not None:
        allowed = set(await request.app.state.dicom.studies_of_patient(patient))
    ctx = request.app.state.server
    policy = request_policy(request)
    if not policy.unrestricted:
        denied, team = await denied_patients(ctx, policy), await team_patients(ctx, policy)
        restriction = search_restriction(policy, RESOURCE, denied, team)
        if restriction is not None:
            readable = await _studies_matching(ctx, {"$and": [LIVE, restriction]})
            allowed = readable if allowed is None else allowed & readable
    return None if allowed is None else sorted(allowed)


async def _studies_matching(ctx: ServerContext, flt: dict[str, Any]) -> set[str]:
    uids: set[str] = set()
    async for doc in ctx.database.resources(RESOURCE).find(flt, {"res.identifier": 1}):
        for ident in doc["res"].get("identifier") or []:
            if ident.get("system") == "urn:dicom:uid" and str(ident.get("value", "")).startswith("urn:oid:"):
                uids.add(ident["value"][len("urn:oid:") :])
    return uids


async def check_study_visible(request: Request, study_uid: str) -> None:
    allowed = await visible_studies(request)
    if allowed is not None and study_uid not in allowed:
        raise FHIRError(404, f"study {study_uid} is not known", code="not-found")
