"""CDA R2 header (N1 or N3, ANS CI-SIS) → `CdaHeader` → FHIR R4 DocumentReference metadata.

`parse_header(xml)` reads the header only (the body is summarised: structured or not, media type of a
`nonXMLBody`). `document_reference_from_cda(xml)` turns it into a DocumentReference the way IHE MHD /
ANS PDSm map XDS DocumentEntry metadata, with the XDS values taken from the header as the CI-SIS
"structuration minimale" volet says:

| XDS / DocumentReference              | CDA header                                                                |
| ------------------------------------ | ------------------------------------------------------------------------- |
| uniqueId / masterIdentifier          | `id` (root, or root^extension)                                            |
| typeCode / type                      | `code`                                                                    |
| classCode / category                 | derived from `code` (table below; absent when unknown)                    |
| creationTime / date, attachment.creation | `effectiveTime`                                                      |
| confidentialityCode / securityLabel  | `confidentialityCode`                                                     |
| languageCode / attachment.language   | `languageCode`                                                            |
| patientId / subject                  | `recordTarget/patientRole/id` (INS first, then IPP), as Reference.identifier |
| author                               | `author/assignedAuthor` (person id = RPPS, organisation)                  |
| legalAuthenticator / authenticator   | `legalAuthenticator/assignedEntity`                                       |
| custodian                            | `custodian/…/representedCustodianOrganization`                            |
| eventCodeList / context.event        | `documentationOf/serviceEvent/code`                                       |
| serviceStart/StopTime / context.period | `documentationOf/serviceEvent/effectiveTime` low/high                   |
| practiceSettingCode                  | `serviceEvent/performer/…/representedOrganization/standardIndustryClassCode` |
| healthcareFacilityTypeCode           | `componentOf/encompassingEncounter/location/healthCareFacility/code`      |
| formatCode / content.format          | the volet's templateId (table below), else the N1 body's media type       |
| relatesTo                            | `relatedDocument` (RPLC → replaces, APND → appends, XFRM → transforms)     |

The subject's resource id is unknown here, so the subject is a logical reference (`Reference.identifier`,
INS when present); the caller resolves it. The parser is hardened: no DTD, no entities, no network.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from mappings.cda.systems import (
    CLASS_CODE_OID,
    FR_CORE_0203,
    IHE_FORMAT_OID,
    INS_NIA_OID,
    INS_NIR_OID,
    INS_OIDS,
    LOINC_OID,
    OID_RE,
    UUID_RE,
    V2_0203,
    system_for_oid,
    ts_to_fhir,
)

HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

# The CDA stored in a DocumentReference: XDS mimeType "text/xml" (CI-SIS / DMP choice for CDA R2).
CDA_CONTENT_TYPE = "text/xml"
CDA_MEDIA_TYPE = "application/hl7-cda+xml"  # what the $cda operation serves

# formatCode (TRE_A11 / IHE) per volet templateId; only codes we are sure of. N1 uses the body's media type.
FORMAT_BY_TEMPLATE = {
    "1.3.6.1.4.1.19376.1.3.3": ("urn:ihe:lab:xd-lab:2008", "CR d'examens de biologie médicale"),
}
FORMAT_BY_MEDIA_TYPE = {
    "application/pdf": ("urn:ihe:iti:xds-sd:pdf:2008", "Document à corps non structuré en Pdf/A-1"),
    "text/plain": ("urn:ihe:iti:xds-sd:text:2008", "Document à corps non structuré en texte brut"),
}
FORMAT_FALLBACK = ("urn:ihe:iti:xds:2017:mimeTypeSufficient", "Format given by the MIME type")

# classCode (TRE_A03-ClasseDocument) for the typeCodes whose class we know; the caller can override it.
CLASS_BY_TYPE = {
    # Comptes rendus
    "11502-2": "10",  # CR d'examens biologiques
    "18748-4": "10",  # CR d'imagerie médicale
    "11490-0": "10",  # Lettre de liaison à la sortie d'un établissement de soins
    "18761-7": "10",  # Lettre de liaison d'entrée en établissement (transfert)
    "34133-9": "10",  # Synthèse d'épisode de soins / résumé de sortie (PDSm example: 10)
    "11488-4": "10",  # Compte rendu de consultation
    "85208-7": "10",  # Compte rendu de téléexpertise (TLM-CR)
    "77436-4": "10",  # Compte rendu d'anesthésie
    "34749-2": "10",  # Consultation pré-anesthésique
    "51969-4": "10",  # Compte rendu de génétique
    "34794-8": "10",  # Fiche RCP
    "IMG-KOS": "31",  # Référence d'objets d'un examen d'imagerie
}
CLASS_DISPLAY = {"10": "Compte-rendu", "31": "Imagerie médicale"}

BIRTH_LIST_GIVEN_NAME = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"
RELATION = {"RPLC": "replaces", "APND": "appends", "XFRM": "transforms"}


class CdaError(ValueError):
    """The bytes are not a CDA R2 ClinicalDocument (or lack what a header must have)."""


# --- the parsed header --------------------------------------------------------------------------------


@dataclass(frozen=True)
class II:
    root: str | None
    extension: str | None = None
    null_flavor: str | None = None

    @property
    def unique_id(self) -> str | None:
        """XDS uniqueId form: `root` or `root^extension`."""
        if not self.root:
            return None
        return f"{self.root}^{self.extension}" if self.extension else self.root


@dataclass(frozen=True)
class CD:
    code: str | None
    code_system: str | None = None
    display: str | None = None
    code_system_name: str | None = None


@dataclass
class PersonName:
    family: list[str] = field(default_factory=list)  # unqualified family names
    given: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)
    suffix: list[str] = field(default_factory=list)
    birth_family: str | None = None  # qualifier BR: nom de naissance
    birth_given: list[str] = field(default_factory=list)  # prénoms de l'acte de naissance
    first_birth_given: str | None = None  # given qualifier BR: premier prénom
    used_family: str | None = None  # qualifier SP/CL: nom utilisé
    used_given: str | None = None  # given qualifier CL: prénom utilisé


@dataclass
class Organization:
    ids: list[II] = field(default_factory=list)
    name: str | None = None
    telecoms: list[str] = field(default_factory=list)
    industry_code: CD | None = None  # standardIndustryClassCode (practiceSettingCode)


@dataclass
class Person:
    """An assignedAuthor / assignedEntity: a person or a device, in an organisation."""

    ids: list[II] = field(default_factory=list)
    code: CD | None = None  # profession / specialty (authorSpecialty)
    name: PersonName | None = None
    device: str | None = None  # assignedAuthoringDevice softwareName / manufacturerModelName
    organization: Organization | None = None
    time: str | None = None  # author/time, legalAuthenticator/time (HL7 TS)
    function_code: CD | None = None


@dataclass
class Patient:
    ids: list[II] = field(default_factory=list)
    name: PersonName | None = None
    gender: str | None = None
    birth_time: str | None = None
    birth_place: str | None = None
    birth_place_code: str | None = None  # county = INSEE code of the commune


@dataclass
class ServiceEvent:
    ids: list[II] = field(default_factory=list)
    code: CD | None = None
    class_code: str | None = None
    low: str | None = None
    high: str | None = None
    performers: list[Person] = field(default_factory=list)


@dataclass
class RelatedDocument:
    type_code: str
    ids: list[II] = field(default_factory=list)
    set_id: II | None = None
    version_number: int | None = None


@dataclass
class CdaHeader:
    id: II
    code: CD
    title: str | None
    effective_time: str | None
    confidentiality: CD | None
    language: str | None
    set_id: II | None
    version_number: int | None
    realm: str | None
    template_ids: list[str]
    patient: Patient
    authors: list[Person]
    custodian: Organization | None
    legal_authenticator: Person | None
    authenticators: list[Person]
    service_events: list[ServiceEvent]
    facility: CD | None  # healthCareFacility/code (healthcareFacilityTypeCode)
    facility_ids: list[II]
    encounter_low: str | None
    encounter_high: str | None
    related_documents: list[RelatedDocument]
    structured: bool  # structuredBody (N3) vs nonXMLBody (N1)
    body_media_type: str | None  # nonXMLBody/text/@mediaType

    # -- derived XDS values --
    @property
    def practice_setting(self) -> CD | None:
        for event in self.service_events:
            for performer in event.performers:
                if performer.organization and performer.organization.industry_code:
                    return performer.organization.industry_code
        return None

    @property
    def event_codes(self) -> list[CD]:
        return [e.code for e in self.service_events if e.code and e.code.code]

    @property
    def service_period(self) -> tuple[str | None, str | None]:
        lows = [e.low for e in self.service_events if e.low]
        highs = [e.high for e in self.service_events if e.high]
        return (min(lows) if lows else None, max(highs) if highs else None)

    @property
    def format_code(self) -> tuple[str, str]:
        for template in self.template_ids:
            if template in FORMAT_BY_TEMPLATE:
                return FORMAT_BY_TEMPLATE[template]
        if not self.structured and self.body_media_type in FORMAT_BY_MEDIA_TYPE:
            return FORMAT_BY_MEDIA_TYPE[self.body_media_type]
        return FORMAT_FALLBACK

    @property
    def class_code(self) -> str | None:
        return CLASS_BY_TYPE.get(self.code.code or "")

    @property
    def ins(self) -> II | None:
        """The patient's INS (NIR before NIA; test/demo roots count)."""
        ranked = sorted(
            (i for i in self.patient.ids if i.root in INS_OIDS and i.extension),
            key=lambda i: list(INS_OIDS).index(i.root or ""),
        )
        return ranked[0] if ranked else None


