"""FHIR DocumentReference (+ its Patient, authors, custodian, authenticator and the PDF) → CDA R2 "N1".

A CDA R2 document with a structured header and the PDF in `nonXMLBody` (IHE XDS-SD), following the ANS
CI-SIS "structuration minimale" volet: the three N1 templateIds, realmCode FR, setId/versionNumber, the
patient with the INS and its traits, authors with their IDNPS (RPPS), custodian (IDNST), legal
authenticator, the service event (practiceSettingCode) and the encompassing encounter
(healthcareFacilityTypeCode). The output passes `CDA_extended.xsd` and `ASIP-STRUCT-MIN-StrucMin.sch`
(checked in tests/test_cda_generate.py).

`generate_n1(document_reference, resources, pdf)` is pure: `resources` maps the references the
DocumentReference uses ("Patient/1", "PractitionerRole/2", and those PractitionerRoles' own
practitioner/organization, the replaced DocumentReference…) to the resources, loaded by the caller.
Missing or non-conformant input raises `CdaGenerationError` listing every problem (the FHIR operation
answers 422 with them); nothing is invented except what the CI-SIS lets us derive:

- the document id is the masterIdentifier (`urn:oid:…`, `urn:oid:…^ext`, `urn:uuid:…`), else a
  `2.25.<uuid>` OID derived from the DocumentReference id and version (stable for one version);
- setId: the identifier with `use=secondary` (what `parse.py` writes), else the replaced document's,
  else derived like the id; versionNumber 1, or the replaced document's + 1;
- confidentiality N, language fr-FR, service period = the document date when absent;
- the legal authenticator defaults to the first practitioner author, the custodian to the author's
  organisation.

The INS is sent only when the Patient's identity is qualified (FR Core identity-reliability `VALI`, or no
reliability given); with it, the INS traits (birth name, birth given names, first given name, birth date,
COG code of the birth place, sex) are required, as the CI-SIS rules say.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from mappings.cda.systems import (
    CONFIDENTIALITY_OID,
    IDNPS_OID,
    IDNST_OID,
    INS_NIA_OID,
    INS_NIR_DEMO_OID,
    INS_NIR_OID,
    INS_NIR_TEST_OID,
    INS_OIDS,
    OID_RE,
    UUID_RE,
    fhir_to_ts,
    oid_for_system,
)
from mappings.cda.valuesets import (
    AUTHOR_SPECIALTIES,
    CIVILITES,
    FACILITY_TYPES,
    GENDERS,
    PRACTICE_SETTINGS,
    TITRES,
    TYPE_CODES,
)

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
TEMPLATE_HL7_FR = "2.16.840.1.113883.2.8.2.1"
TEMPLATE_CI_SIS = "1.2.250.1.213.1.1.1.1"
TEMPLATE_XDS_SD = "1.3.6.1.4.1.19376.1.2.20"
CONFIDENTIALITY = {"N": "Normal", "R": "Restreint", "V": "Très restreint"}
GENDER_CODES = {"male": "M", "female": "F", "other": "UN", "unknown": "UN"}
ADDRESS_USE = {"home": "H", "work": "WP", "temp": "TMP"}
TELECOM_USE = {"home": "H", "work": "WP", "mobile": "MC", "temp": "TMP"}
FR_IDENTITY_RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_CODE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
BIRTH_LIST_GIVEN_NAME = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"
# National ids of FR Core: (system, prefix) → IDNPS / IDNST value = prefix + value.
PRACTITIONER_IDS = {
    "urn:oid:" + IDNPS_OID: "",
    "https://rpps.esante.gouv.fr": "8",
    "https://adeli.esante.gouv.fr": "0",
}
# Stable namespace for ids derived from resource ids (uuid5 → 2.25.<int> OIDs).
_NAMESPACE = uuid.UUID("1f6b7b3e-9d1c-5c36-a1f0-3c5b2f3c1e7a")


class CdaGenerationError(ValueError):
    """The FHIR input cannot make a CI-SIS-conformant CDA; `issues` are (FHIRPath, message) pairs."""

    def __init__(self, issues: list[tuple[str, str]]):
        self.issues = issues
        super().__init__("; ".join(f"{path}: {message}" for path, message in issues))


@dataclass
class _Problems:
    issues: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.issues.append((path, message))


# --- small XML helpers ------------------------------------------------------------------------------


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{HL7}}}{tag}")
    for key, value in attrs.items():
        if value is not None:
            el.set(key.rstrip("_"), value)
    if text is not None:
        el.text = text
    return el


def _ii(parent: etree._Element, tag: str, root: str, extension: str | None = None) -> etree._Element:
    return _el(parent, tag, root=root, extension=extension)


# --- resolution -------------------------------------------------------------------------------------


class _Resolver:
    def __init__(self, document: dict[str, Any], resources: Mapping[str, dict[str, Any]]):
        self.contained = {f"#{r.get('id')}": r for r in document.get("contained", []) if r.get("id")}
        self.resources = resources

    def __call__(self, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        if not ref or not isinstance(ref, dict):
            return None
        target = ref.get("reference")
        if not target:
            return None
        if target.startswith("#"):
            return self.contained.get(target)
        parts = target.split("/_history/")[0].rstrip("/").split("/")
        key = "/".join(parts[-2:]) if len(parts) >= 2 else target
        return self.resources.get(target) or self.resources.get(key)


# --- FHIR value pickers -------------------------------------------------------------------------------


def _codings(concept: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((concept or {}).get("coding") or [])


def _pick(concept: dict[str, Any] | None, valueset: Mapping[str, tuple[str, str]]) -> tuple[str, str, str] | None:
    """The first coding of the concept that is in the value set: (code, code system OID, display)."""
    for c in _codings(concept):
        code = c.get("code")
        if code in valueset:
            cs, display = valueset[code]
            oid = oid_for_system(c.get("system"))
            if oid is None or oid == cs or c.get("system") is None:
                return code, cs, c.get("display") or display
    return None


def _national_practitioner_id(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        system, value = ident.get("system"), ident.get("value")
        if value and system in PRACTITIONER_IDS:
            prefix = PRACTITIONER_IDS[system]
            return value if value.startswith(prefix) and len(value) > 11 else prefix + value
    return None


def _national_organization_id(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        system, value = ident.get("system"), ident.get("value")
        if not value:
            continue
        if system in ("urn:oid:" + IDNST_OID,):
            return value
        if system in ("https://finess.esante.gouv.fr", "http://finess.sante.gouv.fr"):
            return "1" + value
        if system == "https://sirene.fr" and len(value) == 14:
            return "3" + value
        if system == "https://rppsrang.esante.gouv.fr":
            return "4" + value
    return None


def _other_ids(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """Identifiers with an OID system (root, extension), in order."""
    out = []
    for ident in resource.get("identifier") or []:
        oid = oid_for_system(ident.get("system"))
        if oid and ident.get("value"):
            out.append((oid, ident["value"]))
    return out


def _official_name(resource: dict[str, Any]) -> dict[str, Any] | None:
    names = resource.get("name") or []
    for use in ("official", "usual", None):
        for n in names:
            if use is None or n.get("use") == use:
                return n
    return None


def _name_of(resource: dict[str, Any], use: str) -> dict[str, Any] | None:
    return next((n for n in resource.get("name") or [] if n.get("use") == use), None)


def _ext(element: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in element.get("extension") or [] if e.get("url") == url), None)


def _tel_value(cp: dict[str, Any]) -> str | None:
    value = (cp.get("value") or "").strip()
    if not value:
        return None
    system = cp.get("system")
    if system in ("phone", "sms"):
        return "tel:" + "".join(ch for ch in value if ch.isdigit() or ch == "+")
    if system == "fax":
        return "fax:" + "".join(ch for ch in value if ch.isdigit() or ch == "+")
    if system == "email":
        return "mailto:" + value
    if system == "url":
        return value if ":" in value else None
    return None


def _telecoms(parent: etree._Element, resource: dict[str, Any]) -> None:
    for cp in resource.get("telecom") or []:
        value = _tel_value(cp)
        if value:
            _el(parent, "telecom", value=value, use=TELECOM_USE.get(cp.get("use") or ""))


def _addr(parent: etree._Element, address: dict[str, Any] | None) -> None:
    if not address:
        return
    addr = _el(parent, "addr", use=ADDRESS_USE.get(address.get("use") or ""))
    # The CI-SIS wants either structured parts or streetAddressLine only, never both: lines go into
    # streetName (the first) and additionalLocator (the others), next to postalCode and city.
    lines = [line for line in address.get("line") or [] if line]
    if lines:
        _el(addr, "streetName", lines[0])
    if len(lines) > 1:
        _el(addr, "additionalLocator", ", ".join(lines[1:]))
    for key in ("postalCode", "city", "country"):
        if address.get(key):
            _el(addr, key, address[key])


def _person_name(parent: etree._Element, name: dict[str, Any] | None, problems: _Problems, path: str) -> None:
    """A professional's name: prefix (civilité) and suffix (titre) only when in the CI-SIS value sets."""
    pn = _el(parent, "name")
    if not name or not name.get("family"):
        problems.add(path, "a name with a family part is required")
        return
    for prefix in name.get("prefix") or []:
        if prefix.upper() in CIVILITES:
            _el(pn, "prefix", prefix.upper())
    for given in name.get("given") or []:
        _el(pn, "given", given)
    _el(pn, "family", name["family"])
    for suffix in name.get("suffix") or []:
        if suffix.upper().rstrip(".") in TITRES:
            _el(pn, "suffix", suffix.upper().rstrip("."))


