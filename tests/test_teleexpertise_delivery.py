"""The compte-rendu delivered to the requesting structure (spec §7.3, §8 test 11 second half).

A real dossier goes from the requérant (structure S1) to communauté A (structure S2) and is answered with
`$respond`; S1's `tlx-ext-hl7-peer` setting names a FHIR_HL7_PEERS entry served by a real asyncio MLLP
peer. The peer receives an MDM^T02 (or an ORU^R01, per the peer's configuration) whose PID-3 is the
patient's IPP and whose OBX-5 decodes to the CR PDF (read back with a PDF library) or to a CDA R2 (N1 or
TLM-CR) that passes the CDA XSD and the CI-SIS schematrons; its ACK AA is recorded on the outbox entry and
in the audit trail. A wrong setting never fails `$respond`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_server.teleexpertise.delivery import EXT_HL7_PEER
from tests.cda_validation import failed_asserts, volet_schematron, xsd_errors
from tests.conftest import make_settings
from tests.test_compte_rendu_pdf import pdf_text
from tests.test_hl7v2_outbound import Peer, until
from tests.test_hl7v2_support import free_port
from tests.test_teleexpertise_world import JSON, World, build_world

IPP_SYSTEM = "urn:oid:1.2.250.1.999.34.1"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


@pytest.fixture(scope="module")
async def peer() -> AsyncIterator[Peer]:
    eai = await Peer(free_port()).start()
    yield eai
    await eai.stop()


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, peer: Peer) -> Any:
    base = {"host": "127.0.0.1", "port": peer.port, "timeout": 5, "receiving_application": "EAI-S1"}
    peers = {"EAI-MDM": {**base, "message": "MDM"}, "EAI-ORU": {**base, "message": "ORU"}}
    return make_settings(
        ferretdb_uri,
        tmp_path_factory.mktemp("delivery"),
        hl7_peers=peers,
        hl7_retry_base_seconds=0.2,
        hl7_retry_max_seconds=1.0,
    )


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings: Any) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


async def configure(world: World, client: httpx.AsyncClient, peer: str, fmt: str) -> None:
    """What an administrator does: the delivery setting on the requérant's structure (S1)."""
    s1 = (await client.get(world.orgs["S1"])).json()
    others = [e for e in s1.get("extension") or [] if e["url"] != EXT_HL7_PEER]
    setting = {"url": EXT_HL7_PEER, "extension": [{"url": "peer", "valueString": peer}]}
    setting["extension"].append({"url": "format", "valueCode": fmt})
    r = await client.put(world.orgs["S1"], json={**s1, "extension": [*others, setting]}, headers=JSON)
    assert r.status_code == 200, r.text


async def answered_dossier(world: World, family: str, ipp: str) -> dict[str, Any]:
    """A dossier of req (C1, S1) about a patient with an IPP, answered by a1 of communauté A (S2)."""
    pid = await world.patient(
        "req",
        name=[{"use": "official", "family": family, "given": ["Jeanne"]}],  # the birth name
        birthDate="1961-07-14",
        gender="female",
        identifier=[
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "PI"}]},
                "system": IPP_SYSTEM,
                "value": ipp,
                "assigner": {"display": "CH Requérant"},
            }
        ],
    )
    _, tasks = await world.sent_dossier(world.orgs["A"], patient=pid)
    task_id = tasks[world.orgs["A"]]
    assert (await world.op("a1", f"Task/{task_id}/$accept")).status_code == 200
    r = await world.op("a1", f"Task/{task_id}/$respond", conclusion="Pas de contre-indication.", billingCode="TE2")
    assert r.status_code == 200, r.text
    return r.json()


def document_of(task: dict[str, Any]) -> str:
    return next(o["valueReference"]["reference"] for o in task["output"] if o["type"]["text"] == "document")


def segments(message: str, name: str) -> list[list[str]]:
    return [s.split("|") for s in message.split("\r") if s.startswith(name + "|")]


async def received_for(peer: Peer, ipp: str) -> str:
    await until(lambda: any(ipp in m for m in peer.received), timeout=30)
    return next(m for m in peer.received if ipp in m)


async def outbox_entry(app: Any, document: str) -> dict[str, Any]:
    outbox = app.state.hl7_outbox
    entry = await outbox.collection.find_one({"resource": document})
    assert entry is not None, "nothing was queued for the compte-rendu"
    final = await outbox.wait_final(entry["_id"], 30)
    assert final is not None
    return final


