"""history at instance, type and system level, with _since, _count and paging."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx

from tests.helpers import post, put


async def _all_pages(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> list[dict]:
    entries: list[dict] = []
    r = await client.get(url, params=params)
    while True:
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert bundle["type"] == "history"
        entries += bundle["entry"]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            return entries
        r = await client.get(nxt[0])


async def test_type_history_paging_and_since(client: httpx.AsyncClient) -> None:
    created = [
        (
            await post(
                client,
                {
                    "resourceType": "Flag",
                    "status": "active",
                    "code": {"text": f"f{i}"},
                    "subject": {"reference": "Patient/p1"},
                },
            )
        ).json()
        for i in range(5)
    ]
    await asyncio.sleep(0.01)
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.01)
    await put(client, dict(created[0], status="inactive"))
    entries = await _all_pages(client, "Flag/_history", {"_count": "2"})
    assert len(entries) == 6
    stamps = [e["response"]["lastModified"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert entries[0]["request"] == {"method": "PUT", "url": f"Flag/{created[0]['id']}"}
    assert entries[-1]["request"]["method"] == "POST"
    recent = await _all_pages(client, "Flag/_history", {"_since": since})
    assert [e["resource"]["status"] for e in recent] == ["inactive"]
    r = await client.get("Flag/_history", params={"_since": "yesterday"})
    assert r.status_code == 400


async def test_instance_and_system_history(client: httpx.AsyncClient) -> None:
    created = (await post(client, {"resourceType": "Device", "status": "active"})).json()
    for status in ("inactive", "active", "entered-in-error"):
        created = (await put(client, dict(created, status=status))).json()
    entries = await _all_pages(client, f"Device/{created['id']}/_history", {"_count": "3"})
    assert [e["resource"]["meta"]["versionId"] for e in entries] == ["4", "3", "2", "1"]
    assert entries[0]["fullUrl"] == f"http://testserver/fhir/Device/{created['id']}"
    assert entries[0]["response"]["etag"] == 'W/"4"'
    system = (await client.get("_history", params={"_count": "5"})).json()
    assert system["total"] >= 4
    # Newest first: the audit trail of the last requests, then the last Device version.
    types = [e["resource"]["resourceType"] for e in system["entry"]]
    assert "Device" in types and set(types) <= {"Device", "AuditEvent"}
    assert (await client.get("Device/nope/_history")).status_code == 404