# --- the pieces of the header ------------------------------------------------------------------------


@dataclass
class _Actor:
    """A Practitioner (with its role's organisation and specialty) or a Device, ready for CDA."""

    path: str
    person: dict[str, Any] | None = None
    device: dict[str, Any] | None = None
    organization: dict[str, Any] | None = None
    specialty: tuple[str, str, str] | None = None
    role: dict[str, Any] | None = None


def _actor(ref: dict[str, Any], resolve: _Resolver, path: str) -> _Actor | None:
    resource = resolve(ref)
    if resource is None:
        return None
    kind = resource.get("resourceType")
    if kind == "Practitioner":
        specialty = None
        for q in resource.get("qualification") or []:
            specialty = specialty or _pick(q.get("code"), AUTHOR_SPECIALTIES)
        return _Actor(path, person=resource, specialty=specialty)
    if kind == "PractitionerRole":
        person = resolve(resource.get("practitioner"))
        org = resolve(resource.get("organization"))
        specialty = None
        for concept in (resource.get("specialty") or []) + (resource.get("code") or []):
            specialty = specialty or _pick(concept, AUTHOR_SPECIALTIES)
        if specialty is None and person:
            for q in person.get("qualification") or []:
                specialty = specialty or _pick(q.get("code"), AUTHOR_SPECIALTIES)
        return _Actor(path, person=person, organization=org, specialty=specialty, role=resource)
    if kind == "Device":
        return _Actor(path, device=resource, organization=resolve(resource.get("owner")))
    if kind == "Organization":
        return _Actor(path, organization=resource)
    return None


