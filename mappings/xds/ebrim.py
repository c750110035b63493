"""XDS DocumentEntry (ebRIM ExtrinsicObject) and SubmissionSet (RegistryPackage) ↔ FHIR R4, per IHE MHD
(DocumentReference, List with code `submissionset`) and the ANS PDSm profile (French code systems).

| XDS DocumentEntry                      | DocumentReference                                                 |
| -------------------------------------- | ----------------------------------------------------------------- |
| entryUUID (`@id`, urn:uuid)            | identifier (use official, urn:ietf:rfc:3986)                      |
| uniqueId (ExternalIdentifier)          | masterIdentifier (`urn:oid:<oid>`, `urn:oid:<root>^<ext>`)        |
| patientId (ExternalIdentifier, CX)     | subject (Reference.identifier; or the Patient's INS)              |
| `@mimeType`, size, hash, languageCode, creationTime, title (Name), URI | content.attachment                |
| comments (Description)                 | description                                                       |
| `@status` Approved / Deprecated        | status current / superseded                                       |
| typeCode, classCode                    | type, category                                                    |
| confidentialityCode (1..*)             | securityLabel                                                     |
| formatCode                             | content.format                                                    |
| eventCodeList                          | context.event                                                     |
| serviceStartTime / serviceStopTime     | context.period                                                    |
| healthcareFacilityTypeCode, practiceSettingCode | context.facilityType, context.practiceSetting            |
| sourcePatientId + sourcePatientInfo    | context.sourcePatientInfo (a contained Patient)                   |
| referenceIdList (CXi)                  | context.related (identifier, type = the CXi.5 type URN)           |
| author (authorPerson, …Institution, …Specialty, …Role, …Telecommunication) | author (contained PractitionerRole) |
| legalAuthenticator (XCN)               | authenticator (a contained Practitioner)                          |
| RPLC / APND / XFRM / signs Association | relatesTo                                                         |

SubmissionSet ↔ List: uniqueId and entryUUID → identifier, sourceId → ihe-sourceId extension,
submissionTime → date, contentTypeCode → ihe-designationType extension, author → source (contained),
Name/Description → title/note, patientId → subject, HasMember → entry.

XDS times are UTC (`YYYYMMDDHHMMSS`); coding schemes are OIDs (mappings/cda/systems.py converts), except
`URN` (the code is itself a URI: system urn:ietf:rfc:3986).

`submit_objects_request(documents, …)` builds a `lcm:SubmitObjectsRequest` (the metadata of ITI-41
Provide and Register); `parse_submission(xml)` reads one (or a ProvideAndRegisterDocumentSetRequest, a
SOAP envelope, an XDM METADATA.XML) back.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from mappings.cda.systems import (
    FR_CORE_0203,
    INS_OIDS,
    fhir_to_utc_ts,
    oid_for_system,
    system_for_oid,
    utc_ts_to_fhir,
)
from mappings.xds import datatypes as dt

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
NS = {"rim": RIM, "lcm": LCM}

DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"  # stable DocumentEntry objectType
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"  # classification node of a SubmissionSet
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
RELATIONS = {
    "urn:ihe:iti:2007:AssociationType:RPLC": "replaces",
    "urn:ihe:iti:2007:AssociationType:APND": "appends",
    "urn:ihe:iti:2007:AssociationType:XFRM": "transforms",
    "urn:ihe:iti:2007:AssociationType:signs": "signs",
}
RELATION_TYPES = {code: assoc for assoc, code in RELATIONS.items()}

CODED = {  # DocumentEntry classification scheme → (DocumentReference path, cardinality)
    DE_TYPE: "type",
    DE_CLASS: "category",
    DE_CONFIDENTIALITY: "securityLabel",
    DE_FORMAT: "format",
    DE_EVENT: "event",
    DE_FACILITY: "facilityType",
    DE_PRACTICE: "practiceSetting",
}
URN_SCHEME = "URN"
URI_SYSTEM = "urn:ietf:rfc:3986"
MHD = "https://profiles.ihe.net/ITI/MHD"
SOURCE_ID_EXT = f"{MHD}/StructureDefinition/ihe-sourceId"
DESIGNATION_EXT = f"{MHD}/StructureDefinition/ihe-designationType"
AUTHOR_ORG_EXT = f"{MHD}/StructureDefinition/ihe-authorOrg"
LIST_TYPES = f"{MHD}/CodeSystem/MHDlistTypes"
REFERENCE_ID_TYPE = "urn:ihe:iti:xds:2013:referenceIdList"
_UUID = re.compile(r"^(urn:uuid:)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class XdsError(ValueError):
    """The input is not XDS metadata we can read (or a DocumentReference we cannot express)."""


# --- small helpers ----------------------------------------------------------------------------------


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


def _sub(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _rim(tag), {k: v for k, v in attrs.items() if v is not None})


def _slot(parent: etree._Element, name: str, values: list[str]) -> None:
    values = [v for v in values if v]
    if not values:
        return
    value_list = _sub(_sub(parent, "Slot", name=name), "ValueList")
    for v in values:
        etree.SubElement(value_list, _rim("Value")).text = v


def _localized(parent: etree._Element, tag: str, text: str | None) -> None:
    if text:
        _sub(_sub(parent, tag), "LocalizedString", value=text)


def _slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall("rim:Slot", NS):
        out[slot.get("name") or ""] = [v.text or "" for v in slot.findall("rim:ValueList/rim:Value", NS)]
    return out


def _name(el: etree._Element, tag: str) -> str | None:
    ls = el.find(f"rim:{tag}/rim:LocalizedString", NS)
    value = ls.get("value") if ls is not None else None
    return value or None


def entry_uuid(value: str) -> str:
    """`urn:uuid:<lowercase>` for a UUID written with or without the prefix."""
    return "urn:uuid:" + value.removeprefix("urn:uuid:").lower()


def _symbolic_uuid(*parts: str) -> str:
    """A stable urn:uuid for a symbolic ebRIM id ("Document01"), derived from its submission."""
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_OID, "/".join(parts)))


def _coding_from_classification(cl: etree._Element) -> dict[str, Any]:
    scheme = (_slots(cl).get("codingScheme") or [""])[0]
    coding: dict[str, Any] = {}
    if scheme == URN_SCHEME:
        coding["system"] = URI_SYSTEM
    elif scheme:
        coding["system"] = system_for_oid(scheme)
    coding["code"] = cl.get("nodeRepresentation") or ""
    display = _name(cl, "Name")
    if display:
        coding["display"] = display
    return coding


def _classification(
    parent: etree._Element, scheme: str, object_id: str, coding: dict[str, Any], counter: Iterator[int]
) -> None:
    code = coding.get("code")
    if not code:
        return
    system = coding.get("system")
    coding_scheme = URN_SCHEME if system == URI_SYSTEM else (oid_for_system(system) or system or "")
    cl = _sub(
        parent,
        "Classification",
        classificationScheme=scheme,
        classifiedObject=object_id,
        id=f"cl{next(counter)}",
        nodeRepresentation=code,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
    )
    _slot(cl, "codingScheme", [coding_scheme])
    _localized(cl, "Name", coding.get("display") or code)


def _external_identifier(
    parent: etree._Element, scheme: str, object_id: str, value: str, name: str, counter: Iterator[int]
) -> None:
    ei = _sub(
        parent,
        "ExternalIdentifier",
        id=f"ei{next(counter)}",
        identificationScheme=scheme,
        registryObject=object_id,
        value=value,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier",
    )
    _localized(ei, "Name", name)


def unique_id_of(identifier: Mapping[str, Any] | None) -> str | None:
    """XDS uniqueId of a masterIdentifier / SubmissionSet identifier: `urn:oid:X[^ext]` → `X[^ext]`."""
    if not identifier or not identifier.get("value"):
        return None
    value, system = identifier["value"], identifier.get("system")
    if system in (None, URI_SYSTEM):
        return value.removeprefix("urn:oid:")
    oid = oid_for_system(system)
    return f"{oid}^{value}" if oid else value


def identifier_of_unique_id(unique_id: str) -> dict[str, Any]:
    if _UUID.match(unique_id):
        return {"system": URI_SYSTEM, "value": entry_uuid(unique_id)}
    return {"system": URI_SYSTEM, "value": unique_id if unique_id.startswith("urn:") else f"urn:oid:{unique_id}"}


def _hex_to_b64(value: str) -> str | None:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return None


def _b64_to_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


# --- reading ------------------------------------------------------------------------------------------

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def xml_part(raw: bytes) -> bytes:
    """The XML of a (possibly MTOM/multipart) SOAP message: from its first `<?xml` or `<` tag to the end
    of the root element, so the MIME wrapper of an ITI-41 request or response can be handed as is."""
    start = raw.find(b"<?xml")
    if start < 0:
        start = raw.find(b"<")
    if start < 0:
        raise XdsError("no XML in the message")
    body = raw[start:]
    m = re.search(rb"<(?!\?)([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)", body)
    if m is None:
        raise XdsError("no XML element in the message")
    end_tag = b"</" + (m.group(1) or b"") + m.group(2) + b">"
    end = body.rfind(end_tag)
    return body[: end + len(end_tag)] if end >= 0 else body


@dataclass
class Submission:
    """A parsed submission: the SubmissionSet as a List, its documents as DocumentReferences."""

    submission_set: dict[str, Any] | None
    documents: list[dict[str, Any]] = field(default_factory=list)


def _author(cl: etree._Element, prefix: str, n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Contained resources and the reference of one author classification (PDSm: PractitionerRole)."""
    slots = _slots(cl)
    contained: list[dict[str, Any]] = []
    person = slots.get("authorPerson", [""])[0]
    institutions = slots.get("authorInstitution") or []
    practitioner = dt.xcn_to_practitioner(person) if person else None
    organization = dt.xon_to_organization(institutions[0]) if institutions else None
    telecoms = [c for v in slots.get("authorTelecommunication") or [] if (c := dt.xtn_to_contact(v))]
    if practitioner is not None:
        practitioner = {"resourceType": "Practitioner", "id": f"{prefix}author{n}", **practitioner}
        contained.append(practitioner)
    if organization is not None:
        organization = {"resourceType": "Organization", "id": f"{prefix}author{n}-org", **organization}
        contained.append(organization)
    if practitioner is None:
        return contained, {"reference": f"#{organization['id']}"} if organization else {}
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": f"{prefix}author{n}-role",
        "practitioner": {"reference": f"#{practitioner['id']}"},
    }
    if organization is not None:
        role["organization"] = {"reference": f"#{organization['id']}"}
    roles = [{"coding": [dt.ce_to_coding(v)]} for v in slots.get("authorRole") or [] if v]
    if roles:
        role["code"] = roles
    specialties = [{"coding": [dt.ce_to_coding(v)]} for v in slots.get("authorSpecialty") or [] if v]
    if specialties:
        role["specialty"] = specialties
    if telecoms:
        role["telecom"] = telecoms
    contained.append(role)
    return contained, {"reference": f"#{role['id']}"}


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __next__(self) -> int:
        self.n += 1
        return self.n

    def __iter__(self) -> _Counter:
        return self


