"""Bulk Data $export: kick-off, polling, manifest, NDJSON download, filters, levels, delete."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from tests.helpers import outcome_of, patient, post, put

ASYNC = {"Prefer": "respond-async"}


async def run_export(client: httpx.AsyncClient, url: str, params: dict | None = None) -> dict:
    r = await client.get(url, params=params, headers=ASYNC)
    assert r.status_code == 202, r.text
    status_url = r.headers["Content-Location"]
    for _ in range(300):
        r = await client.get(status_url)
        if r.status_code == 200:
            manifest = r.json()
            manifest["_status_url"] = status_url
            return manifest
        assert r.status_code == 202, r.text
        assert r.headers["Retry-After"]
        assert "X-Progress" in r.headers
        await asyncio.sleep(0.1)
    raise AssertionError("export did not finish")


async def download(client: httpx.AsyncClient, manifest: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        r = await client.get(item["url"])
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in r.content.splitlines() if line.strip()]
        assert len(lines) == item["count"]
        out.setdefault(item["type"], []).extend(lines)
    return out


@pytest.fixture(scope="module")
async def data(client: httpx.AsyncClient) -> dict:
    p1 = (await post(client, patient(family="Export1"))).json()
    p2 = (await post(client, patient(family="Export2"))).json()
    o1 = (
        await post(
            client,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "glucose"},
                "subject": {"reference": f"Patient/{p1['id']}"},
            },
        )
    ).json()
    o2 = (
        await post(
            client,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "poids"},
                "subject": {"reference": f"Patient/{p2['id']}"},
            },
        )
    ).json()
    org = (await post(client, {"resourceType": "Organization", "name": "ARS Occitanie"})).json()
    group = (
        await post(
            client,
            {
                "resourceType": "Group",
                "type": "person",
                "actual": True,
                "member": [{"entity": {"reference": f"Patient/{p1['id']}"}}],
            },
        )
    ).json()
    return {"p1": p1, "p2": p2, "o1": o1, "o2": o2, "org": org, "group": group}


async def test_system_export(client: httpx.AsyncClient, data: dict) -> None:
    manifest = await run_export(client, "$export")
    assert manifest["requiresAccessToken"] is True and manifest["transactionTime"]
    files = await download(client, manifest)
    assert {r["id"] for r in files["Patient"]} >= {data["p1"]["id"], data["p2"]["id"]}
    assert {r["id"] for r in files["Organization"]} >= {data["org"]["id"]}
    assert files["Patient"][0]["resourceType"] == "Patient"


async def test_type_since_and_type_filter(client: httpx.AsyncClient, data: dict) -> None:
    files = await download(client, await run_export(client, "$export", {"_type": "Observation"}))
    assert set(files) == {"Observation"}
    filtered = await download(
        client,
        await run_export(client, "$export", {"_type": "Observation", "_typeFilter": "Observation?code:text=gluc"}),
    )
    assert [r["id"] for r in filtered["Observation"]] == [data["o1"]["id"]]
    manifest = await run_export(client, "$export", {"_type": "Observation", "_since": "2999-01-01T00:00:00Z"})
    assert manifest["output"] == []


async def test_patient_and_group_level(client: httpx.AsyncClient, data: dict) -> None:
    files = await download(client, await run_export(client, "Patient/$export"))
    assert "Organization" not in files
    assert {r["id"] for r in files["Observation"]} >= {data["o1"]["id"], data["o2"]["id"]}
    files = await download(client, await run_export(client, f"Group/{data['group']['id']}/$export"))
    assert [r["id"] for r in files["Patient"]] == [data["p1"]["id"]]
    assert [r["id"] for r in files["Observation"]] == [data["o1"]["id"]]


async def test_export_is_a_point_in_time(client: httpx.AsyncClient, app, data: dict) -> None:
    # Hold the job queue so the export runs after later writes, which must not show.
    jobs = app.state.jobs
    runner = jobs.runners["export"]
    gate = asyncio.Event()

    async def gated(job, handle):
        await gate.wait()
        await runner(job, handle)

    jobs.runners["export"] = gated
    try:
        r = await client.get("$export", params={"_type": "Patient"}, headers=ASYNC)
        status_url = r.headers["Content-Location"]
        late = (await post(client, patient(family="TooLate"))).json()
        changed = (await put(client, dict(data["p2"], gender="female"))).json()
        gate.set()
        for _ in range(300):
            r = await client.get(status_url)
            if r.status_code == 200:
                break
            await asyncio.sleep(0.1)
        files = await download(client, r.json())
    finally:
        jobs.runners["export"] = runner
    ids = {p["id"]: p for p in files["Patient"]}
    assert late["id"] not in ids
    assert ids[changed["id"]]["meta"]["versionId"] == "1" and "gender" not in ids[changed["id"]]


async def test_errors_and_delete(client: httpx.AsyncClient, data: dict) -> None:
    r = await client.get("$export")
    assert r.status_code == 400  # no Prefer: respond-async
    outcome_of(r)
    r = await client.get("$export", params={"_outputFormat": "text/csv"}, headers=ASYNC)
    assert r.status_code == 400
    r = await client.get("$export", params={"_type": "NotAType"}, headers=ASYNC)
    assert r.status_code == 400
    manifest = await run_export(client, "$export", {"_type": "Patient"})
    file_url = manifest["output"][0]["url"]
    assert (await client.delete(manifest["_status_url"])).status_code == 202
    assert (await client.get(manifest["_status_url"])).status_code == 404
    assert (await client.get(file_url)).status_code == 404
    assert (await client.get("$export-status/unknown")).status_code == 404


async def test_files_need_the_same_authorisation(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, settings
) -> None:
    from tests.conftest import token_for

    manifest = await run_export(client, "$export", {"_type": "Organization"})
    url = manifest["output"][0]["url"]
    assert (await anon_client.get(url)).status_code == 401
    narrow = {"Authorization": f"Bearer {token_for(settings, 'system/Observation.read')}"}
    r = await anon_client.get("$export", params={"_type": "Patient"}, headers={**ASYNC, **narrow})
    assert r.status_code == 403