def _organization(
    parent: etree._Element, tag: str, org: dict[str, Any], problems: _Problems, path: str, *, custodian: bool = False
) -> etree._Element:
    el = _el(parent, tag)
    national = _national_organization_id(org)
    if national:
        _ii(el, "id", IDNST_OID, national)
    elif custodian:
        problems.add(path, "the custodian needs a national structure id (IDNST, FINESS or SIRET identifier)")
    else:
        for root, ext in _other_ids(org)[:1]:
            _ii(el, "id", root, ext)
    if org.get("name"):
        _el(el, "name", org["name"])
    _telecoms(el, org)
    _addr(el, (org.get("address") or [None])[0])
    return el


def _assigned(
    parent: etree._Element, tag: str, actor: _Actor, problems: _Problems, *, with_code: bool = True
) -> etree._Element:
    """assignedAuthor / assignedEntity: id (IDNPS), code (specialty), telecom, person or device, org."""
    el = _el(parent, tag)
    if actor.person is not None:
        national = _national_practitioner_id(actor.person)
        if national:
            _ii(el, "id", IDNPS_OID, national)
        else:
            problems.add(actor.path, "the practitioner needs a national id (IDNPS, RPPS or ADELI identifier)")
        if with_code and actor.specialty:
            code, cs, display = actor.specialty
            _el(el, "code", code=code, displayName=display, codeSystem=cs)
        _telecoms(el, actor.role or actor.person)
        person = _el(el, "assignedPerson")
        _person_name(person, _official_name(actor.person), problems, actor.path + " (name)")
    elif actor.device is not None:
        ids = _other_ids(actor.device)
        if ids:
            _ii(el, "id", ids[0][0], ids[0][1])
        else:
            _el(el, "id", nullFlavor="UNK")
        device = _el(el, "assignedAuthoringDevice")
        names = actor.device.get("deviceName") or []
        model = actor.device.get("modelNumber") or (names[0].get("name") if names else None) or "Logiciel"
        _el(device, "manufacturerModelName", model)
        _el(device, "softwareName", (names[0].get("name") if names else None) or model)
    return el


