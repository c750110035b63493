"""Conditional create, update, delete and patch, including the race-free rule of conditional create."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import FHIR_JSON, outcome_of, patient, post

INS = "urn:oid:1.2.250.1.213.1.4.8"


def with_ins(value: str, **extra: object) -> dict:
    return patient(identifier=[{"system": INS, "value": value}], **extra)


async def _count(client: httpx.AsyncClient, value: str) -> int:
    r = await client.get("Patient", params={"identifier": f"{INS}|{value}"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def test_conditional_create(client: httpx.AsyncClient) -> None:
    cond = {"If-None-Exist": f"identifier={INS}|1700101010101"}
    first = await post(client, with_ins("1700101010101"), **cond)
    assert first.status_code == 201
    again = await post(client, with_ins("1700101010101", gender="female"), **cond)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert "gender" not in again.json()  # nothing was written
    assert await _count(client, "1700101010101") == 1
    # Several matches: 412.
    await post(client, with_ins("dup"))
    await post(client, with_ins("dup"))
    r = await post(client, with_ins("dup"), **{"If-None-Exist": f"identifier={INS}|dup"})
    assert r.status_code == 412
    outcome_of(r)
    assert await _count(client, "dup") == 2


async def test_concurrent_conditional_creates_yield_one_resource(client: httpx.AsyncClient) -> None:
    cond = {"If-None-Exist": f"identifier={INS}|2800202020202"}
    responses = await asyncio.gather(*(post(client, with_ins("2800202020202"), **cond) for _ in range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(200) == 11, statuses
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _count(client, "2800202020202") == 1


async def test_conditional_create_with_unknown_parameter_is_refused(client: httpx.AsyncClient) -> None:
    r = await post(client, with_ins("x"), **{"If-None-Exist": "nonsense=1"})
    assert r.status_code == 400
    outcome_of(r)


async def test_conditional_update(client: httpx.AsyncClient) -> None:
    url = f"Patient?identifier={INS}|3900303030303"
    headers = {"Content-Type": FHIR_JSON}
    r = await client.put(url, json=with_ins("3900303030303"), headers=headers)
    assert r.status_code == 201
    pid = r.json()["id"]
    r = await client.put(url, json=with_ins("3900303030303", gender="male"), headers=headers)
    assert r.status_code == 200
    assert r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    # A body id that is not the match's id: 400.
    r = await client.put(url, json=with_ins("3900303030303", id="someone-else"), headers=headers)
    assert r.status_code == 400
    # Several matches: 412, nothing written.
    await post(client, with_ins("twice"))
    await post(client, with_ins("twice"))
    r = await client.put(f"Patient?identifier={INS}|twice", json=with_ins("twice", active=True), headers=headers)
    assert r.status_code == 412
    assert await _count(client, "twice") == 2


async def test_conditional_delete(client: httpx.AsyncClient) -> None:
    pid = (await post(client, with_ins("4100404040404"))).json()["id"]
    r = await client.delete(f"Patient?identifier={INS}|4100404040404")
    assert r.status_code == 204
    assert (await client.get(f"Patient/{pid}")).status_code == 410
    assert (await client.delete(f"Patient?identifier={INS}|4100404040404")).status_code == 204
    await post(client, with_ins("many"))
    await post(client, with_ins("many"))
    r = await client.delete(f"Patient?identifier={INS}|many")
    assert r.status_code == 412
    assert await _count(client, "many") == 2
    r = await client.delete("Patient")
    assert r.status_code == 400
    outcome_of(r)


async def test_conditional_patch(client: httpx.AsyncClient) -> None:
    pid = (await post(client, with_ins("5200505050505"))).json()["id"]
    r = await client.patch(
        f"Patient?identifier={INS}|5200505050505",
        json=[{"op": "add", "path": "/active", "value": True}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200
    assert r.json()["id"] == pid and r.json()["active"] is True
