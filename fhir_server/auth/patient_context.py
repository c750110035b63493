"""Patient-context access (SMART `patient/...` scopes with a `patient` launch context).

A token whose only grants are `patient/` scopes sees the Patient compartment of its patient and
nothing else of a patient-specific type: reads of other patients' resources answer 404 (their
existence does not leak), searches are narrowed to the compartment, writes must stay inside it.
Types outside the Patient compartment (Practitioner, Organization, Medication...) are not
patient-specific and are readable with the matching patient scope.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.search.compartments import compartment_filter, compartment_params


def restricted_patient(request: Request) -> str | None:
    """The patient a request is confined to, or None when it is not confined."""
    return getattr(request.state, "patient", None)


def is_patient_specific(resource_type: str) -> bool:
    return resource_type == "Patient" or resource_type in compartment_params("Patient")


def in_compartment(ctx: ServerContext, resource_type: str, resource: dict[str, Any], patient_id: str) -> bool:
    if resource_type == "Patient":
        return resource.get("id") == patient_id
    params = compartment_params("Patient").get(resource_type)
    if not params:
        return True
    index = ctx.store.index_fn(resource)
    ref = f"Patient/{patient_id}"
    return any(ref in (index.get(p) or {}).get("r", []) for p in params)


def check_visible(ctx: ServerContext, request: Request, resource_type: str, resource: dict[str, Any] | None) -> None:
    """404 for a resource outside the token's patient compartment."""
    pid = restricted_patient(request)
    if pid is None or resource is None:
        return
    if not in_compartment(ctx, resource_type, resource, pid):
        raise FHIRError(404, f"{resource_type}/{resource.get('id')} is not known", code="not-found")


def check_writable(ctx: ServerContext, request: Request, resource_type: str, resource: dict[str, Any] | None) -> None:
    """403 for a write that would put (or find) a resource outside the token's patient compartment."""
    pid = restricted_patient(request)
    if pid is None or resource is None:
        return
    if resource_type == "Patient" and resource.get("id") != pid:
        raise FHIRError(403, "a patient-context token cannot write another Patient", code="forbidden")
    if not is_patient_specific(resource_type) or not in_compartment(ctx, resource_type, resource, pid):
        raise FHIRError(403, f"the resource is not in the compartment of Patient/{pid}", code="forbidden")


def search_filter(request: Request, resource_type: str) -> dict[str, Any] | None:
    pid = restricted_patient(request)
    if pid is None or not is_patient_specific(resource_type):
        return None
    if resource_type == "Patient":
        return {"_id": pid}
    return compartment_filter("Patient", pid, resource_type)


def forbid_unconfined(request: Request, what: str) -> None:
    """Interactions that cannot be narrowed to one patient's compartment."""
    if restricted_patient(request) is not None:
        raise FHIRError(403, f"{what} is not available to a patient-context token", code="forbidden")
