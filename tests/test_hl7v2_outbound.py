"""Outbound HL7 v2: `$send-hl7` builds an MDM^T02 / ORU^R01 from a DocumentReference or a
DiagnosticReport and the durable outbox delivers it over MLLP to real asyncio peers: a peer that is down
then up (retries with back-off), a peer that refuses (AE, not retried), restarts (queued messages
survive, acknowledged ones are never sent again), and the ZAM business acknowledgements that follow."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mappings.hl7v2.segments import Message
from tests.test_hl7v2_support import INS_TEST, IPP_OID, free_port, hl7_server, one, search, send_one

FR_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
CDA_N1 = Path(__file__).parent.parent.parent / "shared" / "fixtures" / "hl7v2" / "ris-cda"


class Peer:
    """An MLLP receiver: records every message, answers MSA-1 `code` for its MSH-10."""

    def __init__(self, port: int, code: str = "AA") -> None:
        self.port, self.code = port, code
        self.received: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> Peer:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                frame = await reader.readuntil(b"\x1c\x0d")
                text = frame[frame.find(b"\x0b") + 1 : -2].decode("utf-8")
                self.received.append(text)
                msh = text.split("\r")[0].split("|")
                event = msh[8].split("^")[1]
                ack = f"MSH|^~\\&|PEER|X|{msh[2]}|{msh[3]}|20240101||ACK^{event}^ACK|A{len(self.received)}|P|2.6\r"
                ack += f"MSA|{self.code}|{msh[9]}|{'ok' if self.code == 'AA' else 'unknown patient'}\r"
                writer.write(b"\x0b" + ack.encode() + b"\x1c\x0d")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def control_ids(self) -> list[str]:
        return [m.split("\r")[0].split("|")[9] for m in self.received]


async def until(condition: Callable[[], Any], timeout: float = 60) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _value(condition()):
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def _value(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


def peers_setting(ris: int, lab: int, down: int, refusing: int, own: int) -> dict[str, dict[str, Any]]:
    base = {"host": "127.0.0.1", "sending_application": "FHIR-SERVER", "sending_facility": "CHU-X", "timeout": 5}
    return {
        "RIS": {**base, "port": ris, "message": "MDM", "receiving_application": "RIS-Y"},
        "LAB": {**base, "port": lab, "message": "ORU", "receiving_application": "SIL-Y"},
        "LATE": {**base, "port": down, "message": "MDM", "receiving_application": "LATE"},
        "REFUSING": {**base, "port": refusing, "message": "MDM"},
        "SELF": {**base, "port": own, "message": "MDM", "receiving_application": "PFI"},
    }


@pytest.fixture(scope="module")
async def setup(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    ports = {name: free_port() for name in ("ris", "lab", "down", "refusing", "own")}
    ris, lab, refusing = Peer(ports["ris"]), Peer(ports["lab"]), Peer(ports["refusing"], code="AE")
    for peer in (ris, lab, refusing):
        await peer.start()
    settings = {
        "hl7_peers": peers_setting(ports["ris"], ports["lab"], ports["down"], ports["refusing"], ports["own"]),
        "hl7_retry_base_seconds": 0.2,
        "hl7_retry_max_seconds": 1.0,
        "database": "hl7out" + ports["ris"].__str__(),
    }
    data_dir = tmp_path_factory.mktemp("hl7out")
    try:
        yield {
            "uri": ferretdb_uri,
            "data_dir": data_dir,
            "settings": settings,
            "ports": ports,
            "ris": ris,
            "lab": lab,
            "refusing": refusing,
        }
    finally:
        for peer in (ris, lab, refusing):
            await peer.stop()


def server(setup: dict[str, Any]) -> Any:
    return hl7_server(setup["uri"], setup["data_dir"], mllp_port=setup["ports"]["own"], **setup["settings"])


async def make_document(
    client: httpx.AsyncClient, tag: str, *, data: bytes = PDF, ctype: str = "application/pdf"
) -> dict:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"urn:oid:{IPP_OID}", "value": f"IPP-{tag}", "use": "usual",
             "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]}},
            {"system": INS_TEST, "value": "279035121518989", "use": "official",
             "type": {"coding": [{"system": FR_0203, "code": "INS-NIR-TEST"}]}},
        ],
        "name": [{"use": "official", "family": "ENVOI", "given": ["ÉLODIE"]}],
        "gender": "female",
        "birthDate": "1979-03-28",
    }  # fmt: skip
    r = await client.post("Patient", json=patient)
    assert r.status_code == 201, r.text
    patient_id = r.json()["id"]
    r = await client.post(
        "Binary", json={"resourceType": "Binary", "contentType": ctype, "data": base64.b64encode(data).decode()}
    )
    assert r.status_code == 201, r.text
    binary_id = r.json()["id"]
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:oid:1.2.250.1.999.9.{abs(hash(tag)) % 100000}",
        },
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "CR de consultation"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2024-02-01T10:00:00+01:00",
        "content": [{"attachment": {"contentType": ctype, "url": f"Binary/{binary_id}"}}],
    }
    r = await client.post("DocumentReference", json=doc)
    assert r.status_code == 201, r.text
    return r.json()


def params(body: dict) -> dict[str, Any]:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in body["parameter"]}


async def test_mdm_to_a_peer_and_the_message_it_gets(setup) -> None:
    async with server(setup) as (_app, client, _port):
        doc = await make_document(client, "MDM")
        r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "RIS"})
        assert r.status_code == 200, r.text
        result = params(r.json())
        assert result["status"] == "sent" and result["ack"] == "AA" and result["event"] == "MDM^T02^MDM_T02"
        [text] = [m for m in setup["ris"].received if result["messageControlId"] in m]
        msg = Message.parse(text)
        assert msg.message_type == "MDM" and msg.trigger == "T02" and msg.msh.text(12) == "2.6"
        assert msg.msh.comp(5) == "RIS-Y" and msg.msh.comp(3) == "FHIR-SERVER"
        assert msg.msh.comp(21) == "2.1"  # the CI-SIS profile
        pid = msg.first("PID")
        assert f"IPP-MDM^^^&{IPP_OID}&ISO^PI" in pid.field(3)
        assert "279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS" in pid.field(3)
        assert pid.comp(5, 2) == "ÉLODIE" and pid.text(7) == "19790328" and pid.text(8) == "F"
        txa = msg.first("TXA")
        assert txa.text(2) == "11488-4" and txa.text(12) == doc["masterIdentifier"]["value"][8:]
        [obx] = msg.all("OBX")
        assert obx.text(2) == "ED" and obx.text(11) == "F"
        assert base64.b64decode(obx.comps(5, 5)[4]) == PDF
        assert msg.first("ORC").text(1) == "NW"
        # The delivery is audited as an HL7 export.
        events = await search(client, "AuditEvent", type="http://dicom.nema.org/resources/ontology/DCM|110106")
        assert any(
            e["outcome"] == "0" and e["entity"][1]["what"]["reference"] == f"DocumentReference/{doc['id']}"
            for e in events
        )


async def test_diagnostic_report_as_oru_and_errors(setup) -> None:
    async with server(setup) as (_app, client, _port):
        doc = await make_document(client, "ORU")
        report = {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "11502-2", "display": "CR de biologie"}]},
            "subject": doc["subject"],
            "effectiveDateTime": "2024-02-01T08:00:00+01:00",
            "issued": "2024-02-01T10:00:00+01:00",
            "presentedForm": [doc["content"][0]["attachment"]],
        }
        r = await client.post("DiagnosticReport", json=report)
        report_id = r.json()["id"]
        r = await client.post(f"DiagnosticReport/{report_id}/$send-hl7", params={"peer": "LAB"})
        assert r.status_code == 200, r.text
        result = params(r.json())
        assert result["status"] == "sent" and result["event"] == "ORU^R01^ORU_R01"
        msg = Message.parse(next(m for m in setup["lab"].received if result["messageControlId"] in m))
        assert msg.msh.text(12) == "2.5"
        assert [s.name for s in msg.segments] == ["MSH", "PID", "PV1", "ORC", "OBR", "OBX"]
        assert msg.first("OBR").comp(4) == "11502-2" and msg.first("OBR").text(25) == "F"
        assert base64.b64decode(msg.first("OBX").comps(5, 5)[4]) == PDF

        assert (
            await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "NOPE"})
        ).status_code == 400
        assert (await client.post(f"Patient/{doc['subject']['reference'][8:]}/$send-hl7")).status_code == 404
        assert (await client.post("DocumentReference/unknown-doc/$send-hl7", params={"peer": "RIS"})).status_code == 404
        r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7")  # several peers: `peer` is required
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


async def test_refusing_peer_is_recorded_and_not_retried(setup) -> None:
    async with server(setup) as (app, client, _port):
        doc = await make_document(client, "AE")
        r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "REFUSING"})
        assert r.status_code == 200, r.text
        result = params(r.json())
        assert result["status"] == "rejected" and result["ack"] == "AE" and result["ackText"] == "unknown patient"
        # Let the outbox run a few rounds: the refused message is never sent again.
        for _ in range(3):
            app.state.hl7_outbox.wakeup.set()
            await asyncio.sleep(0.3)
        assert setup["refusing"].control_ids().count(result["messageControlId"]) == 1


async def test_peer_down_then_up_retries_with_back_off(setup) -> None:
    async with server(setup) as (app, client, _port):
        doc = await make_document(client, "LATE")
        r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "LATE", "_wait": "1"})
        assert r.status_code == 202, r.text
        result = params(r.json())
        assert result["status"] == "queued" and "lastError" in result  # connection refused, will retry
        outbox = app.state.hl7_outbox
        message_id = f"LATE|{result['messageControlId']}"
        await until(lambda: _attempts(outbox, message_id, 3))
        late = await Peer(setup["ports"]["down"]).start()
        try:
            final = await outbox.wait_final(message_id, 60)
            assert final["state"] == "sent" and final["attempts"] >= 4
            assert late.control_ids() == [result["messageControlId"]]
        finally:
            await late.stop()


async def _attempts(outbox: Any, message_id: str, n: int) -> bool:
    doc = await outbox.get(message_id)
    return doc is not None and doc.get("attempts", 0) >= n


async def test_queue_survives_a_restart_and_nothing_is_sent_twice(setup) -> None:
    ris = setup["ris"]
    async with server(setup) as (app, client, _port):
        doc = await make_document(client, "RESTART")
        r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "RIS"})
        sent_id = params(r.json())["messageControlId"]
        assert params(r.json())["status"] == "sent"
        r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "LATE", "_wait": "0"})
        queued_id = params(r.json())["messageControlId"]
    # The server is down; the late peer comes up; a new server instance delivers what was queued.
    late = await Peer(setup["ports"]["down"]).start()
    try:
        async with server(setup) as (app, client, _port):
            outbox = app.state.hl7_outbox
            final = await outbox.wait_final(f"LATE|{queued_id}", 60)
            assert final["state"] == "sent"
            r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "RIS"})
            second = params(r.json())["messageControlId"]
            assert params(r.json())["status"] == "sent"
        assert late.control_ids() == [queued_id]
        assert ris.control_ids().count(sent_id) == 1 and ris.control_ids().count(second) == 1
    finally:
        await late.stop()


async def test_round_trip_through_our_own_listener_and_business_acks(setup) -> None:
    """Our MDM^T02 is a CI-SIS message our own MLLP listener files; a ZAM naming its MSH-10 is recorded
    on the outbound message."""
    async with server(setup) as (app, client, port):
        cda = (CDA_N1 / "transmission_initiale_cr_imagerie.xml").read_bytes()
        doc = await make_document(client, "SELF", data=cda, ctype="text/xml")
        r = await client.post(f"DocumentReference/{doc['id']}/$send-hl7", params={"peer": "SELF"})
        result = params(r.json())
        assert result["status"] == "sent" and result["ack"] == "AA", result
        filed = await one(
            client, "DocumentReference", identifier=f"urn:ietf:rfc:3986|{doc['masterIdentifier']['value']}"
        )
        assert filed["id"] == doc["id"] and filed["meta"]["versionId"] == "2"  # the same document, refiled
        binary = filed["content"][0]["attachment"]["url"]
        assert (await client.get(binary, headers={"Accept": "*/*"})).content == cda

        zam = (
            "MSH|^~\\&|PFI-X|Organisation-X|FHIR-SERVER|CHU-X|20240101||ZAM^Z02^ZAM_Z01|Z-1|P|2.6"
            "|||||FRA|UNICODE UTF-8\r"
            "EVN||20240101\r"
            f"OBX|1|CWE|ACK_RECEPTION_MSS^Accusé de réception MSSanté^AckMetierZAM|{result['messageControlId']}"
            "|Y^^expandedYes-NoIndicator||||||F\r"
            "OBX|2|XTN|DESTINATAIRE_MSS^Destinataire MSSanté^AckMetierZAM|801234567897"
            "|^^X.400^adam.hoda@test-ci-sis.mssante.fr||||||F\r"
        )
        ack = await send_one(port, zam.encode())
        assert ack.code == "AA" and "recorded" in ack.detail and "not sent by this server" not in ack.detail
        sent = await app.state.hl7_outbox.get(f"SELF|{result['messageControlId']}")
        [business] = sent["business_acks"]
        assert business["kind"] == "mssante-receipt" and business["accepted"] is True
        assert business["people"] == [{"id": "801234567897", "email": "adam.hoda@test-ci-sis.mssante.fr"}]
