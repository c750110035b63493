"""The téléexpertise volets of the CI-SIS: TLM-DA (demande d'acte de télémédecine, LOINC 75496-0, a
structured N3 document) and TLM-CR (compte rendu d'acte de télémédecine, LOINC 85208-7, an N1 with the
report as PDF), generated from a DocumentReference and its resources like generate.py's N1.

Both carry the télémédecine act (NGAP `TE1`, `TE2`, `TC`, `TCG`, `TLS`, …) in
`documentationOf/serviceEvent/code`: it comes from `DocumentReference.context.event` (a coding of the NGAP
system, `urn:oid:1.2.250.1.215.200.3.3`). The TLM-DA body holds the two sections the volet requires,
"Anamnèse et facteurs de risques" (with its "Anamnèse" sub-section) and "Traitements", as narrative text;
the caller (the téléexpertise workflow) gives those texts. Checked against `CI-SIS_TLM-DA_2022.01.sch`,
`CI-SIS_TLM-CR_2022.01.sch` and structuration minimale in tests/test_cda_teleexpertise.py.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from lxml import etree

from mappings.cda.generate import (
    CdaGenerationError,
    _el,
    _Problems,
    build_header,
    generate_n1,
)
from mappings.cda.systems import LOINC_OID, oid_for_system

NGAP_OID = "1.2.250.1.215.200.3.3"
TELEMEDICINE_ACTS = {"TCG", "TC", "TE1", "TE2", "TLD", "TLL", "TLM", "TLS"}
TLM_DA_TYPE = "75496-0"
TLM_CR_TYPE = "85208-7"
TEMPLATE_TLM_DA = ("1.2.250.1.213.1.1.1.38", "2022.01")
TEMPLATE_XDS_SD = ("1.3.6.1.4.1.19376.1.2.20", None)
_SECTION_NAMESPACE = uuid.UUID("6d0f3c52-8a57-5f0e-9e0b-2f1d6c3b8e41")


def _with_act(document: dict[str, Any], expected_type: str, problems: _Problems) -> dict[str, Any]:
    """A copy of the DocumentReference whose first event is its télémédecine act (what the header emits)."""
    doc = copy.deepcopy(document)
    codes = [c.get("code") for c in (doc.get("type") or {}).get("coding") or []]
    if expected_type not in codes:
        problems.add("DocumentReference.type", f"the document type must be LOINC {expected_type}")
    context = doc.setdefault("context", {})
    events = list(context.get("event") or [])
    act = None
    for concept in events:
        for coding in concept.get("coding") or []:
            if oid_for_system(coding.get("system")) == NGAP_OID and coding.get("code") in TELEMEDICINE_ACTS:
                act = {"coding": [coding]}
                break
        if act:
            break
    if act is None:
        problems.add(
            "DocumentReference.context.event",
            "a télémédecine act of the NGAP (urn:oid:1.2.250.1.215.200.3.3: "
            + ", ".join(sorted(TELEMEDICINE_ACTS))
            + ") is required",
        )
    else:
        context["event"] = [act, *[e for e in events if e is not act]]
    return doc


def generate_tlm_cr(
    document: dict[str, Any],
    resources: Mapping[str, dict[str, Any]],
    pdf: bytes,
    *,
    media_type: str = "application/pdf",
    document_version: str | None = None,
) -> bytes:
    """TLM-CR 2022.01: the report of a télémédecine act, an N1 document (the report as PDF)."""
    problems = _Problems()
    doc = _with_act(document, TLM_CR_TYPE, problems)
    try:
        xml = generate_n1(doc, resources, pdf, media_type=media_type, document_version=document_version)
    except CdaGenerationError as exc:
        problems.issues.extend(exc.issues)
        xml = b""
    if problems.issues:
        raise CdaGenerationError(problems.issues)
    return xml


def _section_id(document: dict[str, Any], name: str) -> str:
    return str(uuid.uuid5(_SECTION_NAMESPACE, f"{document.get('id') or 'unsaved'}/{name}")).upper()


def _narrative(section: etree._Element, text: str) -> None:
    body = _el(section, "text")
    for line in [line.strip() for line in text.splitlines()] or [""]:
        if line:
            _el(body, "paragraph", line)
    if not len(body):
        _el(body, "paragraph", "Non renseigné")


def _section(
    parent: etree._Element,
    document: dict[str, Any],
    name: str,
    templates: list[str],
    code: tuple[str, str],
    title: str,
) -> etree._Element:
    section = _el(_el(parent, "component"), "section")
    for template in templates:
        _el(section, "templateId", root=template)
    _el(section, "id", root=_section_id(document, name))
    _el(section, "code", code=code[0], displayName=code[1], codeSystem=LOINC_OID, codeSystemName="LOINC")
    _el(section, "title", title)
    return section


def generate_tlm_da(
    document: dict[str, Any],
    resources: Mapping[str, dict[str, Any]],
    *,
    anamnesis: str,
    treatments: str | None = None,
    document_version: str | None = None,
) -> bytes:
    """TLM-DA 2022.01: a request for a télémédecine act (téléexpertise), structured (N3), with the
    anamnesis and the current treatments as narrative sections."""
    problems = _Problems()
    doc = _with_act(document, TLM_DA_TYPE, problems)
    root = build_header(doc, resources, problems, templates=[TEMPLATE_TLM_DA], document_version=document_version)
    if not anamnesis.strip():
        problems.add("anamnesis", "the TLM-DA needs the anamnesis (the reason for the request)")
    body = _el(_el(root, "component"), "structuredBody")

    history = _section(
        body,
        doc,
        "anamnese-et-facteurs-de-risques",
        ["1.2.250.1.213.1.1.2.68"],
        ("46612-8", "Conclusions de synthèse"),
        "Anamnèse et facteurs de risques",
    )
    anamnesis_section = _section(
        history, doc, "anamnese", ["1.2.250.1.213.1.1.2.69"], ("34117-2", "Historique et physique"), "Anamnèse"
    )
    _narrative(anamnesis_section, anamnesis)

    treatment_section = _section(
        body,
        doc,
        "traitements",
        ["2.16.840.1.113883.10.20.1.8", "1.3.6.1.4.1.19376.1.5.3.1.3.19", "1.2.250.1.213.1.1.2.143"],
        ("10160-0", "Traitements"),
        "Traitements",
    )
    _narrative(treatment_section, treatments or "Aucun traitement en cours signalé")

    if problems.issues:
        raise CdaGenerationError(problems.issues)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


__all__ = ["NGAP_OID", "TELEMEDICINE_ACTS", "generate_tlm_cr", "generate_tlm_da"]
