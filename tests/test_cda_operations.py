"""The CDA operations over HTTP: DocumentReference/[id]/$cda (generate an N1, validated by the CDA XSD
and the CI-SIS structuration-minimale schematron) and DocumentReference/$from-cda (file an incoming CDA)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import httpx

from mappings.cda.parse import parse_header
from tests.cda_validation import EXAMPLES, failed_asserts, xsd_errors
from tests.conftest import TEST_BASE, token_for
from tests.helpers import FHIR_JSON, outcome_of, post
from tests.test_cda_generate import (
    document_reference,
    organization,
    patient_ins,
    pdf_bytes,
    practitioner,
    practitioner_role,
)

CDA = "application/hl7-cda+xml"
N1_EXAMPLE = EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml"


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await post(client, resource)
    assert r.status_code == 201, r.text
    return r.json()


async def document_with_context(
    client: httpx.AsyncClient, **changes: Any
) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """Patient (INS), Practitioner (RPPS), Organization (FINESS), PractitionerRole, Binary (raw PDF
    upload), and the DocumentReference pointing to all of them."""
    # Each test's patient has its own INS and IPP: the module's tests share one database.
    patient = await created(client, patient_ins(ins=f"1{uuid.uuid4().int % 10**14:014d}", ipp=uuid.uuid4().hex))
    doctor = await created(client, practitioner())
    org = await created(client, organization())
    role = await created(client, practitioner_role(f"Practitioner/{doctor['id']}", f"Organization/{org['id']}"))
    pdf = pdf_bytes("Hémogramme : normal")
    r = await client.post("Binary", content=pdf, headers={"Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text
    binary = r.json()
    doc = document_reference(
        f"Patient/{patient['id']}",
        f"PractitionerRole/{role['id']}",
        f"Organization/{org['id']}",
        f"Practitioner/{doctor['id']}",
        {"contentType": "application/pdf", "language": "fr-FR", "url": f"Binary/{binary['id']}"},
    )
    doc.update(changes)
    return await created(client, doc), pdf, patient


async def count(client: httpx.AsyncClient, resource_type: str) -> int:
    r = await client.get(resource_type, params={"_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def test_cda_operation_returns_a_valid_n1(client: httpx.AsyncClient) -> None:
    doc, pdf, patient = await document_with_context(client)
    r = await client.get(f"DocumentReference/{doc['id']}/$cda", headers={"Accept": CDA})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(CDA)
    xml = r.content
    assert xsd_errors(xml) == []
    assert failed_asserts(xml) == []

    header = parse_header(xml)
    assert header.id.root == "1.2.250.1.999.1.1.42"
    assert header.code.code == "11502-2" and header.confidentiality.code == "R"
    assert (header.patient.ids[0].root, header.patient.ids[0].extension) == (
        "1.2.250.1.213.1.4.10",
        patient["identifier"][0]["value"],
    )
    assert header.authors[0].ids[0].extension == "801234534765"
    assert header.custodian.ids[0].extension == "1120459876"
    assert header.practice_setting.code == "AMBULATOIRE" and header.facility.code == "SA07"
    body = xml.split(b'representation="B64">', 1)[1].split(b"<", 1)[0]
    assert base64.b64decode(body) == pdf

    # Audited as an operation on that DocumentReference.
    events = await client.get("AuditEvent", params={"entity": f"DocumentReference/{doc['id']}", "_count": "50"})
    ops = [e["resource"] for e in events.json().get("entry", []) if e["resource"]["subtype"][0]["code"] == "operation"]
    assert ops and ops[0]["outcome"] == "0"


async def test_cda_operation_names_what_is_missing(client: httpx.AsyncClient) -> None:
    doc, _, _ = await document_with_context(client)
    context = dict(doc["context"])
    del context["practiceSetting"]
    changed = {**doc, "context": context}
    r = await client.put(f"DocumentReference/{doc['id']}", json=changed, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    r = await client.get(f"DocumentReference/{doc['id']}/$cda")
    assert r.status_code == 422
    issues = outcome_of(r)["issue"]
    assert any(i.get("expression") == ["DocumentReference.context.practiceSetting"] for i in issues), issues


async def test_cda_operation_needs_a_pdf(client: httpx.AsyncClient) -> None:
    doc, _, _ = await document_with_context(client)
    changed = {**doc, "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/nope"}}]}
    r = await client.put(f"DocumentReference/{doc['id']}", json=changed, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    r = await client.get(f"DocumentReference/{doc['id']}/$cda")
    assert r.status_code == 422 and "PDF" in outcome_of(r)["issue"][0]["diagnostics"]


async def test_cda_operation_scope_and_type(client: httpx.AsyncClient, app: object, settings) -> None:
    doc, _, _ = await document_with_context(client)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token_for(settings, 'system/Patient.read')}"}
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/", headers=headers) as narrow:
        r = await narrow.get(f"DocumentReference/{doc['id']}/$cda")
        assert r.status_code == 403 and outcome_of(r)["issue"][0]["code"] == "forbidden"
    r = await client.get(f"Patient/{doc['subject']['reference'].split('/')[1]}/$cda")
    assert r.status_code == 404
    assert (await client.get("DocumentReference/unknown-id/$cda")).status_code == 404


async def post_cda(client: httpx.AsyncClient, xml: bytes, ctype: str = CDA) -> httpx.Response:
    return await client.post("DocumentReference/$from-cda", content=xml, headers={"Content-Type": ctype})


async def test_from_cda_files_binary_and_document_reference(client: httpx.AsyncClient) -> None:
    patient = await created(client, patient_ins())
    author = await created(
        client,
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "801234534765"}],
            "name": [{"family": "CAMPARINI", "given": ["Marcel"]}],
        },
    )
    xml = N1_EXAMPLE.read_bytes()
    r = await post_cda(client, xml)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert r.headers["location"].startswith(f"{TEST_BASE}/DocumentReference/{doc['id']}/_history/1")
    assert doc["subject"]["reference"] == f"Patient/{patient['id']}"
    assert doc["masterIdentifier"]["value"] == "urn:oid:1.3.6.1.4.1.19376.1.2.20.12345.1.1"
    assert doc["type"]["coding"][0]["code"] == "11502-2"
    assert doc["author"][0]["reference"] == f"Practitioner/{author['id']}"
    assert "reference" not in doc["custodian"] and doc["custodian"]["identifier"]["value"] == "1120459876"
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "text/xml" and attachment["size"] == len(xml)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(xml).digest()).decode()
    # The Binary holds the document byte for byte; $cda serves it back unchanged.
    raw = await client.get(attachment["url"], headers={"Accept": "*/*"})
    assert raw.status_code == 200 and raw.content == xml
    back = await client.get(f"DocumentReference/{doc['id']}/$cda")
    assert back.status_code == 200 and back.content == xml and back.headers["content-type"].startswith(CDA)
    # Searchable like any DocumentReference of that patient.
    found = await client.get("DocumentReference", params={"patient": patient["id"], "type": "11502-2"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [doc["id"]]

    # The same document again: the existing DocumentReference, nothing new.
    before = await count(client, "Binary")
    again = await post_cda(client, xml, "text/xml")
    assert again.status_code == 200 and again.json()["id"] == doc["id"]
    assert await count(client, "Binary") == before

    # A new version replacing it: relatesTo replaces, and the old one is superseded.
    v2 = xml.replace(
        b'<id root="1.3.6.1.4.1.19376.1.2.20.12345.1.1"/>', b'<id root="1.3.6.1.4.1.19376.1.2.20.12345.1.2"/>'
    )
    v2 = v2.replace(b'<versionNumber value="1"/>', b'<versionNumber value="2"/>')
    v2 = v2.replace(
        b"<!-- Acte document",
        b'<relatedDocument typeCode="RPLC"><parentDocument><id root="1.3.6.1.4.1.19376.1.2.20.12345.1.1"/>'
        b"</parentDocument></relatedDocument><!-- Acte document",
        1,
    )
    assert failed_asserts(v2) == []  # still a valid CI-SIS document
    r = await post_cda(client, v2)
    assert r.status_code == 201, r.text
    assert r.json()["relatesTo"][0] == {
        "code": "replaces",
        "target": {
            "type": "DocumentReference",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.3.6.1.4.1.19376.1.2.20.12345.1.1"},
            "reference": f"DocumentReference/{doc['id']}",
        },
    }
    old = (await client.get(f"DocumentReference/{doc['id']}")).json()
    assert old["status"] == "superseded" and old["meta"]["versionId"] == "2"


async def test_generated_cda_comes_back_as_the_same_document(client: httpx.AsyncClient) -> None:
    doc, _, _ = await document_with_context(
        client, masterIdentifier={"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.1.77"}
    )
    xml = (await client.get(f"DocumentReference/{doc['id']}/$cda")).content
    r = await post_cda(client, xml)
    # Same uniqueId, same document: the DocumentReference it was generated from.
    assert r.status_code == 200 and r.json()["id"] == doc["id"]


async def test_from_cda_refusals_leave_nothing(client: httpx.AsyncClient) -> None:
    before = (await count(client, "DocumentReference"), await count(client, "Binary"))
    unknown = (
        N1_EXAMPLE.read_bytes()
        .replace(b"279035121518989", b"299999999999999")
        .replace(b"1234567890121", b"0000000000000")
    )
    unknown = unknown.replace(b"12345.1.1", b"12345.9.9")
    r = await post_cda(client, unknown)
    assert r.status_code == 422
    assert "299999999999999" in outcome_of(r)["issue"][0]["diagnostics"]
    r = await post_cda(client, b"<not-closed>")
    assert r.status_code == 400 and outcome_of(r)["issue"][0]["code"] == "structure"
    r = await post_cda(client, N1_EXAMPLE.read_bytes(), "application/pdf")
    assert r.status_code == 415
    r = await client.post("Patient/$from-cda", content=N1_EXAMPLE.read_bytes(), headers={"Content-Type": CDA})
    assert r.status_code == 404
    assert (await count(client, "DocumentReference"), await count(client, "Binary")) == before


async def test_from_cda_needs_binary_create_scope(client: httpx.AsyncClient, app: object, settings) -> None:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    token = token_for(settings, "system/DocumentReference.* system/Patient.read")
    async with httpx.AsyncClient(
        transport=transport, base_url=TEST_BASE + "/", headers={"Authorization": f"Bearer {token}"}
    ) as narrow:
        r = await post_cda(narrow, N1_EXAMPLE.read_bytes())
        assert r.status_code == 403 and "Binary" in outcome_of(r)["issue"][0]["diagnostics"]


async def test_from_cda_failed_write_leaves_no_trace(client: httpx.AsyncClient, app: object, settings) -> None:
    await created(client, patient_ins(ins="184127645108946", ipp="ipp-failure"))
    xml = N1_EXAMPLE.read_bytes().replace(b"279035121518989", b"184127645108946").replace(b"12345.1.1", b"12345.7.7")
    before = (await count(client, "DocumentReference"), await count(client, "Binary"))
    blobs = settings.data_dir / "blobs" / "binary"
    files_before = sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
    store = app.state.server.store  # type: ignore[attr-defined]
    store.tx.inject.count, store.tx.inject.after = 0, 0  # the transaction fails while staging
    try:
        r = await post_cda(client, xml)
    finally:
        store.tx.inject.after = None
    assert r.status_code == 500 and outcome_of(r)["issue"][0]["code"] == "exception"
    assert (await count(client, "DocumentReference"), await count(client, "Binary")) == before
    files_after = sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
    assert files_after == files_before
    # And the same document goes through once the store is healthy again.
    assert (await post_cda(client, xml)).status_code == 201
