"""The compte-rendu PDF (spec §2.8, acceptance test 11): loaded from a real dossier, rendered with fpdf2,
read back with a real PDF text extractor, every required field present with its accents."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from fhir_server.teleexpertise.report_pdf import build_report_context, render_compte_rendu
from tests.helpers import post

BASE = "https://fhir-server.example/fhir"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
KIND = f"{BASE}/CodeSystem/organization-kind"
STUDY_REQUEST = "1.2.826.0.1.3680043.8.498.10428931237845619032"
STUDY_RESPONSE = "1.2.826.0.1.3680043.8.498.99887766554433221100"


def pdf_text(pdf: bytes) -> str:
    """The text of a PDF through a real PDF library (pypdf), else poppler's pdftotext; whitespace folded."""
    try:
        import pypdf
    except ImportError:  # pragma: no cover - depends on the machine
        tool = shutil.which("pdftotext")
        assert tool, "neither pypdf nor pdftotext (poppler-utils) is installed: cannot read PDFs"
        text = subprocess.run([tool, "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True, check=True).stdout
        return " ".join(text.decode().split())
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await post(client, resource)
    assert r.status_code == 201, r.text
    return r.json()


def ref(resource: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


async def organisation(client: httpx.AsyncClient, structure: str, finess: str, communaute: str) -> dict[str, Any]:
    parent = await created(
        client,
        {
            "resourceType": "Organization",
            "name": structure,
            "identifier": [
                {
                    "type": {
                        "coding": [
                            {"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "FINEG"}
                        ]
                    },
                    "system": "urn:oid:1.2.250.1.71.4.2.2",
                    "value": finess,
                }
            ],
            "type": [{"coding": [{"system": KIND, "code": "structure"}]}],
        },
    )
    return await created(
        client,
        {
            "resourceType": "Organization",
            "name": communaute,
            "partOf": ref(parent),
            "type": [{"coding": [{"system": KIND, "code": "communaute"}]}],
        },
    )


async def professional(client: httpx.AsyncClient, rpps: str, family: str, given: str, org: dict) -> dict[str, Any]:
    who = await created(
        client,
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": RPPS, "value": rpps}],
            "name": [{"use": "official", "family": family, "given": [given]}],
        },
    )
    return await created(
        client, {"resourceType": "PractitionerRole", "practitioner": ref(who), "organization": ref(org)}
    )


async def dossier(client: httpx.AsyncClient) -> tuple[str, str]:
    """A Télé-AVC dossier answered by a requis: (ServiceRequest id, Task id)."""
    c_req = await organisation(client, "Centre hospitalier de Béziers", "340780477", "Urgences adultes")
    c_rep = await organisation(client, "CHU de Montpellier", "340780055", "Unité neuro-vasculaire")
    requester = await professional(client, "10101010101", "Lefèvre", "Hélène", c_req)
    responder = await professional(client, "10000000002", "Müller", "François", c_rep)
    patient = await created(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "270023417212345"}],
            "name": [
                {"use": "official", "family": "GARÇON", "given": ["Élodie", "Anaïs"]},
                {"use": "usual", "family": "NOËL"},
            ],
            "gender": "female",
            "birthDate": "1970-02-01",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {
                        "city": "Sète",
                        "extension": [
                            {
                                "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                                "valueCoding": {"code": "34301"},
                            }
                        ],
                    },
                }
            ],
        },
    )
    request_q = await created(
        client,
        {
            "resourceType": "Questionnaire",
            "url": f"{BASE}/Questionnaire/tele-avc-demande",
            "title": "Demande d'avis AVC aigu",
            "status": "active",
            "item": [
                {"linkId": "debut", "text": "Heure de début des symptômes", "type": "dateTime"},
                {"linkId": "nihss", "text": "Score NIHSS", "type": "integer"},
                {"linkId": "aod", "text": "Traitement anticoagulant", "type": "choice"},
                {"linkId": "question", "text": "Question posée au neurologue", "type": "text"},
            ],
        },
    )
    response_q = await created(
        client,
        {
            "resourceType": "Questionnaire",
            "url": f"{BASE}/Questionnaire/tele-avc-reponse",
            "title": "Réponse Télé-AVC",
            "status": "active",
            "item": [
                {"linkId": "thrombolyse", "text": "Thrombolyse indiquée", "type": "boolean"},
                {"linkId": "reco", "text": "Recommandations", "type": "text"},
            ],
        },
    )
    request_qr = await created(
        client,
        {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": request_q["url"],
            "status": "completed",
            "item": [
                {"linkId": "debut", "answer": [{"valueDateTime": "2025-03-14T08:40:00Z"}]},
                {"linkId": "nihss", "answer": [{"valueInteger": 12}]},
                {"linkId": "aod", "answer": [{"valueCoding": {"code": "aod", "display": "Anticoagulant oral direct"}}]},
                {"linkId": "question", "answer": [{"valueString": "Thrombolyse envisageable malgré l'AOD ?"}]},
            ],
        },
    )
    response_qr = await created(
        client,
        {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": response_q["url"],
            "status": "completed",
            "item": [
                {"linkId": "thrombolyse", "answer": [{"valueBoolean": True}]},
                {"linkId": "reco", "answer": [{"valueString": "Transfert en UNV pour thrombectomie, être à jeun."}]},
            ],
        },
    )
    name = "ECG d'entrée – été.pdf"
    binary = await client.post(
        "Binary",
        content=b"%PDF-1.4 ecg",
        headers={
            "Content-Type": "application/pdf",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        },
    )
    assert binary.status_code == 201
    attachment = await created(
        client,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": ref(patient),
            "content": [{"attachment": {"url": f"Binary/{binary.json()['id']}"}}],  # title filled by the server
        },
    )
    reply_doc = await created(
        client,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [{"attachment": {"contentType": "image/jpeg", "title": "schéma-artères.jpg", "url": "urn:x"}}],
        },
    )
    studies = [
        await created(
            client,
            {
                "resourceType": "ImagingStudy",
                "status": "available",
                "subject": ref(patient),
                "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
            },
        )
        for uid in (STUDY_REQUEST, STUDY_RESPONSE)
    ]
    request = await created(
        client,
        {
            "resourceType": "ServiceRequest",
            "identifier": [{"system": f"{BASE}/teledossier", "value": "TLD-2025-000123"}],
            "status": "active",
            "intent": "order",
            "priority": "stat",
            "category": [{"coding": [{"system": f"{BASE}/CodeSystem/teledossier-type", "code": "tele-avc"}]}],
            "subject": ref(patient),
            "requester": ref(requester),
            "performer": [ref(c_rep)],
            "authoredOn": "2025-03-14T09:22:05Z",
            "supportingInfo": [ref(request_qr), ref(attachment), ref(studies[0])],
        },
    )
    task = await created(
        client,
        {
            "resourceType": "Task",
            "status": "completed",
            "intent": "order",
            "basedOn": [ref(request)],
            "focus": ref(request),
            "owner": ref(responder),
            "executionPeriod": {"start": "2025-03-14T09:30:00Z", "end": "2025-03-14T10:02:30Z"},
            "output": [
                {"type": {"text": "réponse"}, "valueReference": ref(response_qr)},
                {"type": {"text": "pièce jointe"}, "valueReference": ref(reply_doc)},
                {"type": {"text": "examen"}, "valueReference": ref(studies[1])},
            ],
        },
    )
    return request["id"], task["id"]


