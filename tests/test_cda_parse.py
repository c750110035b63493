"""CDA R2 header → DocumentReference metadata, on the 90 ANS CI-SIS examples (../shared/cda/examples)."""

from __future__ import annotations

import re

import pytest

from mappings.cda.parse import CdaError, document_reference_from_cda, parse_header
from tests.cda_validation import EXAMPLES

ALL = sorted(EXAMPLES.glob("*.xml"))
INS_SYSTEMS = {f"urn:oid:1.2.250.1.213.1.4.{n}" for n in (8, 9, 10, 11)}
LOINC_OR_NOS = {
    "http://loinc.org",
    "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
}
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def test_all_examples_are_there() -> None:
    assert len(ALL) == 90


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_example_header_to_document_reference(path) -> None:
    xml = path.read_bytes()
    header = parse_header(xml)
    dr = document_reference_from_cda(xml, binary_url="Binary/x")

    # The document id (XDS uniqueId) as masterIdentifier.
    assert dr["masterIdentifier"]["system"] == "urn:ietf:rfc:3986"
    assert dr["masterIdentifier"]["value"] == f"urn:oid:{header.id.root}"
    # typeCode: LOINC, or a TRE_A05 code for the few non-LOINC document types (JDV_J07 has both).
    (coding,) = dr["type"]["coding"]
    assert coding["system"] in LOINC_OR_NOS and coding["code"]
    if coding["system"] == "http://loinc.org":
        assert re.match(r"^\d{1,5}-\d$", coding["code"]), coding
    # The patient, by INS when the document carries one.
    subject = dr["subject"]
    assert subject["type"] == "Patient" and subject["identifier"]["value"]
    if any(i.root in {s[8:] for s in INS_SYSTEMS} for i in header.patient.ids):
        assert subject["identifier"]["system"] in INS_SYSTEMS
    # At least one author, identified (a person by IDNPS, or a device), with its organisation.
    assert dr["author"], dr
    assert any(a["type"] in ("Practitioner", "Device") for a in dr["author"])
    assert all(a.get("identifier") or a.get("display") for a in dr["author"])
    # Creation time, as an instant.
    assert INSTANT.match(dr["date"]), dr["date"]
    assert dr["content"][0]["attachment"]["url"] == "Binary/x"
    assert dr["content"][0]["attachment"]["size"] == len(xml)
    assert dr["securityLabel"][0]["coding"][0]["code"] in ("N", "R", "V")
    assert dr["custodian"]["identifier"]["value"]


def test_n1_example_full_mapping() -> None:
    xml = (EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
    header = parse_header(xml)
    assert not header.structured and header.body_media_type == "application/pdf"
    assert header.patient.name.birth_family == "PAT-TROIS"
    assert header.patient.name.first_birth_given == "DOMINIQUE"
    assert header.patient.birth_place_code == "51215"

    dr = document_reference_from_cda(xml)
    assert dr["masterIdentifier"]["value"] == "urn:oid:1.3.6.1.4.1.19376.1.2.20.12345.1.1"
    assert dr["identifier"] == [
        {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.3.6.1.4.1.19376.1.2.20.12345.1", "use": "secondary"}
    ]
    assert dr["status"] == "current"
    assert dr["type"]["coding"] == [
        {"system": "http://loinc.org", "code": "11502-2", "display": "CR d'examens biologiques"}
    ]
    assert dr["category"][0]["coding"][0]["code"] == "10"  # Compte-rendu (TRE_A03)
    assert dr["subject"]["identifier"]["system"] == "urn:oid:1.2.250.1.213.1.4.10"
    assert dr["subject"]["identifier"]["value"] == "279035121518989"
    assert dr["subject"]["identifier"]["type"]["coding"][0]["code"] == "INS-NIR-TEST"
    assert dr["date"] == "2021-04-01T13:47:45+01:00"
    author, organisation = dr["author"]
    assert author["identifier"] == {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "801234534765"}
    assert author["display"] == "Marcel CAMPARINI"
    assert organisation["identifier"] == {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1120459876"}
    assert dr["authenticator"]["identifier"]["value"] == "807505123456"
    assert dr["custodian"]["display"] == "Laboratoire des charmes"
    assert dr["securityLabel"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "code": "N",
        "display": "Normal",
    }
    attachment = dr["content"][0]["attachment"]
    assert attachment["contentType"] == "text/xml" and attachment["language"] == "fr-FR"
    assert attachment["hash"] and attachment["creation"] == "2021-04-01T13:47:45+01:00"
    assert dr["content"][0]["format"]["code"] == "urn:ihe:iti:xds-sd:pdf:2008"
    context = dr["context"]
    assert context["event"][0]["coding"][0]["code"] == "18723-7"
    assert context["period"] == {"start": "2021-01-04T13:47:00+01:00", "end": "2021-01-04T13:55:00+01:00"}
    assert context["practiceSetting"]["coding"][0] == {
        "system": "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice",
        "code": "AMBULATOIRE",
        "display": "Ambulatoire",
    }
    # The producer's own patient id (IPP) as sourcePatientInfo (XDS sourcePatientId).
    assert context["sourcePatientInfo"]["identifier"] == {
        "system": "urn:oid:1.2.3.4.567.8.9.10",
        "value": "1234567890121",
    }
    assert context["facilityType"]["coding"][0] == {
        "system": "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite",
        "code": "SA07",
        "display": "Cabinet individuel",
    }


def test_structured_lab_report_format_code() -> None:
    dr = document_reference_from_cda((EXAMPLES / "BIO-CR-BIO_2024.01_TSH_1.xml").read_bytes())
    assert dr["content"][0]["format"]["code"] == "urn:ihe:lab:xd-lab:2008"


def test_auto_presentable_document_is_found_inside_its_stylesheet() -> None:
    xml = (EXAMPLES / "BIO-CR-BIO_2021.01_Auto-Presentable.xml").read_bytes()
    assert parse_header(xml).id.root == "1.2.250.1.213.1.1.1.55.2021.1.1"


def test_replacement_becomes_relates_to_replaces() -> None:
    xml = (EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
    xml = xml.replace(
        b"<!-- Acte document",
        b'<relatedDocument typeCode="RPLC"><parentDocument><id root="1.2.3.4.5" extension="v1"/>'
        b'<setId root="1.3.6.1.4.1.19376.1.2.20.12345.1"/><versionNumber value="1"/></parentDocument>'
        b"</relatedDocument><!-- Acte document",
        1,
    )
    dr = document_reference_from_cda(xml)
    assert dr["relatesTo"] == [
        {
            "code": "replaces",
            "target": {
                "type": "DocumentReference",
                "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4.5^v1"},
            },
        }
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not xml", "not well-formed"),
        (b"<Patient xmlns='http://hl7.org/fhir'/>", "not urn:hl7-org:v3 ClinicalDocument"),
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><code code='1'/></ClinicalDocument>", "id is missing"),
    ],
)
def test_not_a_cda(body: bytes, message: str) -> None:
    with pytest.raises(CdaError, match=message):
        parse_header(body)


def test_entities_are_not_expanded(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xml = (EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
    xml = xml.replace(
        b"<ClinicalDocument", f'<!DOCTYPE x [<!ENTITY s SYSTEM "{secret.as_uri()}">]><ClinicalDocument'.encode(), 1
    )
    xml = xml.replace(b"<title>Compte rendu d'examens biologiques</title>", b"<title>&s;</title>", 1)
    header = parse_header(xml)
    assert "TOP-SECRET" not in (header.title or "")
