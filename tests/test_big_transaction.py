"""The shared 25,000-entry transaction bundle ingests whole, in bounded memory, and atomically."""

from __future__ import annotations

import bz2
import re
import resource
from collections import Counter

import httpx
import orjson

from tests.conftest import SHARED

BIG_TX = SHARED / "fixtures" / "big-tx" / "transaction-bundle.json.bz2"


def _reference_stubs(raw: bytes) -> list[dict]:
    """The bundle refers to its population's Practitioners, Organizations and Locations by identifier;
    they are not in it, so create them first, as a user loading it would."""
    entries = []
    for ref in sorted(set(re.findall(rb'"reference": ?"([A-Za-z]+\?identifier=[^"]+)"', raw))):
        rtype, _, token = ref.decode().partition("?identifier=")
        system, _, value = token.partition("|")
        res: dict = {"resourceType": rtype, "identifier": [{"system": system, "value": value}]}
        res["name"] = [{"family": value}] if rtype == "Practitioner" else value
        entries.append({"request": {"method": "POST", "url": rtype}, "resource": res})
    return entries


async def test_big_transaction(client: httpx.AsyncClient) -> None:
    raw = bz2.open(BIG_TX).read()
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": _reference_stubs(raw)})
    assert r.status_code == 200, r.text[:500]
    expected = Counter(e["resource"]["resourceType"] for e in orjson.loads(raw)["entry"])

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = await client.post("", content=raw, headers={"Content-Type": "application/fhir+json"}, timeout=3600)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert r.status_code == 200, r.text[:500]
    entries = r.json()["entry"]
    assert len(entries) == 25_000
    assert all(e["response"]["status"] == "201 Created" for e in entries)
    # Peak memory grows by a bounded multiple of the 46 MB body, not with the database (kB units).
    assert rss_after - rss_before < 1_500_000
    for rtype in ("Patient", "Encounter", "Observation"):
        r = await client.get(rtype, params={"_summary": "count"}, timeout=600)
        assert r.json()["total"] == expected[rtype]