def _source_patient(slots: dict[str, list[str]]) -> dict[str, Any] | None:
    """sourcePatientId + sourcePatientInfo (PID-3/5/7/8/11 lines) → a contained Patient."""
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "source-patient"}
    identifiers = [dt.cx_to_identifier(v) for v in slots.get("sourcePatientId") or [] if v]
    names: list[dict[str, Any]] = []
    for line in slots.get("sourcePatientInfo") or []:
        field_name, _, value = line.partition("|")
        field_name = field_name.strip().upper()
        if field_name == "PID-3" and value:
            identifiers.append(dt.cx_to_identifier(value))
        elif field_name == "PID-5" and value:
            family, given, second, suffix, prefix, _degree, use = dt.components(value, 7)[:7]
            name: dict[str, Any] = {}
            if use == "L":
                name["use"] = "official"
            elif use == "D":
                name["use"] = "usual"
            if family:
                name["family"] = family
            givens = [g for g in (given, second) if g]
            if givens:
                name["given"] = givens
            if prefix:
                name["prefix"] = [prefix]
            if suffix:
                name["suffix"] = [suffix]
            names.append(name)
        elif field_name == "PID-7" and value:
            birth = utc_ts_to_fhir(value[:8])
            if birth:
                patient["birthDate"] = birth
        elif field_name == "PID-8" and value:
            patient["gender"] = {"M": "male", "F": "female", "O": "other", "A": "other"}.get(value, "unknown")
        elif field_name == "PID-11" and value:
            street, other, city, _state, postal, country = dt.components(value, 6)[:6]
            address = {k: v for k, v in (("city", city), ("postalCode", postal), ("country", country)) if v}
            lines = [x for x in (street, other) if x]
            if lines:
                address["line"] = lines
            if address:
                patient.setdefault("address", []).append(address)
    unique = []
    for ident in identifiers:
        if ident not in unique:
            unique.append(ident)
    if unique:
        patient["identifier"] = unique
    if names:
        patient["name"] = names
    return patient if len(patient) > 2 else None


