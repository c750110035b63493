"""A search never shows part of a transaction, and is not disturbed by transactions it cannot see partly.

Transactions are made visible by one journal update and applied document by document afterwards
(storage/transactions.py); a search re-runs when a transaction that committed meanwhile wrote two
documents among the resource types it read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx

from fhir_server.storage.transactions import consistent, type_pairs
from tests.helpers import patient, post

BATON = "https://fhir-server.example/test|baton"
JSON = {"Content-Type": "application/fhir+json"}


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def _tagged(resource: dict[str, Any], holds: bool) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k != "meta"}
    if holds:
        out["meta"] = {"tag": [{"system": BATON.split("|")[0], "code": "baton"}]}
    return out


async def test_a_baton_passed_by_transactions_is_always_held_once(client: httpx.AsyncClient) -> None:
    """Each transaction moves the tag from one Patient to the other: every search sees exactly one holder."""
    a = (await post(client, _tagged(patient(), True))).json()
    b = (await post(client, _tagged(patient(), False))).json()
    ids = f"{a['id']},{b['id']}"
    stop = asyncio.Event()
    seen: list[int] = []

    async def passes() -> None:
        for i in range(12):
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [_put(_tagged(a, i % 2 == 1)), _put(_tagged(b, i % 2 == 0))],
            }
            r = await client.post("", json=bundle, headers=JSON)
            assert r.status_code == 200, r.text
        stop.set()

    async def watch() -> None:
        while not stop.is_set():
            r = await client.get("Patient", params={"_id": ids, "_tag": BATON, "_total": "accurate"})
            if r.status_code == 503:  # allowed under contention: "retry", never a partial answer
                continue
            assert r.status_code == 200, r.text
            seen.append(r.json()["total"])

    await asyncio.gather(passes(), watch(), watch())
    assert seen and set(seen) == {1}, seen


async def test_transactions_on_one_document_of_the_searched_type_never_force_a_retry(
    client: httpx.AsyncClient,
) -> None:
    """Transactions each writing one Patient and one Observation cannot show partly in a Patient search:
    the search answers 200 every time, however many of them commit while it runs."""
    family = "Coherent"
    stop = asyncio.Event()
    answers: list[int] = []

    async def writes() -> None:
        for i in range(15):
            p = patient(family=family)
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{i:012d}", "resource": p,
                     "request": {"method": "POST", "url": "Patient"}},
                    {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                  "subject": {"reference": f"urn:uuid:00000000-0000-0000-0000-{i:012d}"}},
                     "request": {"method": "POST", "url": "Observation"}},
                ],
            }  # fmt: skip
            r = await client.post("", json=bundle, headers=JSON)
            assert r.status_code == 200, r.text
        stop.set()

    async def searches() -> None:
        while not stop.is_set():
            r = await client.get("Patient", params={"family": family, "_count": "5"})
            answers.append(r.status_code)

    await asyncio.gather(writes(), searches(), searches())
    assert answers and set(answers) == {200}, answers


def _writes(*types: str) -> list[Any]:
    return [SimpleNamespace(resource_type=t) for t in types]


def test_type_pairs_name_what_a_reader_could_see_partly() -> None:
    assert type_pairs(_writes("Task")) == set()
    assert type_pairs(_writes("Task", "Task")) == {"Task|Task"}
    assert type_pairs(_writes("Task", "ServiceRequest", "AuditEvent")) == {
        "AuditEvent|ServiceRequest",
        "AuditEvent|Task",
        "ServiceRequest|Task",
    }


def test_consistent_only_when_no_pair_of_touched_types_moved() -> None:
    before = {"n": 4, "p": {"ServiceRequest|Task": 2}}
    one_task_each = {"n": 9, "p": {"ServiceRequest|Task": 7}}
    assert consistent(before, before, {"Task"})
    assert consistent(before, one_task_each, {"Task"})  # each commit wrote one Task: no partial view
    assert not consistent(before, one_task_each, {"Task", "ServiceRequest"})  # a Task and its SR: re-run
    assert not consistent(before, {"n": 5, "p": {"ServiceRequest|Task": 2, "Task|Task": 1}}, {"Task"})
    assert consistent({"n": 0}, {"n": 1, "p": {"Observation|Patient": 1}}, {"Practitioner"})
