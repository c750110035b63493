"""ORU^R01 and MDM^T02/T10/T04/T11 over MLLP → DocumentReference + Binary, DiagnosticReport and
ServiceRequest, read back through the FHIR API: new document, replacement, deletion, routing flags and
recipients, the CDA header codes, accession number and Study Instance UID, identity checks."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import pytest
from fpdf import FPDF

from tests.test_hl7v2_support import INS_TEST, IPP_OID, TRANS, adt, hl7_server, one, search, send_one, with_header

SEGUR_MDM = TRANS / "segur-vague2-v2.1" / "mdm"
SEGUR_ORU = TRANS / "segur-vague2-v2.1" / "oru"
V20_ORU = TRANS / "v2.0" / "oru"
ROUTING = "urn:fhir-server:hl7v2:cisis-routing"
DOC_81 = "urn:ietf:rfc:3986|urn:oid:1.2.250.1.71.4.2.2.120456789.71024000081"
DOC_82 = "urn:ietf:rfc:3986|urn:oid:1.2.250.1.71.4.2.2.120456789.71024000082"


@pytest.fixture(scope="module")
async def mllp(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple]:
    async with hl7_server(ferretdb_uri, tmp_path_factory.mktemp("hl7docs")) as (_app, client, port):
        yield client, port


def obx_payload(raw: bytes, set_id: str = "1") -> bytes:
    for line in raw.decode("utf-8").replace("\r\n", "\n").split("\n"):
        if line.startswith(f"OBX|{set_id}|ED|"):
            return base64.b64decode(line.split("|")[5].split("^")[4])
    raise AssertionError("no ED OBX")


def routing(doc: dict) -> dict:
    ext = next(e for e in doc["extension"] if e["url"] == ROUTING)
    flags = {e["url"]: e.get("valueBoolean") for e in ext["extension"] if "valueBoolean" in e}
    recipients = [e for e in ext["extension"] if e["url"] == "recipient"]
    bodies = {e["url"]: e["valueString"] for e in ext["extension"] if "valueString" in e}
    return {"flags": flags, "recipients": recipients, "bodies": bodies}


async def binary_bytes(client, url: str) -> bytes:
    r = await client.get(url, headers={"Accept": "*/*"})
    assert r.status_code == 200, r.text
    return r.content


async def test_mdm_new_replace_delete_with_real_cda(mllp) -> None:
    client, port = mllp
    init = (SEGUR_MDM / "transmission-initiale" / "message_MDM_CR_Radio_INIT_N1_Base64.er7").read_bytes()
    ack = await send_one(port, with_header(init, "MDM-1"))
    assert ack.code == "AA", ack
    doc = await one(client, "DocumentReference", identifier=DOC_81)
    patient = await one(client, "Patient", identifier=f"{INS_TEST}|279035121518989")
    assert doc["status"] == "current" and doc["docStatus"] == "final"
    assert doc["subject"]["reference"] == f"Patient/{patient['id']}"
    assert doc["type"]["coding"][0]["system"] == "http://loinc.org" and doc["type"]["coding"][0]["code"] == "18748-4"
    assert doc["date"].startswith("2022-12-16T09:32:00")  # TXA-4, Europe/Paris
    rpps = next(a for a in doc["author"] if a.get("type") == "Practitioner")
    assert rpps["identifier"] == {
        "value": "801234564895",
        "system": "urn:oid:1.2.250.1.71.4.2.1",
        "type": {"coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "IDNPS"}]},
    }
    org = next(a for a in doc["author"] if a.get("type") == "Organization")
    assert org["identifier"]["value"] == "300017985" and org["display"] == "Organisation-Y"
    meta = routing(doc)
    assert meta["flags"]["DESTDMP"] is True and meta["flags"]["INVISIBLE_PATIENT"] is True
    assert meta["flags"]["DESTMSSANTEPAT"] is False
    assert meta["recipients"][0]["extension"][-1]["valueContactPoint"]["value"] == "adam.hoda@test-ci-sis.mssante.fr"
    assert meta["bodies"]["mailBodyPS"].startswith("Cher confrère")
    # The CDA header parser (mappings/cda) completed the XDS codes: class, confidentiality, format.
    assert doc["category"][0]["coding"][0]["code"]
    assert doc["securityLabel"][0]["coding"][0]["code"] == "N"
    assert doc["content"][0]["format"]["code"]
    attachment = doc["content"][0]["attachment"]
    payload = obx_payload(init)
    assert attachment["contentType"] == "text/xml" and attachment["size"] == len(payload)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(payload).digest()).decode()
    assert await binary_bytes(client, attachment["url"]) == payload
    binary = (await client.get(attachment["url"], headers={"Accept": "application/fhir+json"})).json()
    assert binary["securityContext"]["reference"] == f"DocumentReference/{doc['id']}"

    report = await one(client, "DiagnosticReport", subject=f"Patient/{patient['id']}")
    assert report["status"] == "final" and report["category"][0]["coding"][0]["code"] == "RAD"
    assert report["code"]["coding"][0]["code"] == "18748-4"
    assert [f["url"] for f in report["presentedForm"]] == [attachment["url"]]
    idents = {(i.get("type", {}).get("coding", [{}])[0].get("code"), i["value"]) for i in report["identifier"]}
    assert ("ACSN", "7252295367250056") in idents
    assert (None, "urn:oid:1.3.6.1.4.1.5962.99.1.3711725607.829148806.1687338938407.3.0") in idents
    assert any(r["reference"] == f"DiagnosticReport/{report['id']}" for r in doc["context"]["related"])
    found = await search(
        client,
        "DiagnosticReport",
        identifier="urn:dicom:uid|urn:oid:1.3.6.1.4.1.5962.99.1.3711725607.829148806.1687338938407.3.0",
    )
    assert [r["id"] for r in found] == [report["id"]]

    # T10: a new DocumentReference replaces the first, which is superseded.
    rplc = (SEGUR_MDM / "remplacement" / "message_MDM_CR_Radio_RPLC_N1.er7").read_bytes()
    ack = await send_one(port, with_header(rplc, "MDM-2"))
    assert ack.code == "AA", ack
    new = await one(client, "DocumentReference", identifier=DOC_82)
    assert new["status"] == "current"
    assert new["relatesTo"] == [{"code": "replaces", "target": {"reference": f"DocumentReference/{doc['id']}"}}]
    old = (await client.get(f"DocumentReference/{doc['id']}")).json()
    assert old["status"] == "superseded" and old["meta"]["versionId"] == "2"
    assert routing(new)["flags"]["MODIF_CONF_CODE"] is True and routing(new)["flags"]["INVISIBLE_PATIENT"] is False
    report = (await client.get(f"DiagnosticReport/{report['id']}")).json()
    assert [f["url"] for f in report["presentedForm"]] == [new["content"][0]["attachment"]["url"]]

    # T04: the last version is deleted: entered-in-error, and so is the report it was the form of.
    delete = (SEGUR_MDM / "suppression" / "message_MDM_CR_Radio_DEL_N1.er7").read_bytes()
    ack = await send_one(port, with_header(delete, "MDM-3"))
    assert ack.code == "AA", ack
    gone = (await client.get(f"DocumentReference/{new['id']}")).json()
    assert gone["status"] == "entered-in-error" and gone["docStatus"] == "entered-in-error"
    report = (await client.get(f"DiagnosticReport/{report['id']}")).json()
    assert report["status"] == "entered-in-error" and "presentedForm" not in report
    assert len(await search(client, "DocumentReference", subject=f"Patient/{patient['id']}")) == 2


async def test_oru_with_order_numbers_links_a_service_request(mllp) -> None:
    client, port = mllp
    init = (SEGUR_ORU / "transmission-initiale" / "message_ORU_CR_Bio_INIT_N3_SEGUR.hl7").read_bytes()
    ack = await send_one(port, with_header(init, "ORU-1"))
    assert ack.code == "AA", ack
    order = await one(client, "ServiceRequest", identifier="urn:fhir-server:hl7v2:assigning-authority:labo|1001-E1")
    assert {i["type"]["coding"][0]["code"]: i["value"] for i in order["identifier"]} == {
        "FILL": "1001-E1",
        "PLAC": "98765431",
    }
    assert order["status"] == "completed" and order["code"]["coding"][0]["code"] == "11502-2"
    report = await one(client, "DiagnosticReport", identifier="urn:fhir-server:hl7v2:assigning-authority:labo|1001-E1")
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
    assert report["category"][0]["coding"][0]["code"] == "LAB"
    doc = await one(client, "DocumentReference", identifier="urn:ietf:rfc:3986|urn:oid:1.2.250.1.213.1.1.9")
    related = {r["reference"] for r in doc["context"]["related"]}
    assert related == {f"ServiceRequest/{order['id']}", f"DiagnosticReport/{report['id']}"}
    assert routing(doc)["flags"]["DESTMSSANTEPAT"] is True
    assert len(routing(doc)["recipients"]) == 2  # a professional and the patient's MSSanté address


async def test_oru_without_readable_cda_keys_documents_by_order_and_position(mllp) -> None:
    """The v2.0 examples carry a dummy base64 ("Document medcial au format CDA niveau 1") in two OBX:
    no CDA id, so each document is known by sender + filler order + OBX code + position."""
    client, port = mllp
    folder = V20_ORU
    files = [
        folder / "transmission-initiale" / "message_ORU_CR_Bio_INIT_N1_N3.hl7",
        folder / "remplacement" / "message_ORU_CR_Bio_RPLC_N1_N3.er7",
        folder / "suppression" / "message_ORU_CR_Bio_DEL_N1_N3.er7",
    ]
    acks = [await send_one(port, with_header(f.read_bytes(), f"V20-{i}")) for i, f in enumerate(files)]
    assert [a.code for a in acks] == ["AA", "AA", "AA"], acks
    patient = await one(client, "Patient", identifier="urn:oid:1.2.250.1.213.1.4.8|277076322082910")
    docs = await search(client, "DocumentReference", subject=f"Patient/{patient['id']}")
    assert sorted(d["status"] for d in docs) == ["entered-in-error", "entered-in-error", "superseded", "superseded"]
    replacements = [d for d in docs if d.get("relatesTo")]
    assert len(replacements) == 2
    for d in replacements:
        target = d["relatesTo"][0]["target"]["reference"].split("/")[1]
        assert next(x for x in docs if x["id"] == target)["status"] == "superseded"


async def test_pdf_document_unknown_patient_and_identity_mismatch(mllp) -> None:
    client, port = mllp
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Compte rendu de consultation")
    data = bytes(pdf.output())
    b64 = base64.b64encode(data).decode()
    pid = (
        "PID|||IPP-PDF^^^CHU-X&1.2.250.1.213.4.5.2.4&ISO^PI~180017512345678^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10"
        "&ISO^INS||GARNIER^LUC^LUC^^^^L||19800101|M"
    )

    def mdm(control_id: str, event: str, pid_segment: str, doc_id: str, obx: bool = True) -> bytes:
        segments = [
            f"MSH|^~\\&|DPI|CHU-X|PFI|CHU-X|20240101120000||MDM^{event}^MDM_T02|{control_id}|P|2.6"
            "|||||FRA|UNICODE UTF-8",
            "EVN||20240101120000",
            pid_segment,
            "PV1|1|O",
            f"TXA|1|11488-4|TEXT|20240101115900||||||||{doc_id}|||||AU",
        ]
        if obx:
            segments.append(f"OBX|1|ED|11488-4^CR de consultation^LN||^application^PDF^Base64^{b64}||||||F")
        return ("\r".join(segments) + "\r").encode()

    ack = await send_one(port, mdm("PDF-1", "T02", pid, "1.2.250.1.999.7.1"))
    assert ack.code == "AA", ack
    doc = await one(client, "DocumentReference", identifier="urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.7.1")
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert await binary_bytes(client, attachment["url"]) == data
    assert "category" not in doc  # no CDA header: only what the HL7 message says
    assert await search(client, "DiagnosticReport", subject=doc["subject"]["reference"]) == []  # no OBR

    # MDM^T11: cancel the document, no content.
    ack = await send_one(port, mdm("PDF-2", "T11", pid, "1.2.250.1.999.7.1", obx=False))
    assert ack.code == "AA", ack
    assert (await client.get(f"DocumentReference/{doc['id']}")).json()["status"] == "entered-in-error"

    # The same document id for another patient: an identity error (AE), the document stays where it is.
    other = (
        "PID|||IPP-PDF2^^^CHU-X&1.2.250.1.213.4.5.2.4&ISO^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10"
        "&ISO^INS||PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L||19790328|F"
    )
    ack = await send_one(port, mdm("PDF-2B", "T02", other, "1.2.250.1.999.7.1"))
    assert ack.code == "AE" and ack.seg("ERR")[3].startswith("205^") and "another patient" in ack.detail
    assert (await client.get(f"DocumentReference/{doc['id']}")).json()["subject"] == doc["subject"]

    # An identifier only, for a patient never seen: AE unknown patient.
    bare = "PID|||NOBODY^^^CHU-X&1.2.250.1.213.4.5.2.4&ISO^PI"
    ack = await send_one(port, mdm("PDF-3", "T02", bare, "1.2.250.1.999.7.2"))
    assert ack.code == "AE" and ack.seg("ERR")[3].startswith("204^") and "unknown patient" in ack.detail
    # The same INS with another birth date: identito-vigilance refuses it (AE), nothing is filed.
    wrong = pid.replace("IPP-PDF", "IPP-OTHER").replace("19800101", "19810101")
    ack = await send_one(port, mdm("PDF-4", "T02", wrong, "1.2.250.1.999.7.3"))
    assert ack.code == "AE" and "identity mismatch" in ack.detail
    assert await search(client, "DocumentReference", identifier="urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.7.3") == []
    # Unsupported MDM events are refused with AE 201.
    ack = await send_one(port, mdm("PDF-5", "T01", pid, "1.2.250.1.999.7.4"))
    assert ack.code == "AE" and ack.seg("ERR")[3].startswith("201^")


async def test_documents_attach_to_the_visit_of_an_admitted_patient(mllp) -> None:
    client, port = mllp
    ack = await send_one(port, adt("A01", "VIS-1", ipp="IPP-VIS", family="VISITE", visit="000897499").encode())
    assert ack.code == "AA"
    encounter = await one(client, "Encounter", identifier=f"urn:oid:{IPP_OID}|000897499")
    msg = (
        "MSH|^~\\&|RIS|CHU-X|PFI|CHU-X|20240101120000||MDM^T02^MDM_T02|VIS-2|P|2.6|||||FRA|UNICODE UTF-8\r"
        f"PID|||IPP-VIS^^^CHU-X&{IPP_OID}&ISO^PI||VISITE^JEAN^JEAN^^^^L||19800101|M\r"
        f"PV1|1|I|||||||||||||||||000897499^^^CHU-X&{IPP_OID}&ISO^VN\r"
        "TXA|1|11490-0|TEXT|20240101115900||||||||1.2.250.1.999.8.1|||||AU\r"
        "OBX|1|ED|11490-0^Lettre de liaison^LN||^text^plain^Base64^"
        + base64.b64encode(b"Sortie ce jour.").decode()
        + "||||||F\r"
    )
    ack = await send_one(port, msg.encode())
    assert ack.code == "AA", ack
    doc = await one(client, "DocumentReference", identifier="urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.8.1")
    assert doc["context"]["encounter"] == [{"reference": f"Encounter/{encounter['id']}"}]
    assert doc["subject"] == encounter["subject"]


RIS_CDA = TRANS.parent / "ris-cda"
SET_ID = b'<setId root="D52DE737-001D-4031-B571-0A0ED7C42300"/>'


def imaging_oru(control_id: str, status: str, cda: bytes) -> bytes:
    b64 = base64.b64encode(cda).decode()
    return (
        "\r".join(
            [
                f"MSH|^~\\&|RIS-Y|Organisation-Y|PFI-Y|Organisation-Y|20240101||ORU^R01^ORU_R01|{control_id}|P|2.5"
                "|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2",
                "PID|||279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||PAT-TROIS^DOMINIQUE"
                "^DOMINIQUE^^^^L||19790328|F",
                "ORC|NW|OPN102^DPI",
                "OBR|1|OPN102^DPI||18748-4^CR d'imagerie médicale^LN",
                f"OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^text^XML^Base64^{b64}||||||{status}",
            ]
        )
        + "\r"
    ).encode()


async def test_imaging_report_versions_sharing_a_set_id(mllp) -> None:
    """CDA versions often carry the first version's id as setId: deleting that first version must not
    touch the current one, and the report keeps the CDA's accession number and Study Instance UID."""
    client, port = mllp
    first_id = b'<setId root="1.2.250.1.213.4.5.4.402"/>'
    v1 = (RIS_CDA / "transmission_initiale_cr_imagerie.xml").read_bytes().replace(SET_ID, first_id)
    v2 = (RIS_CDA / "remplacement_cr_imagerie.xml").read_bytes().replace(SET_ID, first_id)
    assert (await send_one(port, imaging_oru("IMG-1", "F", v1))).code == "AA"
    assert (await send_one(port, imaging_oru("IMG-2", "C", v2))).code == "AA"
    # (The `identifier` search matches the setId too: both versions carry urn:oid:...402.)
    found = await search(client, "DocumentReference", identifier="urn:ietf:rfc:3986|urn:oid:1.2.250.1.213.4.5.4.402")
    by_master = {d["masterIdentifier"]["value"][-3:]: d for d in found}
    old, new = by_master["402"], by_master["403"]
    assert old["status"] == "superseded" and new["status"] == "current"
    assert new["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{old['id']}"
    report = await one(client, "DiagnosticReport", identifier="urn:dicom:uid|urn:oid:1.2.250.1.213.4.5.2.1.102")
    accession = next(i for i in report["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN")
    assert accession["value"] == "ACN102" and accession["system"] == "urn:oid:1.2.250.1.213.4.5.2.5"
    assert [f["url"] for f in report["presentedForm"]] == [new["content"][0]["attachment"]["url"]]

    assert (await send_one(port, imaging_oru("IMG-3", "D", v1))).code == "AA"
    assert (await client.get(f"DocumentReference/{old['id']}")).json()["status"] == "entered-in-error"
    assert (await client.get(f"DocumentReference/{new['id']}")).json()["status"] == "current"
    report = (await client.get(f"DiagnosticReport/{report['id']}")).json()
    assert report["status"] == "final" and len(report["presentedForm"]) == 1