# --- parsing ------------------------------------------------------------------------------------------

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True, remove_comments=True)


def _root(xml: bytes) -> etree._Element:
    try:
        doc = etree.fromstring(xml, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise CdaError(f"not well-formed XML: {exc}") from exc
    if doc.tag == f"{{{HL7}}}ClinicalDocument":
        return doc
    # Auto-presentable CI-SIS documents wrap the ClinicalDocument in an XSL stylesheet.
    inner = doc.find(f".//{{{HL7}}}ClinicalDocument")
    if inner is None:
        raise CdaError(f"root element is {doc.tag}, not urn:hl7-org:v3 ClinicalDocument")
    return inner


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    text = " ".join("".join(el.itertext()).split())
    return text or None


def _ii(el: etree._Element) -> II:
    return II(el.get("root"), el.get("extension"), el.get("nullFlavor"))


def _ids(parent: etree._Element | None, path: str = "h:id") -> list[II]:
    if parent is None:
        return []
    return [_ii(e) for e in parent.findall(path, NS) if e.get("root")]


def _cd(el: etree._Element | None) -> CD | None:
    if el is None or not el.get("code"):
        return None
    return CD(el.get("code"), el.get("codeSystem"), el.get("displayName"), el.get("codeSystemName"))


def _name(el: etree._Element | None) -> PersonName | None:
    if el is None:
        return None
    name = PersonName()
    for part in el:
        if not isinstance(part.tag, str):
            continue
        local = etree.QName(part).localname
        value = _text(part)
        if not value:
            continue
        qualifier = (part.get("qualifier") or "").split()
        if local == "family":
            if "BR" in qualifier:
                name.birth_family = value
            elif "SP" in qualifier or "CL" in qualifier:
                name.used_family = value
            else:
                name.family.append(value)
        elif local == "given":
            if "BR" in qualifier:
                name.first_birth_given = value
            elif "CL" in qualifier:
                name.used_given = value
            else:
                name.given.append(value)
        elif local == "prefix":
            name.prefix.append(value)
        elif local == "suffix":
            name.suffix.append(value)
    if not (name.family or name.given or name.birth_family or name.used_family):
        text = _text(el)
        if text:
            name.family.append(text)
    # Unqualified given names next to a BR family are the birth-certificate given names (INS traits).
    if name.birth_family and name.given:
        name.birth_given = list(name.given)
    return name


def _organization(el: etree._Element | None) -> Organization | None:
    if el is None:
        return None
    return Organization(
        ids=_ids(el),
        name=_text(el.find("h:name", NS)),
        telecoms=[t.get("value") for t in el.findall("h:telecom", NS) if t.get("value")],
        industry_code=_cd(el.find("h:standardIndustryClassCode", NS)),
    )


def _person(entity: etree._Element | None, *, time: str | None = None) -> Person | None:
    if entity is None:
        return None
    person_el = entity.find("h:assignedPerson", NS)
    if person_el is None:
        person_el = entity.find("h:associatedPerson", NS)
    device_el = entity.find("h:assignedAuthoringDevice", NS)
    device = None
    if device_el is not None:
        device = _text(device_el.find("h:softwareName", NS)) or _text(device_el.find("h:manufacturerModelName", NS))
    org_el = entity.find("h:representedOrganization", NS)
    if org_el is None:
        org_el = entity.find("h:scopingOrganization", NS)
    return Person(
        ids=[_ii(e) for e in entity.findall("h:id", NS)],
        code=_cd(entity.find("h:code", NS)),
        name=_name(person_el.find("h:name", NS)) if person_el is not None else None,
        device=device,
        organization=_organization(org_el),
        time=time,
    )


def _time(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    return el.get("value")


def _int(el: etree._Element | None) -> int | None:
    if el is None or not el.get("value"):
        return None
    try:
        return int(el.get("value"))
    except ValueError:
        return None


def parse_header(xml: bytes) -> CdaHeader:
    """Parse a CDA R2 document's header. Raises CdaError when it is not a ClinicalDocument with an id."""
    doc = _root(xml)
    id_el = doc.find("h:id", NS)
    if id_el is None or not id_el.get("root"):
        raise CdaError("ClinicalDocument/id is missing")
    code = _cd(doc.find("h:code", NS))
    if code is None:
        raise CdaError("ClinicalDocument/code is missing")

    role = doc.find("h:recordTarget/h:patientRole", NS)
    patient = Patient()
    if role is not None:
        patient.ids = _ids(role)
        p = role.find("h:patient", NS)
        if p is not None:
            patient.name = _name(p.find("h:name", NS))
            gender = p.find("h:administrativeGenderCode", NS)
            patient.gender = gender.get("code") if gender is not None else None
            patient.birth_time = _time(p.find("h:birthTime", NS))
            addr = p.find("h:birthplace/h:place/h:addr", NS)
            if addr is not None:
                patient.birth_place = _text(addr.find("h:city", NS))
                patient.birth_place_code = _text(addr.find("h:county", NS))

    authors = []
    for author in doc.findall("h:author", NS):
        person = _person(author.find("h:assignedAuthor", NS), time=_time(author.find("h:time", NS)))
        if person is not None:
            person.function_code = _cd(author.find("h:functionCode", NS))
            authors.append(person)

    legal = doc.find("h:legalAuthenticator", NS)
    legal_authenticator = None
    if legal is not None:
        legal_authenticator = _person(legal.find("h:assignedEntity", NS), time=_time(legal.find("h:time", NS)))
    authenticators = [
        p
        for a in doc.findall("h:authenticator", NS)
        if (p := _person(a.find("h:assignedEntity", NS), time=_time(a.find("h:time", NS)))) is not None
    ]

    events = []
    for se in doc.findall("h:documentationOf/h:serviceEvent", NS):
        eff = se.find("h:effectiveTime", NS)
        low = high = None
        if eff is not None:
            low = _time(eff.find("h:low", NS)) or eff.get("value")
            high = _time(eff.find("h:high", NS))
        events.append(
            ServiceEvent(
                ids=_ids(se),
                code=_cd(se.find("h:code", NS)),
                class_code=se.get("classCode"),
                low=low,
                high=high,
                performers=[
                    p for perf in se.findall("h:performer", NS) if (p := _person(perf.find("h:assignedEntity", NS)))
                ],
            )
        )

    encounter = doc.find("h:componentOf/h:encompassingEncounter", NS)
    facility = facility_ids = None
    enc_low = enc_high = None
    if encounter is not None:
        hcf = encounter.find("h:location/h:healthCareFacility", NS)
        if hcf is not None:
            facility = _cd(hcf.find("h:code", NS))
            facility_ids = _ids(hcf)
        eff = encounter.find("h:effectiveTime", NS)
        if eff is not None:
            enc_low = _time(eff.find("h:low", NS)) or eff.get("value")
            enc_high = _time(eff.find("h:high", NS))

    related = []
    for rd in doc.findall("h:relatedDocument", NS):
        parent = rd.find("h:parentDocument", NS)
        related.append(
            RelatedDocument(
                type_code=rd.get("typeCode") or "",
                ids=_ids(parent),
                set_id=_ii(s) if parent is not None and (s := parent.find("h:setId", NS)) is not None else None,
                version_number=_int(parent.find("h:versionNumber", NS)) if parent is not None else None,
            )
        )

    body = doc.find("h:component/h:nonXMLBody", NS)
    set_el = doc.find("h:setId", NS)
    lang = doc.find("h:languageCode", NS)
    realm = doc.find("h:realmCode", NS)
    return CdaHeader(
        id=_ii(id_el),
        code=code,
        title=_text(doc.find("h:title", NS)),
        effective_time=_time(doc.find("h:effectiveTime", NS)),
        confidentiality=_cd(doc.find("h:confidentialityCode", NS)),
        language=lang.get("code") if lang is not None else None,
        set_id=_ii(set_el) if set_el is not None and set_el.get("root") else None,
        version_number=_int(doc.find("h:versionNumber", NS)),
        realm=realm.get("code") if realm is not None else None,
        template_ids=[t.get("root") for t in doc.findall("h:templateId", NS) if t.get("root")],
        patient=patient,
        authors=authors,
        custodian=_organization(doc.find("h:custodian/h:assignedCustodian/h:representedCustodianOrganization", NS)),
        legal_authenticator=legal_authenticator,
        authenticators=authenticators,
        service_events=events,
        facility=facility,
        facility_ids=facility_ids or [],
        encounter_low=enc_low,
        encounter_high=enc_high,
        related_documents=related,
        structured=doc.find("h:component/h:structuredBody", NS) is not None,
        body_media_type=(
            body.find("h:text", NS).get("mediaType")
            if body is not None and body.find("h:text", NS) is not None
            else None
        ),
    )


# --- header → FHIR --------------------------------------------------------------------------------------


def coding(cd: CD | None) -> dict[str, Any] | None:
    if cd is None or not cd.code:
        return None
    out: dict[str, Any] = {}
    system = system_for_oid(cd.code_system)
    if system:
        out["system"] = system
    out["code"] = cd.code
    if cd.display:
        out["display"] = cd.display
    return out


def concept(cd: CD | None) -> dict[str, Any] | None:
    c = coding(cd)
    return {"coding": [c]} if c else None


def identifier(ii: II) -> dict[str, Any] | None:
    """An II as a FHIR Identifier: `urn:oid:root` + extension, or the bare root as an RFC 3986 URI."""
    if not ii.root:
        return None
    if ii.extension:
        out: dict[str, Any] = {"system": system_for_oid(ii.root), "value": ii.extension}
        kind = INS_OIDS.get(ii.root)
        if kind:
            out["type"] = {"coding": [{"system": FR_CORE_0203, "code": kind}]}
        return out
    return {"system": "urn:ietf:rfc:3986", "value": _root_uri(ii.root)}


def _root_uri(root: str) -> str:
    if OID_RE.match(root):
        return f"urn:oid:{root}"
    if UUID_RE.match(root):
        return f"urn:uuid:{root.lower()}"
    return root


def master_identifier(ii: II) -> dict[str, Any]:
    """masterIdentifier = the XDS uniqueId: `urn:oid:root` (MHD) or, with an extension, `root^extension`."""
    if ii.extension:
        return {"system": "urn:ietf:rfc:3986", "value": f"{_root_uri(ii.root or '')}^{ii.extension}"}
    return {"system": "urn:ietf:rfc:3986", "value": _root_uri(ii.root or "")}


def human_name(name: PersonName | None) -> list[dict[str, Any]]:
    """CDA name → FHIR HumanName(s), FR Core style: the birth name (BR) is `official` with the first
    birth given name in `given` and all of them in the birth-list-given-name extension; the used name
    (CL/SP) is `usual`; an unqualified name (professionals) is a plain HumanName."""
    if name is None:
        return []
    names: list[dict[str, Any]] = []
    if name.birth_family or name.birth_given or name.first_birth_given:
        official: dict[str, Any] = {"use": "official"}
        if name.birth_given:
            official["extension"] = [{"url": BIRTH_LIST_GIVEN_NAME, "valueString": " ".join(name.birth_given)}]
        if name.birth_family:
            official["family"] = name.birth_family
        first = name.first_birth_given or (name.birth_given[0].split()[0] if name.birth_given else None)
        if first:
            official["given"] = [first]
        names.append(official)
    if name.used_family or name.used_given:
        usual: dict[str, Any] = {"use": "usual"}
        if name.used_family:
            usual["family"] = name.used_family
        if name.used_given:
            usual["given"] = [name.used_given]
        names.append(usual)
    if not names and (name.family or name.given):
        plain: dict[str, Any] = {}
        if name.family:
            plain["family"] = " ".join(name.family)
        if name.given:
            plain["given"] = name.given
        names.append(plain)
    if names and name.prefix:
        names[0]["prefix"] = name.prefix
    if names and name.suffix:
        names[0]["suffix"] = name.suffix
    return names


def _display(name: PersonName | None) -> str | None:
    if name is None:
        return None
    given = name.used_given or (name.given[0] if name.given else None) or name.first_birth_given
    family = name.used_family or (" ".join(name.family) if name.family else None) or name.birth_family
    text = " ".join(p for p in (given, family) if p)
    return text or None


def _logical(resource_type: str, ids: list[II], display: str | None) -> dict[str, Any] | None:
    """A Reference by identifier (the resource id is unknown to a pure mapping)."""
    ident = next((identifier(i) for i in ids if i.root and i.extension and not i.null_flavor), None)
    if ident is None:
        ident = next((identifier(i) for i in ids if i.root and not i.null_flavor), None)
    if ident is None and not display:
        return None
    ref: dict[str, Any] = {"type": resource_type}
    if ident:
        ref["identifier"] = ident
    if display:
        ref["display"] = display
    return ref


def person_reference(person: Person) -> dict[str, Any] | None:
    """An author/authenticator: the Practitioner (by RPPS/IDNPS), else the device, else its organisation."""
    if person.name is not None or (person.device is None and any(i.root and i.extension for i in person.ids)):
        ref = _logical("Practitioner", person.ids, _display(person.name))
        if ref:
            return ref
    if person.device:
        return _logical("Device", person.ids, person.device)
    if person.organization:
        return organization_reference(person.organization)
    return None


def organization_reference(org: Organization) -> dict[str, Any] | None:
    return _logical("Organization", org.ids, org.name)


def patient_reference(header: CdaHeader) -> dict[str, Any] | None:
    """The subject: by INS when the document carries one, else by the first identifier (IPP)."""
    ins = header.ins
    ordered = ([ins] if ins else []) + [i for i in header.patient.ids if i is not ins]
    return _logical("Patient", ordered, _display(header.patient.name))


def patient_identifiers(header: CdaHeader) -> list[dict[str, Any]]:
    """Every patient identifier as FHIR (INS typed per FR Core, others typed PI = IPP)."""
    out = []
    for ii in header.patient.ids:
        ident = identifier(ii)
        if ident is None or not ii.extension:
            continue
        if "type" not in ident:
            ident["type"] = {"coding": [{"system": V2_0203, "code": "PI"}]}
        out.append(ident)
    return out


def document_reference_from_header(
    header: CdaHeader,
    *,
    binary_url: str | None = None,
    size: int | None = None,
    sha1: bytes | None = None,
    class_code: str | None = None,
) -> dict[str, Any]:
    """The DocumentReference (FHIR R4 JSON, no id) describing a parsed CDA header."""
    dr: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": master_identifier(header.id),
        "status": "current",
    }
    idents = []
    if header.set_id and header.set_id.root:
        set_ident = identifier(header.set_id) or {}
        idents.append({**set_ident, "use": "secondary"})
    if idents:
        dr["identifier"] = idents
    doc_type = concept(header.code)
    if doc_type:
        doc_type["text"] = header.title or header.code.display or header.code.code
        dr["type"] = doc_type
    cls = class_code or header.class_code
    if cls:
        dr["category"] = [
            {
                "coding": [
                    {
                        "system": system_for_oid(CLASS_CODE_OID),
                        "code": cls,
                        **({"display": CLASS_DISPLAY[cls]} if cls in CLASS_DISPLAY else {}),
                    }
                ]
            }
        ]
    subject = patient_reference(header)
    if subject:
        dr["subject"] = subject
    created = ts_to_fhir(header.effective_time, instant=True)
    if created:
        dr["date"] = created
    authors = []
    for author in header.authors:
        ref = person_reference(author)
        if ref and ref not in authors:
            authors.append(ref)
        if author.organization:
            org = organization_reference(author.organization)
            if org and org not in authors:
                authors.append(org)
    if authors:
        dr["author"] = authors
    if header.legal_authenticator:
        auth = person_reference(header.legal_authenticator)
        if auth:
            dr["authenticator"] = auth
    if header.custodian:
        cust = organization_reference(header.custodian)
        if cust:
            dr["custodian"] = cust
    relates = []
    for rel in header.related_documents:
        code = RELATION.get(rel.type_code)
        if code and rel.ids:
            target = {"type": "DocumentReference", "identifier": master_identifier(rel.ids[0])}
            relates.append({"code": code, "target": target})
    if relates:
        dr["relatesTo"] = relates
    if header.title:
        dr["description"] = header.title
    label = concept(header.confidentiality)
    if label:
        dr["securityLabel"] = [label]

    attachment: dict[str, Any] = {"contentType": CDA_CONTENT_TYPE}
    if header.language:
        attachment["language"] = header.language
    if binary_url:
        attachment["url"] = binary_url
    if size is not None:
        attachment["size"] = size
    if sha1 is not None:
        attachment["hash"] = base64.b64encode(sha1).decode("ascii")
    if header.title:
        attachment["title"] = header.title
    if created:
        attachment["creation"] = ts_to_fhir(header.effective_time)
    fmt_code, fmt_display = header.format_code
    dr["content"] = [
        {
            "attachment": attachment,
            "format": {"system": system_for_oid(IHE_FORMAT_OID), "code": fmt_code, "display": fmt_display},
        }
    ]

    context: dict[str, Any] = {}
    events = [c for cd in header.event_codes if (c := concept(cd))]
    if events:
        context["event"] = events
    low, high = header.service_period
    period = {k: v for k, v in (("start", ts_to_fhir(low)), ("end", ts_to_fhir(high))) if v}
    if period:
        context["period"] = period
    facility = concept(header.facility)
    if facility:
        context["facilityType"] = facility
    practice = concept(header.practice_setting)
    if practice:
        context["practiceSetting"] = practice
    # sourcePatientInfo (XDS sourcePatientId): the patient as the producer knows it, by its local id (IPP)
    # when the document has one beside the INS, else like the subject.
    ins = header.ins
    local = next((i for i in header.patient.ids if i is not ins and i.extension and i.root not in INS_OIDS), None)
    source = _logical("Patient", [local], _display(header.patient.name)) if local else subject
    if source:
        context["sourcePatientInfo"] = source
    if context:
        dr["context"] = context
    return dr


def document_reference_from_cda(xml: bytes, *, binary_url: str | None = None) -> dict[str, Any]:
    """DocumentReference metadata for a CDA R2 document (N1 or N3); see the module docstring for the map."""
    header = parse_header(xml)
    return document_reference_from_header(
        header,
        binary_url=binary_url,
        size=len(xml),
        sha1=hashlib.sha1(xml).digest(),
    )


__all__ = [
    "CDA_CONTENT_TYPE",
    "CDA_MEDIA_TYPE",
    "INS_NIA_OID",
    "INS_NIR_OID",
    "LOINC_OID",
    "CdaError",
    "CdaHeader",
    "document_reference_from_cda",
    "document_reference_from_header",
    "parse_header",
]
