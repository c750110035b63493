"""FHIR → CDA R2 N1 (mappings/cda/generate.py): the output passes the CDA XSD and the ANS CI-SIS
schematrons (structuration minimale, IHE, modèles ANS) with 0 failed asserts, and parses back to the
same metadata."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from fpdf import FPDF
from lxml import etree

from mappings.cda.generate import CdaGenerationError, generate_n1
from mappings.cda.parse import document_reference_from_cda, parse_header
from tests.cda_validation import SCHEMATRONS, failed_asserts, xsd_errors

NOS = "https://mos.esante.gouv.fr/NOS"
FR_CORE = "https://hl7.fr/ig/fhir/core"
HL7 = {"h": "urn:hl7-org:v3"}
EXTRA_SCHEMATRONS = [
    SCHEMATRONS / "profils" / "IHE.sch",
    SCHEMATRONS / "profils" / "CI-SIS_Modeles_ANS.sch",
    SCHEMATRONS / "profils" / "CI-SIS_ModelesDeContenusCDA.sch",
]


def pdf_bytes(text: str = "Compte rendu de test") -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text=text)
    return bytes(pdf.output())


def patient_ins(ins: str = "279035121518989", ipp: str = "1234567890121", **extra: Any) -> dict[str, Any]:
    """A FR Core Patient INS: INS-NIR (test root, as the ANS examples), IPP, the INS traits."""
    return {
        "resourceType": "Patient",
        "extension": [
            {
                "url": f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability",
                "extension": [
                    {
                        "url": "identityStatus",
                        "valueCoding": {"system": f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0445", "code": "VALI"},
                    }
                ],
            },
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {
                    "extension": [
                        {
                            "url": f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code",
                            "valueCoding": {"system": f"{NOS}/TRE_R13-Commune/FHIR/TRE-R13-Commune", "code": "51215"},
                        }
                    ],
                    "city": "DOMPREMY",
                },
            },
        ],
        "identifier": [
            {
                "type": {"coding": [{"system": f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR-TEST"}]},
                "system": "urn:oid:1.2.250.1.213.1.4.10",
                "value": ins,
            },
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]},
                "system": "urn:oid:1.2.3.4.567.8.9.10",
                "value": ipp,
            },
        ],
        "name": [
            {
                "extension": [
                    {
                        "url": f"{FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name",
                        "valueString": "DOMINIQUE MARIE-LOUISE",
                    }
                ],
                "use": "official",
                "family": "PAT-TROIS",
                "given": ["DOMINIQUE"],
            },
            {"use": "usual", "family": "PAT-TROIS", "given": ["DOMINIQUE"]},
        ],
        "gender": "female",
        "birthDate": "1979-03-28",
        "address": [{"use": "home", "line": ["28 Avenue de Breteuil"], "postalCode": "75007", "city": "PARIS"}],
        "telecom": [{"system": "phone", "value": "01 44 53 45 51", "use": "home"}],
        **extra,
    }


def practitioner() -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [
            {
                "type": {"coding": [{"system": f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203", "code": "RPPS"}]},
                "system": "https://rpps.esante.gouv.fr",
                "value": "01234534765",
            }
        ],
        "name": [{"family": "CAMPARINI", "given": ["Marcel"], "prefix": ["M"], "suffix": ["DR"]}],
    }


def organization() -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "120459876"}],
        "name": "Laboratoire des charmes",
        "telecom": [{"system": "phone", "value": "01 74 58 96 07", "use": "work"}],
        "address": [{"line": ["8 Rue Frédéric Bastia"], "postalCode": "92100", "city": "BOULOGNE-BILLANCOURT"}],
    }


def practitioner_role(practitioner_ref: str, organization_ref: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": practitioner_ref},
        "organization": {"reference": organization_ref},
        "specialty": [
            {
                "coding": [
                    {
                        "system": "urn:oid:1.2.250.1.213.1.1.4.5",
                        "code": "G15_10/SM03",
                        "display": "Médecin - Biologie médicale (SM)",
                    }
                ]
            }
        ],
    }


def document_reference(
    subject: str, author: str, custodian: str, authenticator: str, content: dict[str, Any]
) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.1.42"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2", "display": "CR d'examens biologiques"}]},
        "category": [
            {"coding": [{"system": f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument", "code": "10"}]}
        ],
        "subject": {"reference": subject},
        "date": "2024-05-02T10:15:00+02:00",
        "author": [{"reference": author}],
        "authenticator": {"reference": authenticator},
        "custodian": {"reference": custodian},
        "description": "Compte rendu d'examens biologiques",
        "securityLabel": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}
        ],
        "content": [{"attachment": content}],
        "context": {
            "event": [{"coding": [{"system": "http://loinc.org", "code": "18723-7", "display": "Hématologie"}]}],
            "period": {"start": "2024-05-02T08:00:00+02:00", "end": "2024-05-02T09:00:00+02:00"},
            "facilityType": {
                "coding": [{"system": f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite", "code": "SA07"}]
            },
            "practiceSetting": {
                "coding": [{"system": f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice", "code": "AMBULATOIRE"}]
            },
        },
    }


def scenario() -> tuple[dict[str, Any], dict[str, dict[str, Any]], bytes]:
    """A DocumentReference, the resources it references (by 'Type/id') and its PDF."""
    resources = {
        "Patient/p1": {**patient_ins(), "id": "p1"},
        "Practitioner/pr1": {**practitioner(), "id": "pr1"},
        "Organization/o1": {**organization(), "id": "o1"},
        "PractitionerRole/r1": {**practitioner_role("Practitioner/pr1", "Organization/o1"), "id": "r1"},
    }
    pdf = pdf_bytes()
    doc = document_reference(
        "Patient/p1",
        "PractitionerRole/r1",
        "Organization/o1",
        "Practitioner/pr1",
        {"contentType": "application/pdf", "language": "fr-FR", "url": "Binary/b1"},
    )
    doc["id"] = "d1"
    return doc, resources, pdf


def assert_valid(xml: bytes, *, all_profiles: bool = False) -> None:
    assert xsd_errors(xml) == []
    assert failed_asserts(xml) == []  # ASIP-STRUCT-MIN-StrucMin.sch
    if all_profiles:
        for sch in EXTRA_SCHEMATRONS:
            assert failed_asserts(xml, sch) == [], sch.name


def test_n1_passes_xsd_and_ci_sis_schematrons() -> None:
    doc, resources, pdf = scenario()
    xml = generate_n1(doc, resources, pdf)
    assert_valid(xml, all_profiles=True)

    root = etree.fromstring(xml)
    assert [t.get("root") for t in root.findall("h:templateId", HL7)] == [
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.3.6.1.4.1.19376.1.2.20",
    ]
    assert root.find("h:realmCode", HL7).get("code") == "FR"
    text = root.find("h:component/h:nonXMLBody/h:text", HL7)
    assert text.get("mediaType") == "application/pdf" and base64.b64decode(text.text) == pdf
    # The RPPS becomes the IDNPS (8 + RPPS), the FINESS the IDNST (1 + FINESS).
    assert root.find("h:author/h:assignedAuthor/h:id", HL7).attrib == {
        "root": "1.2.250.1.71.4.2.1",
        "extension": "801234534765",
    }
    custodian_id = root.find("h:custodian/h:assignedCustodian/h:representedCustodianOrganization/h:id", HL7)
    assert custodian_id.attrib == {"root": "1.2.250.1.71.4.2.2", "extension": "1120459876"}
    assert root.find("h:author/h:assignedAuthor/h:code", HL7).get("code") == "G15_10/SM03"
    # INS traits.
    name = root.find("h:recordTarget/h:patientRole/h:patient/h:name", HL7)
    parts = [(etree.QName(p).localname, p.get("qualifier"), p.text) for p in name]
    assert ("family", "BR", "PAT-TROIS") in parts
    assert ("given", None, "DOMINIQUE MARIE-LOUISE") in parts
    assert ("given", "BR", "DOMINIQUE") in parts
    county = root.find("h:recordTarget/h:patientRole/h:patient/h:birthplace/h:place/h:addr/h:county", HL7)
    assert county.text == "51215"


def test_generated_document_parses_back_to_the_same_metadata() -> None:
    doc, resources, pdf = scenario()
    xml = generate_n1(doc, resources, pdf)
    back = document_reference_from_cda(xml)
    assert back["masterIdentifier"] == doc["masterIdentifier"]
    assert back["type"]["coding"][0]["code"] == "11502-2"
    assert back["category"][0]["coding"][0]["code"] == "10"
    assert back["subject"]["identifier"] == {
        "system": "urn:oid:1.2.250.1.213.1.4.10",
        "value": "279035121518989",
        "type": {"coding": [{"system": f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR-TEST"}]},
    }
    assert back["date"] == doc["date"]
    assert back["author"][0]["identifier"] == {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "801234534765"}
    assert back["author"][1]["identifier"] == {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1120459876"}
    assert back["authenticator"]["identifier"]["value"] == "801234534765"
    assert back["custodian"]["display"] == "Laboratoire des charmes"
    assert back["securityLabel"][0]["coding"][0]["code"] == "R"
    for key in ("period", "facilityType", "practiceSetting", "event"):
        got, want = back["context"][key], doc["context"][key]
        if key == "period":
            assert got == want
        else:
            codes = lambda c: [x["code"] for x in (c if isinstance(c, list) else [c])[0]["coding"]]  # noqa: E731
            assert codes(got) == codes(want), key
    assert back["content"][0]["format"]["code"] == "urn:ihe:iti:xds-sd:pdf:2008"
    header = parse_header(xml)
    assert header.version_number == 1 and header.set_id is not None and header.set_id.root != header.id.root


def test_patient_without_ins_uses_the_ipp_and_still_validates() -> None:
    doc, resources, pdf = scenario()
    p = resources["Patient/p1"]
    p["identifier"] = p["identifier"][1:]
    p["extension"] = []
    xml = generate_n1(doc, resources, pdf)
    assert_valid(xml)
    ids = parse_header(xml).patient.ids
    assert [(i.root, i.extension) for i in ids] == [("1.2.3.4.567.8.9.10", "1234567890121")]


def test_unqualified_identity_does_not_send_the_ins() -> None:
    doc, resources, pdf = scenario()
    status = resources["Patient/p1"]["extension"][0]["extension"][0]["valueCoding"]
    status["code"] = "PROV"  # identité provisoire: the INS must not be used
    xml = generate_n1(doc, resources, pdf)
    assert_valid(xml)
    assert [i.root for i in parse_header(xml).patient.ids] == ["1.2.3.4.567.8.9.10"]


def test_replacement_carries_the_parent_and_its_set() -> None:
    doc, resources, pdf = scenario()
    old = copy.deepcopy(doc)
    old["id"] = "d0"
    old["masterIdentifier"] = {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.1.41"}
    old["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.2.7", "use": "secondary"}]
    resources["DocumentReference/d0"] = old
    doc["relatesTo"] = [{"code": "replaces", "target": {"reference": "DocumentReference/d0"}}]
    xml = generate_n1(doc, resources, pdf)
    assert_valid(xml)
    header = parse_header(xml)
    assert header.set_id.root == "1.2.250.1.999.1.2.7" and header.version_number == 2
    (related,) = header.related_documents
    assert related.type_code == "RPLC" and related.ids[0].root == "1.2.250.1.999.1.1.41"
    assert document_reference_from_cda(xml)["relatesTo"][0]["code"] == "replaces"


def test_derived_ids_are_stable_oids() -> None:
    doc, resources, pdf = scenario()
    del doc["masterIdentifier"]
    first, again = generate_n1(doc, resources, pdf), generate_n1(doc, resources, pdf)
    assert parse_header(first).id == parse_header(again).id
    assert parse_header(first).id.root.startswith("2.25.")
    assert_valid(first)


@pytest.mark.parametrize(
    "damage, path",
    [
        (lambda d, r: r["Patient/p1"].pop("birthDate"), "Patient"),
        (lambda d, r: r["Patient/p1"]["extension"].pop(1), "Patient"),
        (
            lambda d, r: d.update(type={"coding": [{"system": "http://loinc.org", "code": "1-8"}]}),
            "DocumentReference.type",
        ),
        (lambda d, r: d["context"].pop("practiceSetting"), "DocumentReference.context.practiceSetting"),
        (lambda d, r: d["context"].pop("facilityType"), "DocumentReference.context.facilityType"),
        (lambda d, r: r["Practitioner/pr1"].pop("identifier"), "DocumentReference.author[0]"),
        (lambda d, r: r.pop("Patient/p1"), "DocumentReference.subject"),
        (lambda d, r: r["Organization/o1"].pop("identifier"), "DocumentReference.custodian"),
    ],
)
def test_what_the_ci_sis_requires_is_named(damage, path: str) -> None:
    doc, resources, pdf = scenario()
    damage(doc, resources)
    with pytest.raises(CdaGenerationError) as err:
        generate_n1(doc, resources, pdf)
    assert path in [p for p, _ in err.value.issues], err.value.issues
