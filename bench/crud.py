"""CRUD benchmark: our POST/GET over HTTP against raw motor insert_one/find_one on the same database.

    .venv/bin/python bench/crud.py [--n 2000] [--mongodb-uri URI]

Prints, for 1 and 16 concurrent clients: raw and our latency/throughput and the ratios
(our read latency ÷ raw find latency, our create throughput ÷ raw insert throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx
from motor.motor_asyncio import AsyncIOMotorClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import running_server, timed_concurrently

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "synthea-sample.json"


def observation() -> dict:
    bundle = json.loads(FIXTURE.read_text())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")


async def run_level(http: httpx.AsyncClient, raw: Any, obs: dict, n: int, conc: int) -> None:
    ids: list[str] = []
    raw_ids: list[str] = []

    async def raw_insert(i: int) -> None:
        doc = {"_id": f"c{conc}-{i}", "res": copy.deepcopy(obs)}
        await raw.insert_one(doc)
        raw_ids.append(doc["_id"])

    async def our_create(i: int) -> None:
        r = await http.post("Observation", content=json.dumps(obs), headers={"Prefer": "return=minimal"})
        r.raise_for_status()
        ids.append(r.headers["Location"].split("/")[-3])

    async def raw_find(i: int) -> None:
        assert await raw.find_one({"_id": raw_ids[i % len(raw_ids)]}) is not None

    async def our_read(i: int) -> None:
        (await http.get(f"Observation/{ids[i % len(ids)]}")).raise_for_status()

    t_raw_ins, l_raw_ins = await timed_concurrently(raw_insert, n, conc)
    t_ins, l_ins = await timed_concurrently(our_create, n, conc)
    t_raw_find, l_raw_find = await timed_concurrently(raw_find, n, conc)
    t_read, l_read = await timed_concurrently(our_read, n, conc)
    thr_raw, thr_ours = n / t_raw_ins, n / t_ins
    print(
        f"{conc:>7} | create | {thr_raw:10.0f}/s {statistics.median(l_raw_ins) * 1e3:8.2f} ms |"
        f" {thr_ours:10.0f}/s {statistics.median(l_ins) * 1e3:8.2f} ms |"
        f" throughput ÷ raw {thr_ours / thr_raw:.2f}"
    )
    lat_raw, lat_ours = statistics.median(l_raw_find), statistics.median(l_read)
    print(
        f"{conc:>7} | read   | {n / t_raw_find:10.0f}/s {lat_raw * 1e3:8.2f} ms |"
        f" {n / t_read:10.0f}/s {lat_ours * 1e3:8.2f} ms | latency ÷ raw {lat_ours / lat_raw:.2f}"
    )


async def main(n: int, mongodb_uri: str | None, security: bool) -> None:
    obs = observation()
    env = {} if security else {"FHIR_AUTH_ENABLED": "false", "FHIR_AUDIT_ENABLED": "false"}
    async with running_server(mongodb_uri, env) as srv:
        raw = AsyncIOMotorClient(srv.uri)["bench_raw"]["Observation"]
        headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/fhir+json"}
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=srv.base + "/", headers=headers, limits=limits, timeout=120) as http:
            backend = "FerretDB" if mongodb_uri is None else "MongoDB"
            print(f"backend: {srv.uri} ({backend}); n={n} per run; tokens and audit {'on' if security else 'off'}")
            print(f"{'clients':>7} | {'op':<6} | {'raw':>24} | {'ours':>24} | ratio")
            for conc in (1, 16):
                await run_level(http, raw, obs, n, conc)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--mongodb-uri", default=None)
    ap.add_argument("--security", choices=["on", "off"], default="on", help="token checks and audit trail")
    args = ap.parse_args()
    asyncio.run(main(args.n, args.mongodb_uri, args.security == "on"))