def _document_id(document: dict[str, Any]) -> tuple[str, str | None] | None:
    mi = document.get("masterIdentifier") or {}
    value, system = mi.get("value"), mi.get("system")
    if not value:
        return None
    if system in (None, "urn:ietf:rfc:3986"):
        base, _, ext = value.partition("^")
        if base.startswith("urn:oid:") and OID_RE.match(base[8:]):
            return base[8:], ext or None
        if base.startswith("urn:uuid:") and UUID_RE.match(base[9:]):
            return base[9:].upper(), ext or None
        if OID_RE.match(base):
            return base, ext or None
        return None
    oid = oid_for_system(system)
    return (oid, value) if oid else None


def _derived_oid(*parts: str) -> str:
    return "2.25." + str(uuid.uuid5(_NAMESPACE, "/".join(parts)).int)


def _secondary_id(document: dict[str, Any]) -> tuple[str, str | None] | None:
    for ident in document.get("identifier") or []:
        if ident.get("use") != "secondary" or not ident.get("value"):
            continue
        system, value = ident.get("system"), ident["value"]
        if system == "urn:ietf:rfc:3986" and value.startswith("urn:oid:") and OID_RE.match(value[8:]):
            return value[8:], None
        oid = oid_for_system(system)
        if oid:
            return oid, value
    return None


def _is_ins_qualified(patient: dict[str, Any]) -> bool:
    ext = _ext(patient, FR_IDENTITY_RELIABILITY)
    if ext is None:
        return True
    for sub in ext.get("extension") or []:
        if sub.get("url") == "identityStatus":
            return (sub.get("valueCoding") or {}).get("code") == "VALI"
    return True


def _birth_place(patient: dict[str, Any]) -> tuple[str | None, str | None]:
    """(COG code, city) of the birth place: FR Core insee-code extension, else the address district."""
    ext = _ext(patient, BIRTH_PLACE)
    if ext is None:
        return None, None
    address = ext.get("valueAddress") or {}
    code = ((_ext(address, INSEE_CODE) or {}).get("valueCoding") or {}).get("code") or address.get("district")
    return code, address.get("city")


