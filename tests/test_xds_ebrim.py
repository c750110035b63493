"""XDS metadata (ebRIM) ↔ DocumentReference / List (mappings/xds/ebrim.py), checked against the DMP
publication of the ANS DRIMbox proof of concept (../shared/fixtures/drim-m/poc) and round-tripped."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from mappings.cda.parse import document_reference_from_cda
from mappings.xds.ebrim import (
    NS,
    XdsError,
    parse_submission,
    submit_objects_request,
    xml_part,
)
from tests.cda_validation import EXAMPLES
from tests.conftest import SHARED
from tests.test_cda_generate import scenario

POC = SHARED / "fixtures" / "drim-m" / "poc" / "jeux-de-donnees"
PUBLICATION = POC / "xds" / "publication.xml"
XDM_METADATA = POC / "xdm" / "KA202401" / "IHE_XDM" / "SS000001" / "METADATA.XML"
NOT_DOCUMENT_ENTRY_SLOTS = {"submissionTime"}  # the sample repeats it on each entry; not DocumentEntry metadata


def _slots(el: etree._Element) -> dict[str, tuple[str, ...]]:
    return {
        s.get("name"): tuple(v.text or "" for v in s.findall("rim:ValueList/rim:Value", NS))
        for s in el.findall("rim:Slot", NS)
        if s.get("name") not in NOT_DOCUMENT_ENTRY_SLOTS
    }


def _name(el: etree._Element, tag: str) -> str | None:
    ls = el.find(f"rim:{tag}/rim:LocalizedString", NS)
    return (ls.get("value") or None) if ls is not None else None


def summary(el: etree._Element) -> dict[str, Any]:
    """The metadata of an ExtrinsicObject or RegistryPackage, without its local ids."""
    classifications = sorted(
        (
            c.get("classificationScheme") or "",
            c.get("classificationNode") or "",
            c.get("nodeRepresentation") or "",
            tuple(sorted(_slots(c).items())),
            _name(c, "Name") or "",
        )
        for c in el.findall("rim:Classification", NS)
    )
    return {
        "mimeType": el.get("mimeType"),
        "objectType": el.get("objectType") if el.tag.endswith("ExtrinsicObject") else None,
        "slots": _slots(el),
        "name": _name(el, "Name"),
        "description": _name(el, "Description"),
        "classifications": classifications,
        "external": sorted(
            (e.get("identificationScheme"), e.get("value")) for e in el.findall("rim:ExternalIdentifier", NS)
        ),
    }


def registry_objects(xml: bytes) -> etree._Element:
    return etree.fromstring(xml_part(xml)).find(".//rim:RegistryObjectList", NS)


def test_publication_sample_to_fhir() -> None:
    sub = parse_submission(PUBLICATION.read_bytes())
    ss = sub.submission_set
    assert ss["code"]["coding"][0]["code"] == "submissionset"
    assert ss["date"] == "2023-11-14T14:44:58Z"
    assert ss["subject"]["identifier"] == {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}]},
        "system": "urn:oid:1.2.250.1.213.1.4.10",
        "value": "162018885045327",
    }
    assert {"use": "usual", "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.1.8121.5.7122"} in ss[
        "identifier"
    ]
    assert len(ss["entry"]) == 2

    kos, signature = sub.documents
    assert kos["masterIdentifier"]["value"] == "urn:oid:1.3.2.751468943.3.1234.56838.231114144457.1.1.1"
    assert kos["type"]["coding"][0]["code"] == "IMG-KOS"
    assert kos["category"][0]["coding"][0] == {
        "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
        "code": "31",
        "display": "Imagerie médicale",
    }
    assert kos["subject"]["identifier"]["value"] == "162018885045327"
    assert kos["content"][0]["attachment"]["contentType"] == "application/dicom"
    assert kos["content"][0]["attachment"]["size"] == 8450
    assert kos["context"]["practiceSetting"]["coding"][0]["code"] == "AMBULATOIRE"
    assert kos["context"]["facilityType"]["coding"][0]["code"] == "SA01"
    assert kos["context"]["period"] == {"start": "2021-01-04T09:22:00Z", "end": "2021-01-04T16:05:00Z"}
    assert [e["coding"][0]["code"] for e in kos["context"]["event"]] == ["63337009", "MR"]
    study = [
        r["identifier"]
        for r in kos["context"]["related"]
        if "studyInstanceUID" in r["identifier"]["type"]["coding"][0]["code"]
    ]
    assert study[0]["value"] == "1.3.6.1.4.1.5962.99.1.3711725607.829148806.1687338938407.3.116"
    role = next(r for r in kos["contained"] if r["resourceType"] == "PractitionerRole")
    assert kos["author"] == [{"reference": f"#{role['id']}"}]
    practitioner = next(r for r in kos["contained"] if r["id"] == role["practitioner"]["reference"][1:])
    assert practitioner["identifier"][0]["value"] == "899700367909"
    assert practitioner["identifier"][0]["system"] == "urn:oid:1.2.250.1.71.4.2.1"
    source = next(r for r in kos["contained"] if r["resourceType"] == "Patient")
    assert source["name"][0]["family"] == "PAT-SIX" and source["birthDate"] == "1996-01-24"
    # The signature: visibility codes are security labels next to the confidentiality.
    assert [c["coding"][0]["code"] for c in signature["securityLabel"]] == ["N", "MASQUE_PS", "INVISIBLE_PATIENT"]
    assert signature["content"][0]["format"]["code"] == "http://www.w3.org/2000/09/xmldsig#"


def test_publication_sample_round_trip_keeps_the_metadata() -> None:
    raw = PUBLICATION.read_bytes()
    sub = parse_submission(raw)
    source_id = next(e for e in sub.submission_set["extension"] if e["url"].endswith("ihe-sourceId"))
    rebuilt = submit_objects_request(
        sub.documents,
        submission_set=sub.submission_set,
        source_id=source_id["valueIdentifier"]["value"].removeprefix("urn:oid:"),
    )
    before, after = registry_objects(raw), registry_objects(rebuilt)

    want = [summary(e) for e in before.findall("rim:ExtrinsicObject", NS)]
    got = [summary(e) for e in after.findall("rim:ExtrinsicObject", NS)]
    assert len(got) == len(want) == 2
    for w, g in zip(want, got, strict=True):
        # The sample writes an empty Description on the signature; an empty one is not written back.
        w = {**w, "description": w["description"] or None}
        assert g == w

    (ss_before,) = before.findall("rim:RegistryPackage", NS)
    (ss_after,) = after.findall("rim:RegistryPackage", NS)
    assert summary(ss_after) == summary(ss_before)

    members = [a for a in after.findall("rim:Association", NS) if a.get("associationType").endswith("HasMember")]
    assert {a.get("targetObject") for a in members} == {e.get("id") for e in after.findall("rim:ExtrinsicObject", NS)}
    assert {a.get("sourceObject") for a in members} == {ss_after.get("id")}

    # And once more through FHIR: a fixed point.
    again = parse_submission(rebuilt)
    assert [d["masterIdentifier"] for d in again.documents] == [d["masterIdentifier"] for d in sub.documents]
    assert again.documents[0]["context"] == sub.documents[0]["context"]


def test_xdm_metadata_is_read() -> None:
    sub = parse_submission(XDM_METADATA.read_bytes())
    assert len(sub.documents) == 2
    kos = next(d for d in sub.documents if d["content"][0]["attachment"]["contentType"] == "application/dicom")
    assert kos["content"][0]["attachment"]["url"] == "SS000001/KOS_1_1.DCM"  # relative to IHE_XDM/
    assert kos["subject"]["identifier"]["system"] == "urn:oid:1.2.250.1.213.1.4.10"


def test_cda_header_to_xds_document_entry() -> None:
    dr = document_reference_from_cda((EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes())
    xml = submit_objects_request([dr], source_id="1.2.250.1.999.42", submission_time="20240502081500")
    (eo,) = registry_objects(xml).findall("rim:ExtrinsicObject", NS)
    s = summary(eo)
    assert s["mimeType"] == "text/xml"
    external = dict(s["external"])
    assert external["urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"] == "1.3.6.1.4.1.19376.1.2.20.12345.1.1"
    assert external["urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"] == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    codes = {scheme: (code, slots) for scheme, _, code, slots, _ in s["classifications"] if code}
    assert codes["urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"][0] == "11502-2"  # typeCode
    assert codes["urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"][1] == (("codingScheme", ("2.16.840.1.113883.6.1",)),)
    assert codes["urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"][0] == "10"  # classCode
    assert codes["urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"] == (
        "AMBULATOIRE",
        (("codingScheme", ("1.2.250.1.213.1.1.4.9",)),),
    )
    assert codes["urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"][0] == "SA07"
    assert codes["urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"][0] == "urn:ihe:iti:xds-sd:pdf:2008"
    assert codes["urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"][0] == "N"
    (author,) = [
        slots
        for scheme, _, _, slots, _ in s["classifications"]
        if scheme == "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    ]
    assert dict(author)["authorInstitution"] == (
        "Laboratoire des charmes^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1120459876",
    )
    assert dict(author)["authorPerson"][0].startswith("801234534765^")
    assert dict(author)["authorPerson"][0].endswith("^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS")
    assert s["slots"]["legalAuthenticator"][0].startswith("807505123456^")
    assert s["slots"]["creationTime"] == ("20210401124745",)  # 13:47:45+01:00 in UTC
    assert s["slots"]["serviceStartTime"] == ("20210104124700",)
    assert s["slots"]["languageCode"] == ("fr-FR",)
    back = parse_submission(xml).documents[0]
    assert back["masterIdentifier"] == dr["masterIdentifier"]
    assert back["type"] == {"coding": dr["type"]["coding"]}


def test_resolved_fhir_resources_to_xds() -> None:
    """A DocumentReference of this server with its resources: RPPS → IDNPS, FINESS → IDNST, the role's
    specialty as authorSpecialty, the Patient's identity as sourcePatientInfo."""
    doc, resources, _ = scenario()
    xml = submit_objects_request([doc], source_id="1.2.250.1.999.42", resources=resources)
    (eo,) = registry_objects(xml).findall("rim:ExtrinsicObject", NS)
    s = summary(eo)
    (author,) = [dict(slots) for scheme, _, _, slots, _ in s["classifications"] if scheme.endswith("a7748d1a838d")]
    assert author["authorPerson"] == ("801234534765^CAMPARINI^Marcel^^DR^M^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS",)
    assert author["authorInstitution"] == ("Laboratoire des charmes^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1120459876",)
    assert author["authorSpecialty"] == ("G15_10/SM03^Médecin - Biologie médicale (SM)^1.2.250.1.213.1.1.4.5",)
    assert s["slots"]["sourcePatientId"] == ("1234567890121^^^&1.2.3.4.567.8.9.10&ISO^PI",)
    assert "PID-5|PAT-TROIS^DOMINIQUE^^^^^L" in s["slots"]["sourcePatientInfo"]
    assert "PID-7|19790328" in s["slots"]["sourcePatientInfo"] and "PID-8|F" in s["slots"]["sourcePatientInfo"]
    assert dict(s["external"])["urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"] == (
        "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    )
    (ss,) = registry_objects(xml).findall("rim:RegistryPackage", NS)
    assert dict(summary(ss)["external"])["urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"] == "1.2.250.1.999.42"


def test_replacement_becomes_an_rplc_association() -> None:
    doc, resources, _ = scenario()
    old = {
        **doc,
        "identifier": [
            {"use": "official", "system": "urn:ietf:rfc:3986", "value": "urn:uuid:0b5e1d0c-1111-4a7e-9a7e-3c5f2a1b0c01"}
        ],
    }
    new = {
        **doc,
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.1.43"},
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/d0"}}],
    }
    xml = submit_objects_request(
        [new], source_id="1.2.250.1.999.42", resources={**resources, "DocumentReference/d0": old}
    )
    rplc = [
        a for a in registry_objects(xml).findall("rim:Association", NS) if a.get("associationType").endswith("RPLC")
    ]
    assert [a.get("targetObject") for a in rplc] == ["urn:uuid:0b5e1d0c-1111-4a7e-9a7e-3c5f2a1b0c01"]
    parsed = parse_submission(xml).documents[0]
    assert parsed["relatesTo"][0]["code"] == "replaces"
    assert parsed["relatesTo"][0]["target"]["identifier"]["value"] == "urn:uuid:0b5e1d0c-1111-4a7e-9a7e-3c5f2a1b0c01"


def test_missing_patient_or_unique_id_is_refused() -> None:
    doc, resources, _ = scenario()
    with pytest.raises(XdsError, match="patientId"):
        submit_objects_request([{**doc, "subject": {"display": "x"}}], source_id="1.2.3")
    with pytest.raises(XdsError, match="uniqueId"):
        submit_objects_request(
            [{k: v for k, v in doc.items() if k != "masterIdentifier"}], source_id="1.2.3", resources=resources
        )
    with pytest.raises(XdsError):
        parse_submission(b"<nothing/>")
