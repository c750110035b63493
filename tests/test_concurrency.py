"""Concurrent updates never lose a write."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import patient, post, put


async def test_same_if_match_exactly_one_wins(client: httpx.AsyncClient) -> None:
    created = (await post(client, patient())).json()
    rs = await asyncio.gather(
        *(put(client, dict(created, gender=g), **{"If-Match": 'W/"1"'}) for g in ("male", "female", "other"))
    )
    statuses = sorted(r.status_code for r in rs)
    assert statuses == [200, 412, 412], statuses
    winner = next(r.json() for r in rs if r.status_code == 200)
    current = (await client.get(f"Patient/{created['id']}")).json()
    assert current["meta"]["versionId"] == "2" and current["gender"] == winner["gender"]


async def test_unconditional_updates_all_land_as_successive_versions(client: httpx.AsyncClient) -> None:
    created = (await post(client, patient())).json()
    n = 10
    rs = await asyncio.gather(*(put(client, dict(created, language=f"fr-{i}")) for i in range(n)))
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in rs)
    assert versions == list(range(2, n + 2))
    hist = (await client.get(f"Patient/{created['id']}/_history", params={"_count": "50"})).json()
    assert hist["total"] == n + 1
    languages = {e["resource"].get("language") for e in hist["entry"]}
    assert languages == {None} | {f"fr-{i}" for i in range(n)}