def _record_target(root: etree._Element, patient: dict[str, Any], problems: _Problems) -> None:
    role = _el(_el(root, "recordTarget"), "patientRole")
    ins_order = [INS_NIR_OID, INS_NIA_OID, INS_NIR_TEST_OID, INS_NIR_DEMO_OID]
    ids = _other_ids(patient)
    ins = sorted((i for i in ids if i[0] in INS_OIDS), key=lambda i: ins_order.index(i[0]))
    send_ins = bool(ins) and _is_ins_qualified(patient)
    others = [i for i in ids if i[0] not in INS_OIDS]
    chosen = ([ins[0]] if send_ins else []) + others
    if not chosen:
        problems.add("Patient.identifier", "the patient needs an INS or an identifier with an OID system (IPP)")
    for root_oid, ext in chosen:
        _ii(role, "id", root_oid, ext)
    _addr(role, next((a for a in patient.get("address") or [] if a.get("use") in (None, "home")), None))
    _telecoms(role, patient)
    p = _el(role, "patient", classCode="PSN")
    name = _el(p, "name")
    official = _name_of(patient, "official") or _official_name(patient)
    usual = _name_of(patient, "usual")
    birth_place_code, birth_city = _birth_place(patient)
    if send_ins:
        birth_list = ((_ext(official or {}, BIRTH_LIST_GIVEN_NAME) or {}).get("valueString") or "").strip()
        given = (official or {}).get("given") or []
        first = given[0] if given else (birth_list.split()[0] if birth_list else None)
        birth_list = birth_list or " ".join(given)
        missing = [
            label
            for label, value in (
                ("birth name (official name family)", (official or {}).get("family")),
                ("birth given names", birth_list),
                ("first birth given name", first),
                ("birth date", patient.get("birthDate")),
                ("birth place COG code (patient-birthPlace)", birth_place_code),
                ("sex", patient.get("gender")),
            )
            if not value
        ]
        if missing:
            problems.add("Patient", "the INS is sent only with its traits; missing: " + ", ".join(missing))
        if official and official.get("family"):
            _el(name, "family", official["family"], qualifier="BR")
        if birth_list:
            _el(name, "given", birth_list)
        if first:
            _el(name, "given", first, qualifier="BR")
        if usual and usual.get("family"):
            _el(name, "family", usual["family"], qualifier="CL")
        if usual and usual.get("given"):
            _el(name, "given", usual["given"][0], qualifier="CL")
    else:
        n = official or {}
        if not n.get("family") or not n.get("given"):
            problems.add("Patient.name", "a family name and a given name are required")
        if n.get("family"):
            _el(name, "family", n["family"], qualifier="BR" if n.get("use") == "official" else None)
        for g in n.get("given") or []:
            _el(name, "given", g)
    gender = GENDER_CODES.get(patient.get("gender") or "", "UN")
    _el(p, "administrativeGenderCode", code=gender, displayName=GENDERS[gender][1], codeSystem=GENDERS[gender][0])
    if patient.get("birthDate"):
        _el(p, "birthTime", value=fhir_to_ts(patient["birthDate"]))
    if birth_place_code or birth_city:
        addr = _el(_el(_el(p, "birthplace"), "place"), "addr")
        if birth_place_code:
            _el(addr, "county", birth_place_code)
        if birth_city:
            _el(addr, "city", birth_city)


