"""Patient/$everything: the patient's compartment plus what it references, with _since, _type, paging."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx

from tests.helpers import patient, post


async def _all(client: httpx.AsyncClient, url: str, params: dict) -> list[dict]:
    entries: list[dict] = []
    r = await client.get(url, params=params)
    while True:
        assert r.status_code == 200, r.text
        entries += r.json().get("entry", [])
        nxt = [link["url"] for link in r.json()["link"] if link["relation"] == "next"]
        if not nxt:
            return entries
        r = await client.get(nxt[0])


async def test_everything(client: httpx.AsyncClient) -> None:
    org = (await post(client, {"resourceType": "Organization", "name": "EHPAD Les Tilleuls"})).json()["id"]
    doc = (await post(client, {"resourceType": "Practitioner", "name": [{"family": "Martin"}]})).json()["id"]
    pid = (await post(client, patient(managingOrganization={"reference": f"Organization/{org}"}))).json()["id"]
    other = (await post(client, patient(family="Autre"))).json()["id"]
    enc = (
        await post(
            client,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
    ).json()["id"]
    await asyncio.sleep(0.01)
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.01)
    cond = (
        await post(
            client,
            {
                "resourceType": "Condition",
                "subject": {"reference": f"Patient/{pid}"},
                "recorder": {"reference": f"Practitioner/{doc}"},
            },
        )
    ).json()["id"]
    await post(client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{other}"}})

    entries = await _all(client, f"Patient/{pid}/$everything", {"_count": "2"})
    got = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries}
    assert {
        ("Patient", pid),
        ("Encounter", enc),
        ("Condition", cond),
        ("Organization", org),
        ("Practitioner", doc),
    } <= got
    assert ("Patient", other) not in got
    assert entries[0]["resource"]["id"] == pid
    matches = [e for e in entries if e["search"]["mode"] == "match"]
    clinical = [e for e in matches if e["resource"]["resourceType"] != "AuditEvent"]
    assert len(clinical) == 3  # the patient, the encounter, its condition
    # The accesses to the record are part of it too (AuditEvent is in the Patient compartment).
    assert any(e["resource"]["resourceType"] == "AuditEvent" for e in matches)

    recent = await _all(client, f"Patient/{pid}/$everything", {"_since": since, "_type": "Patient,Condition,Encounter"})
    assert {e["resource"]["id"] for e in recent if e["search"]["mode"] == "match"} == {cond}

    only = await _all(client, f"Patient/{pid}/$everything", {"_type": "Encounter"})
    assert [e["resource"]["id"] for e in only if e["search"]["mode"] == "match"] == [enc]

    assert (await client.get("Patient/nobody/$everything")).status_code == 404
