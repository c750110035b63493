"""Batch and transaction bundles: references, ordering, conditionals, atomicity."""

from __future__ import annotations

import base64
import bz2
import json

import httpx

from tests.conftest import SHARED
from tests.helpers import outcome_of, patient, post

INS = "urn:oid:1.2.250.1.213.1.4.8"


def tx(*entries: dict, kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(method: str, url: str, resource: dict | None = None, full_url: str | None = None, **request: str) -> dict:
    out: dict = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        out["resource"] = resource
    if full_url:
        out["fullUrl"] = full_url
    return out


def obs(subject: str, code: str = "2339-0") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
    }


async def total(client: httpx.AsyncClient, url: str, **params: str) -> int:
    r = await client.get(url, params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def test_transaction_rewrites_urn_uuid_references(client: httpx.AsyncClient) -> None:
    pid = "urn:uuid:8c2b6a4e-6a0e-4c1e-9d4b-111111111111"
    bundle = tx(
        entry("POST", "Observation", obs(pid)),
        entry("POST", "Patient", patient(identifier=[{"system": INS, "value": "tx-1"}]), full_url=pid),
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    obs_loc, pat_loc = (e["response"]["location"] for e in out["entry"])
    new_pid = pat_loc.split("/")[1]
    stored = (await client.get("/".join(obs_loc.split("/")[:2]))).json()
    assert stored["subject"]["reference"] == f"Patient/{new_pid}"
    assert out["entry"][0]["response"]["etag"] == 'W/"1"'
    assert "lastModified" in out["entry"][0]["response"]


async def test_conditional_references_and_entries(client: httpx.AsyncClient) -> None:
    existing = (await post(client, patient(identifier=[{"system": INS, "value": "tx-cond"}]))).json()["id"]
    bundle = tx(
        entry("POST", "Observation", obs(f"Patient?identifier={INS}|tx-cond")),
        entry("POST", "Patient", patient(), ifNoneExist=f"identifier={INS}|tx-cond"),
        entry("PUT", f"Patient?identifier={INS}|tx-new", patient(identifier=[{"system": INS, "value": "tx-new"}])),
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    e = r.json()["entry"]
    assert e[1]["response"]["status"] == "200 OK"
    assert e[1]["response"]["location"].startswith(f"Patient/{existing}/")
    assert e[2]["response"]["status"] == "201 Created"
    oid = e[0]["response"]["location"].split("/")[1]
    assert (await client.get(f"Observation/{oid}")).json()["subject"]["reference"] == f"Patient/{existing}"
    # A conditional reference that matches nothing fails the whole transaction.
    before = await total(client, "Observation")
    r = await client.post("", json=tx(entry("POST", "Observation", obs(f"Patient?identifier={INS}|nobody"))))
    assert r.status_code == 400
    assert "nobody" in outcome_of(r)["issue"][0]["diagnostics"]
    assert await total(client, "Observation") == before


async def test_processing_order_and_get(client: httpx.AsyncClient) -> None:
    doomed = (await post(client, patient(family="Doomed"))).json()["id"]
    bundle = tx(
        entry("GET", f"Patient/{doomed}"),
        entry("POST", "Patient", patient(family="Newborn")),
        entry("DELETE", f"Patient/{doomed}"),
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    e = r.json()["entry"]
    assert e[2]["response"]["status"] == "204 No Content"
    assert e[0]["response"]["status"].startswith("410")  # GET runs after the DELETE
    assert (await client.get(f"Patient/{doomed}")).status_code == 410


async def test_failure_anywhere_leaves_no_trace(client: httpx.AsyncClient) -> None:
    keep = (await post(client, patient(family="Stable"))).json()
    before = (await total(client, "Patient"), await total(client, "Observation"))
    # (AuditEvents record the refusals: count the types the bundles write.)
    history_before = [
        (await client.get(f"{t}/_history", params={"_count": "1"})).json()["total"] for t in ("Patient", "Observation")
    ]
    cases = [
        # invalid content in the last entry
        tx(
            entry("POST", "Patient", patient(family="Ghost")),
            entry("PUT", f"Patient/{keep['id']}", dict(keep, gender="homme")),
        ),
        # ifMatch mismatch
        tx(
            entry("POST", "Patient", patient(family="Ghost")),
            entry("PUT", f"Patient/{keep['id']}", dict(keep, active=True), ifMatch='W/"9"'),
        ),
        # reference to an urn:uuid not in the bundle
        tx(
            entry("POST", "Patient", patient(family="Ghost")),
            entry("POST", "Observation", obs("urn:uuid:00000000-0000-0000-0000-000000000000")),
        ),
        # the same resource written twice
        tx(
            entry("PUT", f"Patient/{keep['id']}", dict(keep, active=True)),
            entry("PUT", f"Patient/{keep['id']}", dict(keep, active=False)),
        ),
    ]
    for bundle in cases:
        r = await client.post("", json=bundle)
        assert r.status_code in (400, 409, 412, 422), r.text
        issue = outcome_of(r)["issue"][0]
        assert "Bundle.entry[" in issue["diagnostics"] or "Bundle.entry[" in " ".join(issue.get("expression", []))
    assert (await total(client, "Patient"), await total(client, "Observation")) == before
    assert await total(client, "Patient", family="ghost") == 0
    assert [
        (await client.get(f"{t}/_history", params={"_count": "1"})).json()["total"] for t in ("Patient", "Observation")
    ] == history_before
    assert (await client.get(f"Patient/{keep['id']}")).json() == keep


async def test_injected_failure_mid_staging_rolls_back(client: httpx.AsyncClient, app) -> None:
    store = app.state.server.store
    keep = (await post(client, patient(family="Before"))).json()
    before = await total(client, "Patient")
    entries = [entry("POST", "Patient", patient(family="Partial")) for _ in range(1200)]
    entries.append(entry("PUT", f"Patient/{keep['id']}", dict(keep, active=True)))
    store.tx.inject.after = 600  # fail after the first 500-write chunk is staged
    store.tx.inject.count = 0
    try:
        r = await client.post("", json=tx(*entries))
    finally:
        store.tx.inject.after = None
    assert r.status_code == 500
    outcome_of(r)
    assert await total(client, "Patient") == before
    assert await total(client, "Patient", family="partial") == 0
    assert (await client.get(f"Patient/{keep['id']}")).json() == keep
    assert (await client.get(f"Patient/{keep['id']}/_history")).json()["total"] == 1
    assert await store.database.db["transactions"].count_documents({"state": {"$exists": True}}) == 0


async def test_patch_entry(client: httpx.AsyncClient) -> None:
    pid = (await post(client, patient())).json()["id"]
    ops = base64.b64encode(json.dumps([{"op": "add", "path": "/active", "value": True}]).encode()).decode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": ops}
    r = await client.post("", json=tx(entry("PATCH", f"Patient/{pid}", binary)))
    assert r.status_code == 200, r.text
    assert (await client.get(f"Patient/{pid}")).json()["active"] is True


async def test_batch_entries_are_independent(client: httpx.AsyncClient) -> None:
    bundle = tx(
        entry("POST", "Patient", patient(family="Batchy")),
        entry("POST", "Patient", {"resourceType": "Patient", "gender": "homme"}),
        entry("GET", "Patient/does-not-exist"),
        entry("GET", "Patient?family=batchy"),
        kind="batch",
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    e = r.json()["entry"]
    assert r.json()["type"] == "batch-response"
    assert e[0]["response"]["status"] == "201 Created" and e[0]["response"]["location"]
    assert e[1]["response"]["status"].startswith(("400", "422"))
    assert e[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert e[2]["response"]["status"].startswith("404")
    assert e[3]["resource"]["type"] == "searchset"


async def test_bad_bundles(client: httpx.AsyncClient, settings) -> None:
    r = await client.post("", json={"resourceType": "Bundle", "type": "collection"})
    assert r.status_code == 400
    r = await client.post("", json=patient())
    assert r.status_code == 400
    r = await client.post("", json=tx(entry("POST", "NotAType", {"resourceType": "Basic"})))
    assert r.status_code == 400
    many = tx(*[entry("GET", "Patient/x")] * (settings.max_bundle_entries + 1))
    r = await client.post("", json=many)
    assert r.status_code == 413
    outcome_of(r)


async def test_synthea_patient_transaction(client: httpx.AsyncClient) -> None:
    # The shared reference data first: batches of conditional creates (ifNoneExist), as Synthea ships them.
    for name in ("0-hospitalInformation", "0-practitionerInformation"):
        path = next((SHARED / "fixtures" / "synthea").glob(f"{name}*.json.bz2"))
        r = await client.post("", json=json.load(bz2.open(path)))
        assert r.status_code == 200, r.text[:500]
        assert all(e["response"]["status"].startswith("201") for e in r.json()["entry"])
    path = sorted((SHARED / "fixtures" / "synthea").glob("[!0]*.json.bz2"))[0]
    bundle = json.load(bz2.open(path))
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text[:1000]
    assert len(r.json()["entry"]) == len(bundle["entry"])
    pid = next(
        e["response"]["location"].split("/")[1]
        for e in r.json()["entry"]
        if e["response"]["location"].startswith("Patient/")
    )
    n_obs = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert await total(client, "Observation", subject=f"Patient/{pid}") == n_obs


async def test_concurrent_readers_never_see_part_of_a_transaction(client: httpx.AsyncClient) -> None:
    import asyncio

    n = 1500
    kind = {"system": "http://example.org/kinds", "code": "atomic"}
    before = await total(client, "Basic", code="atomic")
    bundle = tx(*[entry("POST", "Basic", {"resourceType": "Basic", "code": {"coding": [kind]}}) for _ in range(n)])
    seen: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            seen.append(await total(client, "Basic", code="atomic"))
            await asyncio.sleep(0)

    async def writer() -> httpx.Response:
        try:
            return await client.post("", json=bundle)
        finally:
            done.set()

    readers = [asyncio.create_task(reader()) for _ in range(2)]
    r = await writer()
    await asyncio.gather(*readers)
    assert r.status_code == 200, r.text[:300]
    assert seen and set(seen) <= {before, before + n}, sorted(set(seen))
    assert await total(client, "Basic", code="atomic") == before + n


async def test_conditional_create_in_transactions_and_requests_never_duplicates(client: httpx.AsyncClient) -> None:
    import asyncio

    ident = {"system": INS, "value": "race-tx-1"}
    cond = f"identifier={INS}|race-tx-1"
    bundle = tx(entry("POST", "Patient", patient(identifier=[ident]), ifNoneExist=cond))
    single = post(client, patient(identifier=[ident]), **{"If-None-Exist": cond})
    results = await asyncio.gather(
        *(client.post("", json=bundle) for _ in range(4)), single, *(client.post("", json=bundle) for _ in range(4))
    )
    assert all(r.status_code in (200, 201) for r in results), [r.text[:200] for r in results]
    assert await total(client, "Patient", identifier=f"{INS}|race-tx-1") == 1


async def test_bundle_entries_beyond_scope_are_refused(anon_client: httpx.AsyncClient, settings) -> None:
    from tests.conftest import token_for

    obs_only = {"Authorization": f"Bearer {token_for(settings, 'system/Observation.cruds')}"}
    bundle = tx(entry("POST", "Observation", obs("Patient/x")), entry("POST", "Patient", patient(family="Hors-scope")))
    r = await anon_client.post("", json=bundle, headers=obs_only)
    assert r.status_code == 403
    assert "Bundle.entry[1]" in outcome_of(r)["issue"][0]["diagnostics"]
    batch = tx(entry("POST", "Observation", obs("Patient/x")), entry("GET", "Patient?family=x"), kind="batch")
    r = await anon_client.post("", json=batch, headers=obs_only)
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("403")
