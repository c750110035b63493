"""The téléexpertise volets (mappings/cda/teleexpertise.py): TLM-DA (N3) and TLM-CR (N1) pass the CDA XSD,
structuration minimale and their CI-SIS volet schematrons with 0 failed asserts."""

from __future__ import annotations

from typing import Any

import pytest

from mappings.cda.generate import CdaGenerationError
from mappings.cda.parse import document_reference_from_cda, parse_header
from mappings.cda.teleexpertise import generate_tlm_cr, generate_tlm_da
from tests.cda_validation import SCHEMATRONS, failed_asserts, volet_schematron, xsd_errors
from tests.test_cda_generate import scenario

TE2 = {
    "coding": [
        {
            "system": "urn:oid:1.2.250.1.215.200.3.3",
            "code": "TE2",
            "display": "Acte de téléexpertise de niveau 2 d'un médecin sollicité par un autre médecin",
        }
    ]
}


def tlm(type_code: str, display: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], bytes]:
    doc, resources, pdf = scenario()
    doc["type"] = {"coding": [{"system": "http://loinc.org", "code": type_code, "display": display}]}
    # The act first or not: the generator puts it first in the header.
    doc["context"]["event"] = [*doc["context"]["event"], TE2]
    return doc, resources, pdf


def test_tlm_da_passes_its_volet() -> None:
    doc, resources, _ = tlm("75496-0", "Demande d'acte de télémédecine")
    xml = generate_tlm_da(
        doc,
        resources,
        anamnesis="Patiente de 45 ans, lésion pigmentée du dos évolutive.\nAvis dermatologique demandé.",
        treatments="Lévothyrox 75 µg, 1 cp/j",
    )
    assert xsd_errors(xml) == []
    assert failed_asserts(xml) == []
    assert failed_asserts(xml, volet_schematron("TLM-DA_2022.01")) == []
    assert failed_asserts(xml, SCHEMATRONS / "profils" / "CI-SIS_Modeles_ANS.sch") == []
    header = parse_header(xml)
    assert header.structured and "1.2.250.1.213.1.1.1.38" in header.template_ids
    assert header.service_events[0].code.code == "TE2"
    assert b"Avis dermatologique demand\xc3\xa9." in xml
    assert document_reference_from_cda(xml)["type"]["coding"][0]["code"] == "75496-0"


def test_tlm_cr_passes_its_volet() -> None:
    doc, resources, pdf = tlm("85208-7", "Compte rendu d'acte de télémédecine")
    xml = generate_tlm_cr(doc, resources, pdf)
    assert xsd_errors(xml) == []
    assert failed_asserts(xml) == []
    assert failed_asserts(xml, volet_schematron("TLM-CR_2022.01")) == []
    for sch in ("IHE.sch", "CI-SIS_Modeles_ANS.sch", "CI-SIS_ModelesDeContenusCDA.sch"):
        assert failed_asserts(xml, SCHEMATRONS / "profils" / sch) == [], sch
    assert parse_header(xml).service_events[0].code.code == "TE2"


@pytest.mark.parametrize("kind", ["da", "cr"])
def test_tlm_needs_its_type_and_a_telemedicine_act(kind: str) -> None:
    doc, resources, pdf = scenario()  # a lab report type, no NGAP act
    with pytest.raises(CdaGenerationError) as err:
        if kind == "da":
            generate_tlm_da(doc, resources, anamnesis="x")
        else:
            generate_tlm_cr(doc, resources, pdf)
    paths = [p for p, _ in err.value.issues]
    assert "DocumentReference.type" in paths and "DocumentReference.context.event" in paths