async def test_mdm_with_the_pdf_reaches_the_requesting_structure(
    world: World, client: httpx.AsyncClient, peer: Peer, app: Any
) -> None:
    await configure(world, client, "EAI-MDM", "pdf")
    task = await answered_dossier(world, "Lefèvre-Aubin", "IPP-PDF-4242")
    document = document_of(task)
    message = await received_for(peer, "IPP-PDF-4242")

    msh = segments(message, "MSH")[0]
    assert msh[8].startswith("MDM^T02") and msh[4] == "EAI-S1"
    pid3 = segments(message, "PID")[0][3].split("~")
    assert any(rep.split("^")[0] == "IPP-PDF-4242" and rep.endswith("^PI") for rep in pid3), pid3
    obx = segments(message, "OBX")
    assert len(obx) == 1 and obx[0][2] == "ED"
    kind, subtype, encoding, data = obx[0][5].split("^")[1:5]
    assert (kind, subtype, encoding) == ("application", "PDF", "Base64")
    pdf = base64.b64decode(data)
    attachment = (await client.get(document)).json()["content"][0]["attachment"]
    assert base64.b64encode(hashlib.sha1(pdf).digest()).decode() == attachment["hash"]  # the stored CR itself
    text = pdf_text(pdf)
    assert "LEFÈVRE-AUBIN" in text.upper() and "Pas de contre-indication." in text

    # The peer's ACK AA is kept on the outbox entry and audited as an HL7 export of the document.
    entry = await outbox_entry(app, document)
    assert entry["state"] == "sent" and entry["ack"]["code"] == "AA" and entry["peer"] == "EAI-MDM"
    events = (await client.get("AuditEvent", params={"type": "110106", "entity": document})).json()
    assert [e["resource"]["outcome"] for e in events.get("entry", [])] == ["0"]


async def test_oru_per_peer_configuration(world: World, client: httpx.AsyncClient, peer: Peer, app: Any) -> None:
    await configure(world, client, "EAI-ORU", "pdf")
    task = await answered_dossier(world, "Oru", "IPP-ORU-77")
    message = await received_for(peer, "IPP-ORU-77")
    assert segments(message, "MSH")[0][8].startswith("ORU^R01")
    assert segments(message, "PID")[0][3].split("^")[0] == "IPP-ORU-77"
    pdf = base64.b64decode(segments(message, "OBX")[0][5].split("^")[4])
    assert pdf.startswith(b"%PDF") and "ORU" in pdf_text(pdf).upper()
    assert (await outbox_entry(app, document_of(task)))["ack"]["code"] == "AA"


@pytest.mark.parametrize("fmt", ["cda-n1", "tlm-cr"])
async def test_cda_per_structure_setting(
    world: World, client: httpx.AsyncClient, peer: Peer, app: Any, fmt: str
) -> None:
    await configure(world, client, "EAI-MDM", fmt)
    ipp = f"IPP-{fmt.upper()}-9"
    task = await answered_dossier(world, "Cdaux", ipp)
    message = await received_for(peer, ipp)
    kind, subtype, encoding, data = segments(message, "OBX")[0][5].split("^")[1:5]
    assert (kind, subtype, encoding) == ("text", "XML", "Base64")
    xml = base64.b64decode(data)
    assert xsd_errors(xml) == []
    assert failed_asserts(xml) == []  # structuration minimale
    if fmt == "tlm-cr":
        assert failed_asserts(xml, volet_schematron("TLM-CR_2022.01")) == []
        assert b'code="85208-7"' in xml and b'code="TE2"' in xml
    assert ipp.encode() in xml and b"%PDF" in base64.b64decode(xml.split(b'representation="B64">')[1].split(b"<")[0])
    assert (await outbox_entry(app, document_of(task)))["ack"]["code"] == "AA"


async def test_a_wrong_setting_never_fails_the_answer(world: World, client: httpx.AsyncClient, app: Any) -> None:
    await configure(world, client, "NO-SUCH-PEER", "pdf")
    task = await answered_dossier(world, "Sansenvoi", "IPP-NONE-1")
    assert task["status"] == "completed"
    assert await app.state.hl7_outbox.collection.find_one({"resource": document_of(task)}) is None
