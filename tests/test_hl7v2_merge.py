"""ADT^A40 over MLLP: the merged Patient becomes inactive, `replaced-by` the survivor, and its
Encounters, DocumentReferences... follow the survivor, each through a new version in its history."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.test_hl7v2_support import IPP_OID, adt, hl7_server, one, search, send, send_one


@pytest.fixture(scope="module")
async def mllp(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple]:
    async with hl7_server(ferretdb_uri, tmp_path_factory.mktemp("hl7merge")) as (_app, client, port):
        yield client, port


def a40(control_id: str, survivor_ipp: str, merged_ipp: str, family: str = "FUSION") -> str:
    msg = adt("A40", control_id, ipp=survivor_ipp, family=family, structure="ADT_A39")
    return msg + f"MRG|{merged_ipp}^^^CHU-X&{IPP_OID}&ISO^PI\r"


async def test_merge_repoints_references_and_links_patients(mllp) -> None:
    client, port = mllp
    acks = await send(
        port,
        adt("A01", "G-1", ipp="OLD-1", family="FUSION", visit="VG-1", movement="G1").encode(),
        adt("A28", "G-2", ipp="NEW-1", family="FUSION").encode(),
    )
    assert [a.code for a in acks] == ["AA", "AA"]
    old = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|OLD-1")
    new = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|NEW-1")
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{old['id']}"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "Ym9uam91cg=="}}],
    }
    r = await client.post("DocumentReference", json=doc)
    assert r.status_code == 201, r.text
    doc_id = r.json()["id"]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "poids"},
        "subject": {"reference": f"Patient/{old['id']}"},
        "valueQuantity": {"value": 72, "unit": "kg"},
    }
    r = await client.post("Observation", json=observation)
    obs_id = r.json()["id"]

    ack = await send_one(port, a40("G-3", "NEW-1", "OLD-1").encode())
    assert ack.code == "AA", ack
    assert ack.seg("MSH")[8].startswith("ACK^A40")

    merged = (await client.get(f"Patient/{old['id']}")).json()
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{new['id']}"}, "type": "replaced-by"}]
    survivor = (await client.get(f"Patient/{new['id']}")).json()
    assert {"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"} in survivor["link"]
    old_ipp = next(i for i in survivor["identifier"] if i["value"] == "OLD-1")
    assert old_ipp["use"] == "old"

    encounter = await one(client, "Encounter", identifier=f"urn:oid:{IPP_OID}|VG-1")
    assert encounter["subject"]["reference"] == f"Patient/{new['id']}"
    history = (await client.get(f"Encounter/{encounter['id']}/_history")).json()["entry"]
    assert {e["resource"]["subject"]["reference"] for e in history} == {
        f"Patient/{old['id']}",
        f"Patient/{new['id']}",
    }
    moved = (await client.get(f"DocumentReference/{doc_id}")).json()
    assert moved["subject"]["reference"] == f"Patient/{new['id']}" and moved["meta"]["versionId"] == "2"
    assert (await client.get(f"Observation/{obs_id}")).json()["subject"]["reference"] == f"Patient/{new['id']}"
    assert await search(client, "Encounter", subject=f"Patient/{old['id']}") == []

    # A later message with the old IPP is about the survivor.
    ack = await send_one(port, adt("A08", "G-4", ipp="OLD-1", family="FUSION", visit="VG-1").encode())
    assert ack.code == "AA" and f"Patient/{new['id']}" in ack.detail

    # Re-sending the merge changes nothing (same control id: same ACK; new control id: idempotent).
    again = await send_one(port, a40("G-5", "NEW-1", "OLD-1").encode())
    assert again.code == "AA"
    assert (await client.get(f"DocumentReference/{doc_id}")).json()["meta"]["versionId"] == "2"


async def test_merge_of_an_unknown_patient_is_refused(mllp) -> None:
    _client, port = mllp
    assert (await send_one(port, adt("A28", "H-1", ipp="KEEP-1").encode())).code == "AA"
    ack = await send_one(port, a40("H-2", "KEEP-1", "NOBODY-1").encode())
    assert ack.code == "AE" and ack.seg("ERR")[3].startswith("204^")
    no_mrg = adt("A40", "H-3", ipp="KEEP-1", structure="ADT_A39")
    ack = await send_one(port, no_mrg.encode())
    assert ack.code == "AR" and ack.seg("ERR")[3].startswith("100^")