def document_reference_from_extrinsic(eo: etree._Element, *, symbolic_base: str = "") -> dict[str, Any]:
    """One ExtrinsicObject (XDS DocumentEntry) → a DocumentReference (no id; authors contained)."""
    slots = _slots(eo)
    object_id = eo.get("id") or ""
    dr: dict[str, Any] = {"resourceType": "DocumentReference"}
    contained: list[dict[str, Any]] = []
    context: dict[str, Any] = {}
    content: dict[str, Any] = {}
    attachment: dict[str, Any] = {}

    for ei in eo.findall("rim:ExternalIdentifier", NS):
        scheme, value = ei.get("identificationScheme"), ei.get("value") or ""
        if scheme == DE_UNIQUE_ID:
            dr["masterIdentifier"] = identifier_of_unique_id(value)
        elif scheme == DE_PATIENT_ID:
            ident = dt.cx_to_identifier(value)
            root = oid_for_system(ident.get("system"))
            if root in INS_OIDS:
                ident["type"] = {"coding": [{"system": FR_CORE_0203, "code": INS_OIDS[root]}]}
            dr["subject"] = {"type": "Patient", "identifier": ident}
    uid = entry_uuid(object_id) if _UUID.match(object_id) else _symbolic_uuid(symbolic_base, object_id)
    dr["identifier"] = [{"use": "official", "system": URI_SYSTEM, "value": uid}]
    status = eo.get("status")
    dr["status"] = "superseded" if status == DEPRECATED else "current"

    authors = []
    for cl in eo.findall("rim:Classification", NS):
        scheme = cl.get("classificationScheme")
        if scheme == DE_AUTHOR:
            resources, ref = _author(cl, "", len(authors) + 1)
            contained.extend(resources)
            if ref:
                authors.append(ref)
            continue
        target = CODED.get(scheme or "")
        if target is None:
            continue
        concept = {"coding": [_coding_from_classification(cl)]}
        if target == "type":
            dr["type"] = concept
        elif target in ("category", "securityLabel"):
            dr.setdefault(target, []).append(concept)
        elif target == "format":
            content["format"] = concept["coding"][0]
        elif target == "event":
            context.setdefault("event", []).append(concept)
        else:
            context[target] = concept
    if authors:
        dr["author"] = authors
    legal = (slots.get("legalAuthenticator") or [""])[0]
    if legal:
        contained.append({"resourceType": "Practitioner", "id": "legal-authenticator", **dt.xcn_to_practitioner(legal)})
        dr["authenticator"] = {"reference": "#legal-authenticator"}

    if eo.get("mimeType"):
        attachment["contentType"] = eo.get("mimeType")
    if slots.get("languageCode"):
        attachment["language"] = slots["languageCode"][0]
    if slots.get("URI"):
        attachment["url"] = "".join(slots["URI"]) if len(slots["URI"]) == 1 else _uri_slot(slots["URI"])
    if slots.get("size") and slots["size"][0].isdigit():
        attachment["size"] = int(slots["size"][0])
    if slots.get("hash"):
        digest = _hex_to_b64(slots["hash"][0])
        if digest:
            attachment["hash"] = digest
    title = _name(eo, "Name")
    if title:
        attachment["title"] = title
    created = utc_ts_to_fhir((slots.get("creationTime") or [""])[0])
    if created:
        attachment["creation"] = created
    description = _name(eo, "Description")
    if description:
        dr["description"] = description
    content = {"attachment": attachment, **content}
    dr["content"] = [content]

    start = utc_ts_to_fhir((slots.get("serviceStartTime") or [""])[0])
    stop = utc_ts_to_fhir((slots.get("serviceStopTime") or [""])[0])
    period = {k: v for k, v in (("start", start), ("end", stop)) if v}
    if period:
        context["period"] = period
    source = _source_patient(slots)
    if source is not None:
        contained.append(source)
        context["sourcePatientInfo"] = {"reference": "#source-patient"}
    related = []
    for value in slots.get(REFERENCE_ID_TYPE) or []:
        ident_value, _, _, hd, type_code = dt.components(value, 5)[:5]
        ident: dict[str, Any] = {}
        if type_code:
            ident["type"] = {"coding": [{"system": URI_SYSTEM, "code": type_code}]}
        oid = dt.authority(hd)
        if oid:
            ident["system"] = dt.identifier_system(oid)
        ident["value"] = ident_value
        related.append({"identifier": ident})
    if related:
        context["related"] = related
    if context:
        dr["context"] = context
    if contained:
        dr["contained"] = contained
    # Keep the FHIR element order readable (resourceType, contained, identifiers, ...).
    order = ["resourceType", "contained", "masterIdentifier", "identifier", "status", "type", "category", "subject"]
    return {k: dr[k] for k in order if k in dr} | {k: v for k, v in dr.items() if k not in order}