# Every field of spec §2.8 / acceptance test 11, as it must read in the PDF.
EXPECTED = [
    # requester: ID, nom, prénom, structure (ID, libellé), communauté
    "10101010101",
    "Lefèvre",
    "Hélène",
    "Centre hospitalier de Béziers",
    "340780477",
    "Urgences adultes",
    # patient: birth name, first names, DOB, sex, birth place, INS
    "GARÇON",
    "Élodie Anaïs",
    "01/02/1970",
    "Féminin",
    "Sète (34301)",
    "270023417212345",
    # request form: Questionnaire texts and answers (Paris time, to the second)
    "Demande d'avis AVC aigu",
    "Heure de début des symptômes",
    "14/03/2025 09:40:00",
    "Score NIHSS",
    "12",
    "Anticoagulant oral direct",
    "Thrombolyse envisageable malgré l'AOD ?",
    # attachments (file names) and studies
    "ECG d'entrée – été.pdf",
    STUDY_REQUEST,
    # response: responder RPPS, name, structure, communauté; form; attachments; studies
    "10000000002",
    "Müller",
    "François",
    "CHU de Montpellier",
    "Unité neuro-vasculaire",
    "Réponse Télé-AVC",
    "Thrombolyse indiquée",
    "Oui",
    "Transfert en UNV pour thrombectomie, être à jeun.",
    "schéma-artères.jpg",
    STUDY_RESPONSE,
    # dossier and dates
    "TLD-2025-000123",
    "Télé-AVC",
    "14/03/2025 10:22:05",
    "14/03/2025 11:02:30",
]


