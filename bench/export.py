"""Bulk export benchmark: our $export against a raw motor scan of the same collections, in one run.

    .venv/bin/python bench/export.py [--patients 5] [--mongodb-uri URI]

Loads Synthea patients (bench/load_synthea.py), runs a system-level $export to completion, downloads
every file, and scans the same collections with motor (each current resource serialised to an NDJSON
line, as the export does). Prints resources/s and MB/s for both and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import orjson
from motor.motor_asyncio import AsyncIOMotorClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import running_server
from bench.load_synthea import load_synthea


async def our_export(http: httpx.AsyncClient, base: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    r = await http.get(f"{base}/$export", headers={"Prefer": "respond-async"})
    r.raise_for_status()
    status_url = r.headers["Content-Location"]
    while True:
        r = await http.get(status_url)
        if r.status_code == 200:
            break
        r.raise_for_status()
        await asyncio.sleep(0.2)
    count = size = 0
    for item in r.json()["output"]:
        async with http.stream("GET", item["url"]) as resp:
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
        count += item["count"]
    return time.perf_counter() - start, count, size


async def raw_scan(uri: str) -> tuple[float, int, int]:
    db = AsyncIOMotorClient(uri)["bench"]
    names = [n for n in await db.list_collection_names() if n[:1].isupper()]
    start = time.perf_counter()
    count = size = 0
    for name in names:
        async for doc in db[name].find({"res": {"$exists": True}}, {"res": 1}).batch_size(500):
            size += len(orjson.dumps(doc["res"])) + 1
            count += 1
    return time.perf_counter() - start, count, size


async def main(patients: int, mongodb_uri: str | None) -> None:
    async with running_server(mongodb_uri) as srv:
        await load_synthea(srv.base, srv.token, limit=patients)
        headers = {"Authorization": f"Bearer {srv.token}"}
        async with httpx.AsyncClient(headers=headers, timeout=600) as http:
            t_ours, n_ours, b_ours = await our_export(http, srv.base)
        t_raw, n_raw, b_raw = await raw_scan(srv.uri)
        print(f"backend: {'MongoDB' if mongodb_uri else 'FerretDB'}; {patients} Synthea patients")
        print(
            f"raw scan : {n_raw} resources, {b_raw / 1e6:.1f} MB in {t_raw:.2f} s = {n_raw / t_raw:.0f} res/s, "
            f"{b_raw / 1e6 / t_raw:.1f} MB/s"
        )
        print(
            f"$export  : {n_ours} resources, {b_ours / 1e6:.1f} MB in {t_ours:.2f} s = {n_ours / t_ours:.0f} res/s, "
            f"{b_ours / 1e6 / t_ours:.1f} MB/s (kick-off to last byte downloaded)"
        )
        print(
            f"ratio    : resources/s ÷ raw {n_ours / t_ours / (n_raw / t_raw):.2f}, "
            f"MB/s ÷ raw {b_ours / t_ours / (b_raw / t_raw):.2f}"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=5)
    ap.add_argument("--mongodb-uri", default=None)
    args = ap.parse_args()
    asyncio.run(main(args.patients, args.mongodb_uri))