def _uri_slot(values: list[str]) -> str:
    """XDS splits a long URI slot into `n|part` values."""
    parts = sorted((v.split("|", 1) for v in values if "|" in v), key=lambda p: int(p[0]) if p[0].isdigit() else 0)
    return "".join(p[1] for p in parts)


def list_from_registry_package(rp: etree._Element) -> dict[str, Any]:
    """A RegistryPackage (XDS SubmissionSet) → a List (MHD SubmissionSet), without entries."""
    slots = _slots(rp)
    out: dict[str, Any] = {"resourceType": "List", "status": "current", "mode": "working"}
    contained: list[dict[str, Any]] = []
    extensions: list[dict[str, Any]] = []
    identifiers: list[dict[str, Any]] = []
    object_id = rp.get("id") or ""
    if _UUID.match(object_id):
        identifiers.append({"use": "official", "system": URI_SYSTEM, "value": entry_uuid(object_id)})
    for ei in rp.findall("rim:ExternalIdentifier", NS):
        scheme, value = ei.get("identificationScheme"), ei.get("value") or ""
        if scheme == SS_UNIQUE_ID:
            identifiers.append({"use": "usual", **identifier_of_unique_id(value)})
        elif scheme == SS_SOURCE_ID:
            extensions.append({"url": SOURCE_ID_EXT, "valueIdentifier": identifier_of_unique_id(value)})
        elif scheme == SS_PATIENT_ID:
            out["subject"] = {"type": "Patient", "identifier": dt.cx_to_identifier(value)}
    for cl in rp.findall("rim:Classification", NS):
        scheme = cl.get("classificationScheme")
        if scheme == SS_AUTHOR:
            resources, ref = _author(cl, "ss-", 1)
            contained.extend(resources)
            if ref:
                out["source"] = ref
        elif scheme == SS_CONTENT_TYPE:
            extensions.append(
                {"url": DESIGNATION_EXT, "valueCodeableConcept": {"coding": [_coding_from_classification(cl)]}}
            )
    if contained:
        out["contained"] = contained
    if extensions:
        out["extension"] = extensions
    if identifiers:
        out["identifier"] = identifiers
    out["code"] = {"coding": [{"system": LIST_TYPES, "code": "submissionset", "display": "Submission Set"}]}
    title = _name(rp, "Name")
    if title:
        out["title"] = title
    submitted = utc_ts_to_fhir((slots.get("submissionTime") or [""])[0])
    if submitted:
        out["date"] = submitted
    note = _name(rp, "Description")
    if note:
        out["note"] = [{"text": note}]
    order = ["resourceType", "contained", "extension", "identifier", "status", "mode", "title", "code", "subject"]
    return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