def build_header(
    document: dict[str, Any],
    resources: Mapping[str, dict[str, Any]],
    problems: _Problems,
    *,
    templates: list[tuple[str, str | None]],
    document_version: str | None = None,
) -> etree._Element:
    """The ClinicalDocument with its whole CI-SIS header (everything before `component`), for any volet:
    `templates` are the templateIds after the HL7 France and CI-SIS ones. Problems are collected."""
    resolve = _Resolver(document, resources)
    doc_id = document.get("id") or "unsaved"
    version = document_version or (document.get("meta") or {}).get("versionId") or "1"

    root = etree.Element(f"{{{HL7}}}ClinicalDocument", nsmap={None: HL7, "xsi": XSI})
    _el(root, "realmCode", code="FR")
    _el(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    for template, extension in [(TEMPLATE_HL7_FR, None), (TEMPLATE_CI_SIS, None), *templates]:
        _el(root, "templateId", root=template, extension=extension)

    ident = _document_id(document)
    if ident is None:
        ident = (_derived_oid("DocumentReference", doc_id, version), None)
    _ii(root, "id", ident[0], ident[1])

    type_code = _pick(document.get("type"), TYPE_CODES)
    if type_code is None:
        problems.add(
            "DocumentReference.type", "a document type of the CI-SIS XDS typeCode set (JDV_J07, LOINC) is required"
        )
        type_code = ("", "2.16.840.1.113883.6.1", "")
    _el(root, "code", code=type_code[0], displayName=type_code[2], codeSystem=type_code[1])
    attachment = ((document.get("content") or [{}])[0].get("attachment")) or {}
    title = document.get("description") or attachment.get("title") or (document.get("type") or {}).get("text")
    _el(root, "title", title or type_code[2])

    created = document.get("date") or attachment.get("creation")
    if not created:
        problems.add("DocumentReference.date", "the document's creation date is required")
    created_ts = fhir_to_ts(created) or "19700101000000+0000"
    _el(root, "effectiveTime", value=created_ts)

    conf = "N"
    for label in document.get("securityLabel") or []:
        for c in _codings(label):
            if oid_for_system(c.get("system")) == CONFIDENTIALITY_OID and c.get("code") in CONFIDENTIALITY:
                conf = c["code"]
    _el(root, "confidentialityCode", code=conf, displayName=CONFIDENTIALITY[conf], codeSystem=CONFIDENTIALITY_OID)
    language = attachment.get("language") or "fr-FR"
    if len(language) != 5 or language[2] != "-":
        language = "fr-FR"
    _el(root, "languageCode", code=language)

    # Replacement: the parent document and its set.
    parent_doc = None
    for rel in document.get("relatesTo") or []:
        if rel.get("code") == "replaces":
            parent_doc = resolve(rel.get("target")) or {"masterIdentifier": (rel.get("target") or {}).get("identifier")}
    parent_id = _document_id(parent_doc) if parent_doc else None
    set_id = _secondary_id(document)
    if set_id is None and parent_doc:
        set_id = _secondary_id(parent_doc)
    if set_id is None:
        set_id = (_derived_oid("setId", parent_doc.get("id") if parent_doc and parent_doc.get("id") else doc_id), None)
    _ii(root, "setId", set_id[0], set_id[1])
    _el(root, "versionNumber", value="2" if parent_doc else "1")

    patient = resolve(document.get("subject"))
    if patient is None or patient.get("resourceType") != "Patient":
        problems.add("DocumentReference.subject", "a Patient the server holds is required")
        patient = {"resourceType": "Patient"}
    _record_target(root, patient, problems)

    actors = [
        a
        for i, ref in enumerate(document.get("author") or [])
        if (a := _actor(ref, resolve, f"DocumentReference.author[{i}]"))
    ]
    people = [a for a in actors if a.person is not None or a.device is not None]
    orgs = [a.organization for a in actors if a.person is None and a.device is None and a.organization]
    if not people:
        problems.add(
            "DocumentReference.author", "at least one Practitioner, PractitionerRole or Device author is required"
        )
    custodian = resolve(document.get("custodian"))
    if custodian is not None and custodian.get("resourceType") != "Organization":
        custodian = None
    fallback_org = next((a.organization for a in people if a.organization), None) or (orgs[0] if orgs else None)
    custodian = custodian or fallback_org
    for actor in people:
        actor.organization = actor.organization or (orgs[0] if orgs else None) or custodian
        author = _el(root, "author")
        _el(author, "time", value=created_ts)
        assigned = _assigned(author, "assignedAuthor", actor, problems)
        if actor.organization:
            _organization(assigned, "representedOrganization", actor.organization, problems, actor.path)

    if custodian is None:
        problems.add("DocumentReference.custodian", "a custodian Organization (or an author organisation) is required")
    else:
        cust = _el(_el(root, "custodian"), "assignedCustodian")
        _organization(
            cust, "representedCustodianOrganization", custodian, problems, "DocumentReference.custodian", custodian=True
        )

    legal = (
        _actor(document.get("authenticator"), resolve, "DocumentReference.authenticator")
        if document.get("authenticator")
        else None
    )
    if legal is None or legal.person is None:
        legal = next((a for a in people if a.person is not None), None)
    if legal is None:
        problems.add("DocumentReference.authenticator", "a Practitioner legal authenticator is required")
    else:
        la = _el(root, "legalAuthenticator")
        _el(la, "time", value=created_ts)
        _el(la, "signatureCode", code="S")
        entity = _assigned(la, "assignedEntity", legal, problems, with_code=False)
        if legal.organization:
            _organization(entity, "representedOrganization", legal.organization, problems, legal.path)

    context = document.get("context") or {}
    period = context.get("period") or {}
    start = fhir_to_ts(period.get("start")) or created_ts
    end = fhir_to_ts(period.get("end"))
    practice = _pick(context.get("practiceSetting"), PRACTICE_SETTINGS)
    if practice is None:
        problems.add("DocumentReference.context.practiceSetting", "a CI-SIS practice setting (JDV_J04) is required")
    facility = _pick(context.get("facilityType"), FACILITY_TYPES)
    if facility is None:
        problems.add("DocumentReference.context.facilityType", "a CI-SIS facility type (JDV_J02) is required")

    event = _el(_el(root, "documentationOf"), "serviceEvent")
    for concept in context.get("event") or []:
        c = next((c for c in _codings(concept) if oid_for_system(c.get("system")) and c.get("code")), None)
        if c:
            _el(
                event,
                "code",
                code=c["code"],
                displayName=c.get("display") or c["code"],
                codeSystem=oid_for_system(c.get("system")),
            )
            break
    eff = _el(event, "effectiveTime")
    _el(eff, "low", value=start)
    if end:
        _el(eff, "high", value=end)
    performer_actor = next((a for a in people if a.person is not None), None)
    if performer_actor is not None:
        performer = _el(event, "performer", typeCode="PRF")
        entity = _assigned(performer, "assignedEntity", performer_actor, problems, with_code=False)
        org = performer_actor.organization or custodian
        if org is not None:
            rep = _organization(entity, "representedOrganization", org, problems, performer_actor.path)
            if practice:
                _el(rep, "standardIndustryClassCode", code=practice[0], displayName=practice[2], codeSystem=practice[1])

    if parent_doc is not None:
        if parent_id is None:
            problems.add("DocumentReference.relatesTo", "the replaced document needs a masterIdentifier")
        else:
            related = _el(root, "relatedDocument", typeCode="RPLC")
            _ii(_el(related, "parentDocument"), "id", parent_id[0], parent_id[1])

    encounter = _el(_el(root, "componentOf"), "encompassingEncounter")
    enc_eff = _el(encounter, "effectiveTime")
    _el(enc_eff, "low", value=start)
    if end:
        _el(enc_eff, "high", value=end)
    hcf = _el(_el(encounter, "location"), "healthCareFacility")
    if facility:
        _el(hcf, "code", code=facility[0], displayName=facility[2], codeSystem=facility[1])

    return root


def generate_n1(
    document: dict[str, Any],
    resources: Mapping[str, dict[str, Any]],
    pdf: bytes,
    *,
    media_type: str = "application/pdf",
    document_version: str | None = None,
) -> bytes:
    """The CDA R2 N1 document (UTF-8 bytes) for a DocumentReference; see the module docstring."""
    problems = _Problems()
    root = build_header(
        document, resources, problems, templates=[(TEMPLATE_XDS_SD, None)], document_version=document_version
    )
    if not pdf:
        problems.add("DocumentReference.content.attachment", "the PDF is empty or missing")
    body = _el(_el(root, "component"), "nonXMLBody")
    _el(body, "text", base64.b64encode(pdf).decode("ascii"), mediaType=media_type, representation="B64")

    if problems.issues:
        raise CdaGenerationError(problems.issues)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


__all__ = ["CdaGenerationError", "build_header", "generate_n1"]
