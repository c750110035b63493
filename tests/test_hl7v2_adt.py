"""HL7 v2 ADT (IHE PAM France) over a real MLLP socket → Patient / Encounter through the FHIR API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from tests.conftest import SHARED, TEST_BASE, make_settings, token_for

PAM = SHARED / "fixtures" / "hl7v2" / "pam-fr"
ADMISSION = PAM / "consentement-dmp" / "ConsentementConsultation_NonOppositionAlimentation.er7"
IPP_SYSTEM = "urn:fhir-server:hl7v2:assigning-authority:CHU-X"
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
async def mllp(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple]:
    port = free_port()
    settings = make_settings(ferretdb_uri, tmp_path_factory.mktemp("hl7"), mllp_port=port)
    app = create_app(settings)
    async with LifespanManager(app):
        headers = {"Authorization": f"Bearer {token_for(settings)}"}
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/", headers=headers) as c:
            yield c, port


async def send(port: int, *messages: bytes) -> list[list[list[str]]]:
    """Send MLLP-framed messages on one connection; the ACKs, as segments of fields."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acks = []
    try:
        for message in messages:
            writer.write(b"\x0b" + message + b"\x1c\x0d")
            await writer.drain()
            frame = await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), 30)
            assert frame.startswith(b"\x0b")
            text = frame[1:-2].decode("utf-8")
            acks.append([seg.split("|") for seg in text.split("\r") if seg])
    finally:
        writer.close()
        await writer.wait_closed()
    return acks


def segment(ack: list[list[str]], name: str) -> list[str]:
    return next(s for s in ack if s[0] == name)


def with_control_id(raw: bytes, control_id: str, event: str | None = None) -> bytes:
    lines = raw.split(b"\n")
    fields = lines[0].split(b"|")
    fields[9] = control_id.encode()
    if event:
        fields[8] = f"ADT^{event}^ADT_A01".encode()
    lines[0] = b"|".join(fields)
    return b"\n".join(lines)


async def test_admission_creates_patient_and_encounter(mllp) -> None:
    client, port = mllp
    raw = ADMISSION.read_bytes()
    [ack] = await send(port, raw)
    msa = segment(ack, "MSA")
    assert msa[1] == "AA" and msa[2] == "3975"
    assert segment(ack, "MSH")[8].startswith("ACK^A01")

    r = await client.get("Patient", params={"identifier": f"{IPP_SYSTEM}|000003"})
    assert r.status_code == 200
    entries = r.json().get("entry", [])
    assert len(entries) == 1
    patient = entries[0]["resource"]
    assert patient["meta"]["versionId"] == "1"
    idents = {(i["system"], i["value"]) for i in patient["identifier"]}
    assert (IPP_SYSTEM, "000003") in idents and (INS_SYSTEM, "279035121518989") in idents
    ins = next(i for i in patient["identifier"] if i["system"] == INS_SYSTEM)
    assert ins["type"]["coding"][0]["code"] == "INS-NIR-TEST"
    assert patient["name"][0] == {"use": "official", "family": "PAT-TROIS", "given": ["DOMINIQUE"]}
    assert patient["birthDate"] == "1979-03-28" and patient["gender"] == "female"
    exts = {e["url"]: e for e in patient["extension"]}
    assert exts["urn:fhir-server:hl7v2:identity-reliability"]["valueCode"] == "VALI"

    r = await client.get("Patient", params={"identifier": f"{INS_SYSTEM}|279035121518989"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [patient["id"]]

    r = await client.get("Encounter", params={"subject": f"Patient/{patient['id']}"})
    encounters = [e["resource"] for e in r.json().get("entry", [])]
    assert len(encounters) == 1
    assert encounters[0]["class"]["code"] == "IMP"
    assert encounters[0]["identifier"][0]["value"] == "000897406"
    assert encounters[0]["period"]["start"].startswith("2024-03-06T11:00:00")

    # The same message again (same MSH-3 and MSH-10): the same ACK, nothing processed.
    [again] = await send(port, raw)
    assert again == ack
    r = await client.get(f"Patient/{patient['id']}")
    assert r.json()["meta"]["versionId"] == "1"


async def test_other_admission_updates_same_patient(mllp) -> None:
    client, port = mllp
    raw = (PAM / "sgl" / "admission.er7").read_bytes()
    ack, ack_a08 = await send(port, with_control_id(raw, "SGL-1"), with_control_id(raw, "SGL-2", "A08"))
    assert segment(ack, "MSA")[1:3] == ["AA", "SGL-1"]
    assert segment(ack_a08, "MSA")[1:3] == ["AA", "SGL-2"]
    r = await client.get("Patient", params={"identifier": f"{IPP_SYSTEM}|000003"})
    entries = r.json()["entry"]
    assert len(entries) == 1
    assert int(entries[0]["resource"]["meta"]["versionId"]) >= 2


async def test_unsupported_event_and_missing_pid3(mllp) -> None:
    _client, port = mllp
    sortie = (PAM / "sgl" / "sortie.er7").read_bytes()  # ADT^A03: not handled yet
    raw = ADMISSION.read_bytes()
    lines = raw.split(b"\n")
    no_pid3 = b"\n".join(
        b"|".join([*line.split(b"|")[:3], b"", *line.split(b"|")[4:]]) if line.startswith(b"PID|") else line
        for line in lines
    )
    ack_a03, ack_no_pid3 = await send(port, with_control_id(sortie, "S-1"), with_control_id(no_pid3, "NOPID3"))
    msa = segment(ack_a03, "MSA")
    assert msa[1:3] == ["AE", "S-1"]
    err = segment(ack_a03, "ERR")
    assert err[3].startswith("201^") and "unsupported event" in err[8]
    msa = segment(ack_no_pid3, "MSA")
    assert msa[1:3] == ["AR", "NOPID3"]
    assert segment(ack_no_pid3, "ERR")[3].startswith("101^")