async def test_compte_rendu_holds_every_field(client: httpx.AsyncClient, app: Any) -> None:
    sr_id, task_id = await dossier(client)
    context = await build_report_context(app.state.server, sr_id, task_id)
    pdf = render_compte_rendu(context)
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    missing = [field for field in EXPECTED if field not in text]
    assert not missing, f"missing from the PDF: {missing}\n{text}"
    # Labelled as such: the responder's RPPS, and the requester is not mistaken for the responder.
    assert "RPPS 10000000002" in text
    assert text.index("Lefèvre") < text.index("Auteur du compte-rendu") < text.index("Müller")
    # The compte-rendu PDF stored as a Binary (as the workflow does) reads back the same.
    from fhir_server.interactions.binary import store_bytes

    version = await store_bytes(app.state.server, pdf, "application/pdf", filename="compte-rendu.pdf")
    raw = await client.get(f"Binary/{version.id}", headers={"Accept": "application/pdf"})
    assert raw.status_code == 200 and raw.content == pdf
    doc = await created(
        client,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [{"attachment": {"url": f"Binary/{version.id}"}}],
        },
    )
    assert doc["content"][0]["attachment"]["size"] == len(pdf)
    assert doc["content"][0]["attachment"]["title"] == "compte-rendu.pdf"


async def test_the_workflow_may_name_responder_and_response(client: httpx.AsyncClient, app: Any) -> None:
    sr_id, task_id = await dossier(client)
    task = (await client.get(f"Task/{task_id}")).json()
    # Before the answer is written: a Task still owned by the communauté, with no output.
    request = (await client.get(f"ServiceRequest/{sr_id}")).json()
    pending = await created(
        client,
        {
            "resourceType": "Task",
            "status": "in-progress",
            "intent": "order",
            "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
            "focus": {"reference": f"ServiceRequest/{sr_id}"},
            "owner": request["performer"][0],
        },
    )
    task_id = pending["id"]
    response_id = task["output"][0]["valueReference"]["reference"].split("/")[1]
    context = await build_report_context(
        app.state.server,
        sr_id,
        task_id,
        response_id=response_id,
        responder=task["owner"]["reference"],
        answered="2025-03-14T10:05:00Z",
        conclusion="Avis rendu : thrombectomie.",
    )
    text = pdf_text(render_compte_rendu(context))
    for field in (
        "10000000002",
        "Müller",
        "Thrombolyse indiquée",
        "14/03/2025 11:05:00",
        "Avis rendu : thrombectomie.",
    ):
        assert field in text, field


async def test_unknown_dossier_is_404(app: Any) -> None:
    from fhir_server.errors import FHIRError

    with pytest.raises(FHIRError) as caught:
        await build_report_context(app.state.server, "nope", "nope")
    assert caught.value.status == 404


def test_an_empty_context_still_renders() -> None:
    text = pdf_text(render_compte_rendu({}))
    assert "Compte-rendu de téléexpertise" in text
    assert "Aucune pièce jointe" in text and "Aucun examen" in text
