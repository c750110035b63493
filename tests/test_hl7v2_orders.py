"""ORM^O01, OMG^O19 and OMI^O23 over MLLP → ServiceRequest (order control NW, XO, SC, CA), and a result
for the order linked to it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from tests.test_hl7v2_support import IPP_OID, hl7_server, one, send, send_one

PID = f"PID|||IPP-ORD^^^CHU-X&{IPP_OID}&ISO^PI||COMMANDE^PAUL^PAUL^^^^L||19700101|M"
PLACER_SYS = "urn:fhir-server:hl7v2:assigning-authority:DPI"
FILLER_SYS = "urn:fhir-server:hl7v2:assigning-authority:RIS"


@pytest.fixture(scope="module")
async def mllp(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple]:
    async with hl7_server(ferretdb_uri, tmp_path_factory.mktemp("hl7orders")) as (_app, client, port):
        yield client, port


def message(kind: str, control_id: str, control: str, *segments: str, placer: str = "P-1", filler: str = "") -> bytes:
    trigger = {"ORM": "O01", "OMG": "O19", "OMI": "O23"}[kind]
    version = "2.3.1" if kind == "ORM" else "2.5.1"
    lines = [
        f"MSH|^~\\&|DPI|CHU-X|RIS|CHU-X|20240101100000||{kind}^{trigger}^{kind}_{trigger}|{control_id}|P|{version}",
        PID,
        f"PV1|1|O|||||||||||||||||V-ORD^^^CHU-X&{IPP_OID}&ISO^VN",
        f"ORC|{control}|{placer}^DPI|{filler}{'^RIS' if filler else ''}||{'CM' if control == 'SC' else ''}||||"
        "20240101095500|||801234567897^MARTIN^ALICE^^^DR^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS",
        f"OBR|1|{placer}^DPI|{filler}{'^RIS' if filler else ''}|24727-0^CT Head W contrast IV^LN",
        *segments,
    ]
    return ("\r".join(lines) + "\r").encode()


async def test_orm_life_cycle_new_change_status_cancel(mllp) -> None:
    client, port = mllp
    acks = await send(
        port,
        message("ORM", "O-1", "NW"),
        message("ORM", "O-2", "XO", "TQ1|||||||20240105080000||S", filler="F-1"),
        message("ORM", "O-3", "SC", filler="F-1"),
    )
    assert [a.code for a in acks] == ["AA", "AA", "AA"], acks
    assert acks[0].seg("MSH")[8].startswith("ACK^O01")
    order = await one(client, "ServiceRequest", identifier=f"{PLACER_SYS}|P-1")
    assert order["status"] == "completed"  # SC with ORC-5 CM
    assert order["intent"] == "order" and order["priority"] == "stat"
    assert order["occurrenceDateTime"].startswith("2024-01-05T08:00:00")
    assert order["code"]["coding"][0] == {
        "code": "24727-0",
        "system": "http://loinc.org",
        "display": "CT Head W contrast IV",
    }
    assert order["requester"]["identifier"]["value"] == "801234567897"
    assert {i["type"]["coding"][0]["code"] for i in order["identifier"]} == {"PLAC", "FILL"}
    assert order["meta"]["versionId"] == "3"
    assert (await send_one(port, message("ORM", "O-4", "CA", filler="F-1"))).code == "AA"
    assert (await client.get(f"ServiceRequest/{order['id']}")).json()["status"] == "revoked"


async def test_omg_and_omi_with_the_imaging_study(mllp) -> None:
    client, port = mllp
    ack = await send_one(port, message("OMG", "G-1", "NW", placer="P-G"))
    assert ack.code == "AA" and ack.seg("MSH")[8].startswith("ACK^O19")
    assert (await one(client, "ServiceRequest", identifier=f"{PLACER_SYS}|P-G"))["status"] == "active"

    ipc = "IPC|ACN900^RIS|RP900|1.2.250.1.999.5.900|SPS900|CT"
    ack = await send_one(
        port, message("OMI", "I-1", "NW", "TQ1|||||||20240110083000||R", ipc, placer="P-I", filler="F-I")
    )
    assert ack.code == "AA" and ack.seg("MSH")[8].startswith("ACK^O23")
    order = await one(client, "ServiceRequest", identifier="urn:dicom:uid|urn:oid:1.2.250.1.999.5.900")
    accession = next(i for i in order["identifier"] if i["type"]["coding"][0]["code"] == "ACSN")
    assert accession["value"] == "ACN900"
    assert order["orderDetail"][0]["coding"][0]["code"] == "CT" and order["priority"] == "routine"
    # The study is withdrawn (DRIM-M exam W): the order is found by its study and revoked.
    cancel = message("OMI", "I-2", "CA", ipc, "OBX|1|ST|Modification Examen Imagerie||||||||||", placer="", filler="")
    assert (await send_one(port, cancel)).code == "AA"
    assert (await client.get(f"ServiceRequest/{order['id']}")).json()["status"] == "revoked"

    # A result for the order is linked to it, not to a new ServiceRequest.
    doc = base64.b64encode(b"Scanner normal.").decode()
    oru = (
        "MSH|^~\\&|RIS|CHU-X|PFI|CHU-X|20240110120000||ORU^R01^ORU_R01|I-3|P|2.5\r"
        f"{PID}\r"
        "ORC|SC|P-I^DPI|F-I^RIS\r"
        "OBR|1|P-I^DPI|F-I^RIS|18748-4^CR d'imagerie médicale^LN|||20240110090000||||||||||ACN900||||||||F\r"
        f"OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^text^plain^Base64^{doc}||||||F\r"
    )
    assert (await send_one(port, oru.encode())).code == "AA"
    report = await one(client, "DiagnosticReport", identifier=f"{FILLER_SYS}|F-I")
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
    assert report["effectiveDateTime"].startswith("2024-01-10T09:00:00")


async def test_order_errors(mllp) -> None:
    _client, port = mllp
    ack = await send_one(port, message("ORM", "E-1", "ZZ"))
    assert ack.code == "AE" and ack.seg("ERR")[3].startswith("201^")
    no_orc = b"MSH|^~\\&|DPI|CHU-X|RIS|CHU-X|20240101100000||ORM^O01|E-2|P|2.3.1\r" + PID.encode() + b"\r"
    ack = await send_one(port, no_orc)
    assert ack.code == "AR" and ack.seg("ERR")[3].startswith("101^")
    ack = await send_one(port, message("OMG", "E-3", "NW").replace(b"OMG^O19^OMG_O19", b"OMG^O21^OMG_O19"))
    assert ack.code == "AE" and ack.seg("ERR")[3].startswith("201^")
