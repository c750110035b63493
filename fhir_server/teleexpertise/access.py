"""Who sees a dossier: the access list each dossier resource carries, and the codes a user holds.

Every resource of a télédossier — the ServiceRequest, its Tasks, QuestionnaireResponses, DiagnosticReport,
DocumentReferences, Communications, CommunicationRequests, linked ImagingStudies, Binaries, Coverage,
Encounter, the cotations (ChargeItem, billing.py), and the Patient — carries its access list in
`meta.security`, as codings of the server-managed system `tlx-access` (an HL7 "compartment" privacy mark:
the users the resource is shared with):

  `Practitioner/<id>`, `PractitionerRole/<id>`   the author, the addressed professionals
  `Organization/<id>`                            members (profile `ps`) of that communauté
  `admin/Organization/<structure id>`            local administrators of that structure
  `be/Organization/<structure id>`               its bureau des entrées (added when a CR is written)

The list is written with the resource (same version, so it is in history and in the search index: the
token index `i._security.sc`), extended when the dossier is sent or re-addressed, and never shrinks. A
téléexpertise user's search gets one predicate `{"i._security.sc": {"$in": <the user's codes>}}` (served by
the wildcard index); a read checks the same intersection. Clients cannot write these codings: creates and
updates keep the server's list (guarded_writes.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server.context import ServerContext
from fhir_server.references import relative_references
from fhir_server.teleexpertise.codes import ACCESS, reference_of
from fhir_server.teleexpertise.directory import Principal

# Dossier resources: the rule applies to them for téléexpertise users.
GOVERNED = frozenset(
    {
        "Patient",
        "ServiceRequest",
        "Task",
        "QuestionnaireResponse",
        "DiagnosticReport",
        "DocumentReference",
        "Communication",
        "CommunicationRequest",
        "ImagingStudy",
        "Binary",
        "Coverage",
        "Encounter",
        "ChargeItem",  # the cotation of an answered Task (billing.py): administrative, the BE sees it
    }
)
# Medical content: never shown to a bureau des entrées (403, CCTP §3.1.2.8).
CLINICAL = frozenset(
    {"QuestionnaireResponse", "DiagnosticReport", "DocumentReference", "ImagingStudy", "Communication",
     "CommunicationRequest", "Binary"}
)  # fmt: skip
DIRECTORY = frozenset({"Organization", "Practitioner", "PractitionerRole"})

# Search parameters by which a resource points at its dossier (the ServiceRequest): used to find every
# resource of a dossier when its access list grows.
LINKS: dict[str, tuple[str, ...]] = {
    "Task": ("focus", "based-on"),
    "QuestionnaireResponse": ("based-on",),
    "DiagnosticReport": ("based-on",),
    "DocumentReference": ("related",),
    "Communication": ("based-on", "part-of"),
    "CommunicationRequest": ("based-on",),
    "ImagingStudy": ("basedon",),
    "ChargeItem": ("supporting-info",),  # custom parameter: ChargeItem.supportingInformation
}


def admin_code(structure: str) -> str:
    return f"admin/{structure}"


def be_code(structure: str) -> str:
    return f"be/{structure}"


def acl(resource: dict[str, Any]) -> set[str]:
    return {
        s["code"]
        for s in (resource.get("meta") or {}).get("security") or []
        if isinstance(s, dict) and s.get("system") == ACCESS and isinstance(s.get("code"), str)
    }


def with_acl(resource: dict[str, Any], codes: Iterable[str]) -> dict[str, Any]:
    """The resource with exactly `codes` as its access list (other security labels kept)."""
    meta = dict(resource.get("meta") or {})
    others = [s for s in meta.get("security") or [] if not (isinstance(s, dict) and s.get("system") == ACCESS)]
    meta["security"] = [*others, *({"system": ACCESS, "code": c} for c in sorted(set(codes)))]
    return {**resource, "meta": meta}


def user_codes(principal: Principal) -> list[str]:
    """The access codes a user holds (a resource is visible when its list shares one)."""
    codes = {principal.practitioner}
    for m in principal.memberships:
        if "ps" in m.profiles:
            codes.add(m.role)
            if m.kind == "communaute" and m.organization:
                codes.add(m.organization)
    codes.update(admin_code(s) for s in principal.admin_structures)
    codes.update(be_code(s) for s in principal.be_structures)
    return sorted(codes)


def index_values(codes: Iterable[str]) -> list[str]:
    """The `i._security.sc` index values of access codes."""
    return [f"{ACCESS}|{c}" for c in codes]


async def addressee_codes(ctx: ServerContext, addressee: str) -> set[str]:
    """Codes granting an addressee (a communauté, or a professional's PractitionerRole) and the
    administrators of its structure."""
    from fhir_server.teleexpertise.directory import read_live, structure_of

    codes = {addressee}
    org = addressee
    if addressee.startswith("PractitionerRole/"):
        role = await read_live(ctx, addressee) or {}
        practitioner = reference_of(role.get("practitioner"))
        if practitioner:
            codes.add(practitioner)
        org = reference_of(role.get("organization")) or ""
    structure = await structure_of(ctx, org) if org else None
    if structure:
        codes.add(admin_code(structure))
    return codes


def dossier_codes(service_request: dict[str, Any]) -> set[str]:
    """The codes a dossier shares with its linked resources (the bureau des entrées' are granted apart)."""
    return {c for c in acl(service_request) if not c.startswith("be/")}


async def linked_resources(ctx: ServerContext, service_request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Current documents of the resources of a dossier, the ServiceRequest excluded: what it references
    (subject, encounter, insurance, supportingInfo), what references it, and their Binaries."""
    sr_ref = f"ServiceRequest/{service_request['id']}"
    wanted: set[str] = set()
    for key in ("subject", "encounter"):
        target = reference_of(service_request.get(key))
        if target:
            wanted.add(target)
    for key in ("insurance", "supportingInfo"):
        for item in service_request.get(key) or []:
            target = reference_of(item)
            if target:
                wanted.add(target)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for rtype, params in LINKS.items():
        flt = {"res": {"$exists": True}, "$or": [{f"i.{p}.r": sr_ref} for p in params]}
        async for doc in ctx.database.resources(rtype).find(flt):
            found[f"{rtype}/{doc['_id']}"] = (rtype, doc)
    for _, doc in list(found.values()):
        # What they point to (a Communication's attached documents, outputs, Binaries of attachments).
        wanted.update(r for r in relative_references(doc["res"]) if r.split("/", 1)[0] in GOVERNED)
        wanted.update(f"Binary/{b}" for b in attachment_binaries(doc["res"]))
    for target in sorted(wanted - set(found)):
        rtype, _, rid = target.partition("/")
        if rtype not in GOVERNED or rtype == "ServiceRequest":
            continue
        doc = await ctx.store.current(rtype, rid)
        if doc and doc.get("res"):
            found[target] = (rtype, doc)
    return sorted(found.values(), key=lambda item: (item[0], item[1]["_id"]))


def attachment_binaries(resource: dict[str, Any]) -> set[str]:
    """Binary ids the attachments of a resource point to (DocumentReference.content, presentedForm…)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            url = node.get("url")
            if (
                isinstance(url, str)
                and "Binary/" in url
                and ("contentType" in node or "title" in node or "size" in node)
            ):
                found.add(url.rsplit("Binary/", 1)[1].split("/")[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(resource)
    return found