def parse_submission(raw: bytes) -> Submission:
    """The SubmissionSet and DocumentEntries of an XDS submission (SubmitObjectsRequest, a
    ProvideAndRegisterDocumentSetRequest, a SOAP/MTOM message or an XDM METADATA.XML)."""
    try:
        root = etree.fromstring(xml_part(raw), parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise XdsError(f"not well-formed XML: {exc}") from exc
    objects = root.find(".//rim:RegistryObjectList", NS)
    if objects is None:
        raise XdsError("no ebRIM RegistryObjectList in the message")
    # The SubmissionSet is the RegistryPackage classified by the SubmissionSet node (inside it, or beside).
    classified = {
        c.get("classifiedObject")
        for c in objects.iter(_rim("Classification"))
        if c.get("classificationNode") == SUBMISSION_SET
    }
    packages = [rp for rp in objects.findall("rim:RegistryPackage", NS) if rp.get("id") in classified]
    submission_set = list_from_registry_package(packages[0]) if packages else None
    ss_id = packages[0].get("id") if packages else None
    base = unique_id_of(
        next((i for i in (submission_set or {}).get("identifier", []) if i.get("use") == "usual"), None)
    )
    documents: dict[str, dict[str, Any]] = {}
    for eo in objects.findall("rim:ExtrinsicObject", NS):
        documents[eo.get("id") or ""] = document_reference_from_extrinsic(eo, symbolic_base=base or "")
    entries = []
    for assoc in objects.findall("rim:Association", NS):
        kind, source, target = assoc.get("associationType"), assoc.get("sourceObject"), assoc.get("targetObject")
        if kind == HAS_MEMBER and source == ss_id and target in documents:
            entries.append({"item": {"type": "DocumentReference", "identifier": documents[target]["identifier"][0]}})
        elif kind in RELATIONS and source in documents:
            if target in documents:
                ref = {"type": "DocumentReference", "identifier": documents[target]["identifier"][0]}
            elif target and _UUID.match(target):
                ref = {"type": "DocumentReference", "identifier": {"system": URI_SYSTEM, "value": entry_uuid(target)}}
            else:
                continue  # e.g. "signs" targeting the SubmissionSet: not a DocumentReference relation
            documents[source].setdefault("relatesTo", []).append({"code": RELATIONS[kind], "target": ref})
    if submission_set is not None and entries:
        submission_set["entry"] = entries
    return Submission(submission_set, list(documents.values()))


# --- writing ------------------------------------------------------------------------------------------


class _Resolver:
    """References of a DocumentReference → resources: contained ones, or the caller's map ("Type/id")."""

    def __init__(self, owner: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]]):
        self.contained = {f"#{r.get('id')}": r for r in owner.get("contained") or [] if r.get("id")}
        self.resources = resources

    def __call__(self, ref: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        target = (ref or {}).get("reference")
        if not target:
            return None
        if target.startswith("#"):
            return self.contained.get(target)
        key = "/".join(target.split("/_history/")[0].split("/")[-2:])
        return self.resources.get(target) or self.resources.get(key)


def _author_slots(
    ref: Mapping[str, Any], resolve: _Resolver, orgs: list[Mapping[str, Any]]
) -> dict[str, list[str]] | None:
    """authorPerson / authorInstitution / authorRole / authorSpecialty of one author reference."""
    resource = resolve(ref)
    person: Mapping[str, Any] | None = None
    org: Mapping[str, Any] | None = None
    role: Mapping[str, Any] | None = None
    if resource is None:
        # A logical reference (e.g. from a CDA header): its identifier and display.
        kind, ident = ref.get("type"), ref.get("identifier")
        if not ident:
            return None
        if kind == "Organization":
            org = {"name": ref.get("display"), "identifier": [ident]}
        else:
            person = {"identifier": [ident], "name": [{"family": ref.get("display") or ""}]}
    elif resource.get("resourceType") == "PractitionerRole":
        role = resource
        person = resolve(resource.get("practitioner"))
        org = resolve(resource.get("organization"))
    elif resource.get("resourceType") == "Practitioner":
        person = resource
    elif resource.get("resourceType") == "Organization":
        org = resource
    if person is not None and org is None and orgs:
        org = orgs[0]
    slots: dict[str, list[str]] = {}
    xcn = dt.practitioner_to_xcn(dict(person)) if person is not None else None
    if xcn:
        slots["authorPerson"] = [xcn]
    xon = dt.organization_to_xon(dict(org)) if org is not None else None
    if xon:
        slots["authorInstitution"] = [xon]
    if role is not None:
        for key, element in (("authorRole", "code"), ("authorSpecialty", "specialty")):
            values = [
                ce
                for concept in role.get(element) or []
                for c in concept.get("coding") or []
                if (ce := dt.coding_to_ce(c))
            ]
            if values:
                slots[key] = values
        telecoms = [x for c in role.get("telecom") or [] if (x := dt.contact_to_xtn(c))]
        if telecoms:
            slots["authorTelecommunication"] = telecoms
    return slots or None


def _author_classifications(
    parent: etree._Element,
    scheme: str,
    object_id: str,
    refs: list[Mapping[str, Any]],
    resolve: _Resolver,
    counter: Iterator[int],
) -> None:
    resolved = [(ref, resolve(ref)) for ref in refs]
    orgs = [r for ref, r in resolved if r and r.get("resourceType") == "Organization"]
    orgs += [
        {"name": ref.get("display"), "identifier": [ref["identifier"]]}
        for ref, r in resolved
        if r is None and ref.get("type") == "Organization" and ref.get("identifier")
    ]
    has_person = any(
        (r and r.get("resourceType") in ("Practitioner", "PractitionerRole"))
        or (r is None and ref.get("type") != "Organization")
        for ref, r in resolved
    )
    for ref, r in resolved:
        is_org = (r is not None and r.get("resourceType") == "Organization") or (
            r is None and ref.get("type") == "Organization"
        )
        if is_org and has_person:
            continue  # the institution of the person authors
        slots = _author_slots(ref, resolve, orgs)
        if not slots:
            continue
        cl = _sub(
            parent,
            "Classification",
            classificationScheme=scheme,
            classifiedObject=object_id,
            id=f"cl{next(counter)}",
            nodeRepresentation="",
            objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
        )
        for name in ("authorPerson", "authorInstitution", "authorRole", "authorSpecialty", "authorTelecommunication"):
            if name in slots:
                _slot(cl, name, slots[name])


def _patient_cx(document: Mapping[str, Any], resolve: _Resolver) -> str | None:
    """The XDS patientId: the subject's INS (NH), from the Patient or from Reference.identifier."""
    subject = document.get("subject") or {}
    patient = resolve(subject)
    candidates = list((patient or {}).get("identifier") or [])
    if subject.get("identifier"):
        candidates.append(subject["identifier"])
    ranked = sorted(
        (i for i in candidates if oid_for_system(i.get("system")) in INS_OIDS),
        key=lambda i: list(INS_OIDS).index(oid_for_system(i.get("system")) or ""),
    )
    if ranked:
        return dt.identifier_to_cx(ranked[0], "NH")
    for ident in candidates:
        cx = dt.identifier_to_cx(ident)
        if cx:
            return cx
    return None


def _source_patient_slots(patient: Mapping[str, Any] | None) -> dict[str, list[str]]:
    if not patient:
        return {}
    out: dict[str, list[str]] = {}
    ids = [cx for i in patient.get("identifier") or [] if (cx := dt.identifier_to_cx(i))]
    local = [
        cx
        for i, cx in zip(patient.get("identifier") or [], ids, strict=False)
        if oid_for_system(i.get("system")) not in INS_OIDS
    ]
    if ids:
        out["sourcePatientId"] = [(local or ids)[0]]
    info = []
    for name in patient.get("name") or []:
        use = {"official": "L", "usual": "D"}.get(name.get("use") or "", "")
        given = name.get("given") or []
        parts = [
            dt.escape(name.get("family") or ""),
            dt.escape(given[0]) if given else "",
            dt.escape(" ".join(given[1:])) if len(given) > 1 else "",
            dt.escape((name.get("suffix") or [""])[0]),
            dt.escape((name.get("prefix") or [""])[0]),
            "",
            use,
        ]
        info.append("PID-5|" + dt.join(parts))
    if patient.get("birthDate"):
        info.append("PID-7|" + patient["birthDate"].replace("-", ""))
    if patient.get("gender"):
        info.append("PID-8|" + {"male": "M", "female": "F", "other": "O"}.get(patient["gender"], "U"))
    if info:
        out["sourcePatientInfo"] = info
    return out


def extrinsic_object(
    document: Mapping[str, Any],
    *,
    object_id: str,
    resources: Mapping[str, Mapping[str, Any]] | None = None,
    counter: Iterator[int] | None = None,
    submission_time: str | None = None,
) -> etree._Element:
    """A DocumentReference (its references resolved through `resources` or its contained resources) →
    an ebRIM ExtrinsicObject (stable DocumentEntry). Raises XdsError when uniqueId or patientId is missing."""
    counter = counter or _Counter()
    resolve = _Resolver(document, resources or {})
    content = (document.get("content") or [{}])[0]
    attachment = content.get("attachment") or {}
    eo = etree.Element(
        _rim("ExtrinsicObject"),
        {
            "id": object_id,
            "mimeType": attachment.get("contentType") or "application/octet-stream",
            "objectType": DOCUMENT_ENTRY,
        },
    )
    if document.get("status") == "superseded":
        eo.set("status", DEPRECATED)
    created = fhir_to_utc_ts(attachment.get("creation") or document.get("date"))
    _slot(eo, "creationTime", [created or ""])
    if submission_time:
        _slot(eo, "submissionTime", [submission_time])
    _slot(eo, "languageCode", [attachment.get("language") or ""])
    legal = resolve(document.get("authenticator"))
    if legal is not None and legal.get("resourceType") == "PractitionerRole":
        legal = resolve(legal.get("practitioner"))
    if legal is None and (document.get("authenticator") or {}).get("identifier"):
        ref = document["authenticator"]
        legal = {"identifier": [ref["identifier"]], "name": [{"family": ref.get("display") or ""}]}
    if legal is not None and legal.get("resourceType") in (None, "Practitioner"):
        _slot(eo, "legalAuthenticator", [dt.practitioner_to_xcn(dict(legal)) or ""])
    period = (document.get("context") or {}).get("period") or {}
    _slot(eo, "serviceStartTime", [fhir_to_utc_ts(period.get("start")) or ""])
    _slot(eo, "serviceStopTime", [fhir_to_utc_ts(period.get("end")) or ""])
    source_ref = (document.get("context") or {}).get("sourcePatientInfo")
    source = resolve(source_ref) or resolve(document.get("subject"))
    patient_slots = _source_patient_slots(source)
    if "sourcePatientId" not in patient_slots and (source_ref or {}).get("identifier"):
        cx = dt.identifier_to_cx(source_ref["identifier"], "PI")  # a logical reference (from a CDA header)
        if cx:
            patient_slots["sourcePatientId"] = [cx]
    for name, values in sorted(patient_slots.items(), key=lambda kv: kv[0] != "sourcePatientId"):
        _slot(eo, name, values)
    if attachment.get("hash"):
        _slot(eo, "hash", [_b64_to_hex(attachment["hash"]) or ""])
    if attachment.get("size") is not None:
        _slot(eo, "size", [str(attachment["size"])])
    url = attachment.get("url")
    if url and not url.startswith(("Binary/", "#", "urn:")) and "/Binary/" not in url:
        _slot(eo, "URI", [url])
    related = []
    for item in (document.get("context") or {}).get("related") or []:
        ident = item.get("identifier") or {}
        code = next((c.get("code") for c in (ident.get("type") or {}).get("coding") or []), None)
        if ident.get("value") and code:
            oid = oid_for_system(ident.get("system"))
            related.append(dt.join([dt.escape(ident["value"]), "", "", f"&{oid}&ISO" if oid else "", code]))
    _slot(eo, REFERENCE_ID_TYPE, related)
    _localized(eo, "Name", attachment.get("title") or document.get("description"))
    _localized(eo, "Description", document.get("description"))

    _author_classifications(eo, DE_AUTHOR, object_id, list(document.get("author") or []), resolve, counter)
    for concept in document.get("category") or []:
        for c in (concept.get("coding") or [])[:1]:
            _classification(eo, DE_CLASS, object_id, c, counter)
    for concept in document.get("securityLabel") or []:
        for c in concept.get("coding") or []:
            _classification(eo, DE_CONFIDENTIALITY, object_id, c, counter)
    for concept in (document.get("context") or {}).get("event") or []:
        for c in (concept.get("coding") or [])[:1]:
            _classification(eo, DE_EVENT, object_id, c, counter)
    if content.get("format"):
        _classification(eo, DE_FORMAT, object_id, content["format"], counter)
    for key, scheme in (("facilityType", DE_FACILITY), ("practiceSetting", DE_PRACTICE)):
        concept = (document.get("context") or {}).get(key)
        for c in ((concept or {}).get("coding") or [])[:1]:
            _classification(eo, scheme, object_id, c, counter)
    for c in ((document.get("type") or {}).get("coding") or [])[:1]:
        _classification(eo, DE_TYPE, object_id, c, counter)

    patient_cx = _patient_cx(document, resolve)
    unique_id = unique_id_of(document.get("masterIdentifier"))
    if not patient_cx or not unique_id:
        raise XdsError("a DocumentEntry needs a uniqueId (masterIdentifier) and a patientId (the subject's INS)")
    _external_identifier(eo, DE_PATIENT_ID, object_id, patient_cx, "XDSDocumentEntry.patientId", counter)
    _external_identifier(eo, DE_UNIQUE_ID, object_id, unique_id, "XDSDocumentEntry.uniqueId", counter)
    return eo


def _entry_id(document: Mapping[str, Any]) -> str:
    for ident in document.get("identifier") or []:
        if ident.get("use") == "official" and _UUID.match(str(ident.get("value") or "")):
            return entry_uuid(ident["value"])
    return "urn:uuid:" + str(uuid.uuid4())


def submit_objects_request(
    documents: list[Mapping[str, Any]],
    *,
    source_id: str,
    submission_set: Mapping[str, Any] | None = None,
    resources: Mapping[str, Mapping[str, Any]] | None = None,
    submission_time: str | None = None,
    unique_id: str | None = None,
) -> bytes:
    """An `lcm:SubmitObjectsRequest`: the SubmissionSet (from `submission_set`, a List, when given, else
    from the first document), one DocumentEntry per DocumentReference, HasMember and relation
    Associations. `source_id` is the OID of the sending system (XDSSubmissionSet.sourceId)."""
    if not documents:
        raise XdsError("a submission needs at least one document")
    resources = resources or {}
    counter = _Counter()
    ss = dict(submission_set or {})
    submission_time = submission_time or fhir_to_utc_ts(ss.get("date")) or _now_utc()
    ss_id = next(
        (
            entry_uuid(i["value"])
            for i in ss.get("identifier") or []
            if i.get("use") == "official" and _UUID.match(str(i.get("value") or ""))
        ),
        "urn:uuid:" + str(uuid.uuid4()),
    )
    unique_id = (
        unique_id
        or unique_id_of(next((i for i in ss.get("identifier") or [] if i.get("use") == "usual"), None))
        or "2.25." + str(uuid.uuid4().int)
    )

    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(request, _rim("RegistryObjectList"))
    rp = _sub(
        objects,
        "RegistryPackage",
        id=ss_id,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage",
    )
    _slot(rp, "submissionTime", [submission_time])
    _localized(rp, "Name", ss.get("title"))
    _localized(rp, "Description", next((n.get("text") for n in ss.get("note") or []), None))
    ss_resolve = _Resolver(ss, resources)
    source_ref = ss.get("source")
    author_refs = [source_ref] if source_ref else list(documents[0].get("author") or [])
    author_resolve = ss_resolve if source_ref else _Resolver(documents[0], resources)
    _author_classifications(rp, SS_AUTHOR, ss_id, author_refs, author_resolve, counter)
    designation = next(
        (e.get("valueCodeableConcept") for e in ss.get("extension") or [] if e.get("url") == DESIGNATION_EXT), None
    )
    for c in ((designation or {}).get("coding") or [])[:1]:
        _classification(rp, SS_CONTENT_TYPE, ss_id, c, counter)
    _sub(
        rp,
        "Classification",
        classificationNode=SUBMISSION_SET,
        classifiedObject=ss_id,
        id=f"cl{next(counter)}",
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
    )
    patient_cx = _patient_cx(documents[0], _Resolver(documents[0], resources))
    if not patient_cx:
        raise XdsError("the submission set needs a patientId (the patient's INS)")
    _external_identifier(rp, SS_PATIENT_ID, ss_id, patient_cx, "XDSSubmissionSet.patientId", counter)
    _external_identifier(rp, SS_SOURCE_ID, ss_id, source_id, "XDSSubmissionSet.sourceId", counter)
    _external_identifier(rp, SS_UNIQUE_ID, ss_id, unique_id, "XDSSubmissionSet.uniqueId", counter)

    ids = [_entry_id(d) for d in documents]
    by_master = {unique_id_of(d.get("masterIdentifier")): i for d, i in zip(documents, ids, strict=True)}
    for document, object_id in zip(documents, ids, strict=True):
        objects.append(extrinsic_object(document, object_id=object_id, resources=resources, counter=counter))
    for object_id in ids:
        assoc = _sub(
            objects,
            "Association",
            associationType=HAS_MEMBER,
            id=f"urn:uuid:{uuid.uuid4()}",
            sourceObject=ss_id,
            targetObject=object_id,
            objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association",
        )
        _slot(assoc, "SubmissionSetStatus", ["Original"])
    for document, object_id in zip(documents, ids, strict=True):
        for rel in document.get("relatesTo") or []:
            kind = RELATION_TYPES.get(rel.get("code") or "")
            target = _relation_target(rel.get("target") or {}, resources, by_master)
            if kind and target:
                _sub(
                    objects,
                    "Association",
                    associationType=kind,
                    id=f"urn:uuid:{uuid.uuid4()}",
                    sourceObject=object_id,
                    targetObject=target,
                    objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association",
                )
    return etree.tostring(request, xml_declaration=True, encoding="UTF-8")


def _relation_target(
    target: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]], by_master: Mapping[str | None, str]
) -> str | None:
    """The entryUUID of a related document: in this submission, or the registry's (identifier official)."""
    ident = target.get("identifier") or {}
    value = str(ident.get("value") or "")
    if _UUID.match(value):
        return entry_uuid(value)
    if unique_id_of(ident) in by_master:
        return by_master[unique_id_of(ident)]
    resolved = _Resolver({}, resources)(target)
    if resolved is not None:
        for i in resolved.get("identifier") or []:
            if i.get("use") == "official" and _UUID.match(str(i.get("value") or "")):
                return entry_uuid(i["value"])
    return None


def _now_utc() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")
