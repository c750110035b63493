"""The téléexpertise vocabulary: canonical URLs, code systems, extensions, and small FHIR helpers.

The CodeSystems and StructureDefinitions themselves live in profiles/teleexpertise/ (conformance
resources); this module only names them. `BASE` is a placeholder canonical base until the project has a
domain (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import Any

BASE = "https://fhir-server.example/fhir"

DOSSIER_TYPE = f"{BASE}/CodeSystem/teledossier-type"
DOSSIER_STATUS = f"{BASE}/CodeSystem/teledossier-status"
# Display labels of the dossier types (the CodeSystem's displays, for codings sent without one).
DOSSIER_TYPE_LABELS = {
    "tele-avc": "Télé-AVC",
    "tle-urgence": "TLE urgence",
    "tle-programmee": "TLE programmée",
    "greffe-renale": "Greffe rénale",
    "transfert-imagerie": "Transfert d'imagerie",
    "pacs-a-pacs": "PACS à PACS",
}
ROLE = f"{BASE}/CodeSystem/teleexpertise-role"
ORG_KIND = f"{BASE}/CodeSystem/organization-kind"
# Server-managed access list of dossier resources, carried in meta.security (an HL7 "compartment"-style
# privacy mark: the set of users a resource is shared with). See teleexpertise/access.py.
ACCESS = f"{BASE}/CodeSystem/tlx-access"
# AuditEvent.subtype of the workflow operations (send, accept, ...).
OPERATION = f"{BASE}/CodeSystem/teleexpertise-operation"
DOSSIER_ID = f"{BASE}/sid/teledossier"
# Professionals invited by e-mail from outside the annuaire (teleexpertise/invitation.py): `meta.tag` INVITATION
# `invited` on the Practitioner and PractitionerRole an invitation created, and INVITED_FOR `ServiceRequest/<id>`
# on that PractitionerRole: the one dossier it is limited to.
INVITATION = f"{BASE}/CodeSystem/tlx-invitation"
INVITED_FOR = f"{BASE}/CodeSystem/tlx-invited-for"

EXT_BUSINESS_STATUS = f"{BASE}/StructureDefinition/tlx-ext-business-status"
EXT_CLOSED_BY_REQUESTER = f"{BASE}/StructureDefinition/tlx-ext-closed-by-requester"
EXT_CLOSED_BY_REQUESTED = f"{BASE}/StructureDefinition/tlx-ext-closed-by-requested"
EXT_BILLING_SITE = f"{BASE}/StructureDefinition/tlx-ext-billing-site"
EXT_BILLING_CODE = f"{BASE}/StructureDefinition/tlx-ext-billing-code"

# FR Core identifier types (fr-core-cs-v2-0203) and systems for structures and professionals.
FR_ID_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
FINESS_SYSTEM = "https://finess.esante.gouv.fr"
SIRENE_SYSTEM = "https://sirene.fr"
RPPS_SYSTEMS = ("urn:oid:1.2.250.1.71.4.2.1", "https://rpps.esante.gouv.fr")
STRUCTURE_ID_TYPES = ("FINEG", "SIRET")

PROFILES = ("ps", "bureau-entrees", "admin-local", "admin-regional")
URGENT_TYPES = frozenset({"tele-avc", "tle-urgence"})


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def codes_of(concepts: Any, system: str) -> list[str]:
    """Codes of `system` in a CodeableConcept, a list of them, or a list of Codings."""
    items = concepts if isinstance(concepts, list) else [concepts]
    found: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        codings = item.get("coding") if "coding" in item else [item]
        for c in codings or []:
            if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str):
                found.append(c["code"])
    return found


def first_code(concepts: Any, system: str) -> str | None:
    found = codes_of(concepts, system)
    return found[0] if found else None


def ref(resource_type: str, rid: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{rid}"}


def reference_of(value: Any) -> str | None:
    """`Type/id` of a Reference (relative, or absolute on any base), else None."""
    if not isinstance(value, dict):
        return None
    raw = value.get("reference")
    if not isinstance(raw, str) or raw.startswith(("#", "urn:")):
        return None
    parts = raw.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def extension_value(resource: dict[str, Any], url: str) -> Any:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def set_extension(resource: dict[str, Any], url: str, key: str, value: Any) -> None:
    """Replace (or add) the extension `url` with one `value[x]`."""
    others = [e for e in resource.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == url)]
    resource["extension"] = [*others, {"url": url, key: value}]


def dossier_type(service_request: dict[str, Any]) -> str | None:
    return first_code(service_request.get("category") or [], DOSSIER_TYPE)


def is_dossier(service_request: dict[str, Any]) -> bool:
    return dossier_type(service_request) is not None


def is_dossier_task(task: dict[str, Any]) -> bool:
    return bool(codes_of(task.get("businessStatus"), DOSSIER_STATUS) or codes_of(task.get("code"), DOSSIER_TYPE))


def business_status(resource: dict[str, Any]) -> str | None:
    """The teledossier-status of a Task (businessStatus) or of a dossier ServiceRequest (extension)."""
    if resource.get("resourceType") == "Task":
        return first_code(resource.get("businessStatus"), DOSSIER_STATUS)
    return first_code(extension_value(resource, EXT_BUSINESS_STATUS), DOSSIER_STATUS)


def status_concept(code: str) -> dict[str, Any]:
    return {"coding": [coding(DOSSIER_STATUS, code)]}


def tag_codes(resource: dict[str, Any], system: str) -> list[str]:
    """Codes of `system` among a resource's `meta.tag`."""
    return codes_of((resource.get("meta") or {}).get("tag") or [], system)


def invited_for(role: dict[str, Any]) -> str | None:
    """The dossier (`ServiceRequest/<id>`) an invitation PractitionerRole is limited to; None for other roles."""
    found = tag_codes(role, INVITED_FOR)
    return found[0] if found else None
