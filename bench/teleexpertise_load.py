"""Téléexpertise under load: N users at once on the worklist, the dossier read and a Task transition.

    .venv/bin/python bench/teleexpertise_load.py [--users 20] [--rounds 5] [--mongodb-uri URI]

Spec §8 test 15 asks for p95 < 2 s "under a load of N concurrent users" for the worklist, the dossier
read and the Task update; the CCTP gives no N (Annex 3 is absent: "nombre très important, stated by the
candidate"), so N is a parameter. A real `fhir-server serve` on FerretDB (or the MongoDB given) gets a
small annuaire through its API — one requérant structure (communauté C1), one requis structure
(communauté A) — then N/2 requérants and N/2 requis, each with their own practitioner token, and
rounds × N/2 dossiers sent by the requérants to A. Then all N users run `rounds` rounds at once:

  requis:    GET Task/$worklist?list=to-answer&_count=20, GET ServiceRequest/<id>, POST Task/<id>/$accept
  requérant: GET Task/$worklist?list=sent-waiting&_count=20, GET ServiceRequest/<id>

and the same operations are then sent raw with motor at the same concurrency:

  worklist   the Task filter of the worklist's search (search.query.build_filter of the parameters
             teleexpertise/worklists.py builds), sorted -authored-on, limit 21 — without the access-list
             residual and the count of `total`;
  read       find_one by _id;
  update     one update_one of the Task by _id — a transition also writes the ServiceRequest, the history,
             its AuditEvent and the transaction journal, so this ratio is large by construction.

Prints p50/p95 per operation, ours and raw, and the ratios. Time is printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Running, running_server
from bench.search import plain_filter
from fhir_server.auth.tokens import mint_token
from fhir_server.teleexpertise.worklists import OPEN

BASE = "https://fhir-server.example/fhir"
ORG_KIND = f"{BASE}/CodeSystem/organization-kind"
ROLE = f"{BASE}/CodeSystem/teleexpertise-role"
DOSSIER_TYPE = f"{BASE}/CodeSystem/teledossier-type"
FINESS = "https://finess.esante.gouv.fr"
FR_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
JSON = {"Content-Type": "application/fhir+json"}


class Region:
    """The annuaire, the users' tokens and the dossiers, built through the API."""

    def __init__(self, srv: Running, http: httpx.AsyncClient) -> None:
        self.srv, self.http = srv, http
        self.admin = {"Authorization": f"Bearer {srv.token}", **JSON}
        self.users: dict[str, dict[str, Any]] = {}  # name -> {headers, role, communaute, side}
        self.orgs: dict[str, str] = {}
        self.dossiers: list[str] = []
        self.tasks: list[str] = []

    async def create(self, resource: dict[str, Any], headers: dict[str, str] | None = None, **params: str) -> str:
        r = await self.http.post(
            f"{self.srv.base}/{resource['resourceType']}", json=resource, headers=headers or self.admin, params=params
        )
        if r.status_code != 201:
            raise SystemExit(f"setup failed: {r.status_code} {r.text[:300]}")
        return f"{resource['resourceType']}/{r.json()['id']}"

    async def organisations(self) -> None:
        for name, finess in (("S1", "340000001"), ("S2", "340000002")):
            self.orgs[name] = await self.create(
                {
                    "resourceType": "Organization",
                    "name": f"Structure {name}",
                    "type": [{"coding": [{"system": ORG_KIND, "code": "structure"}]}],
                    "identifier": [
                        {"type": {"coding": [{"system": FR_TYPE, "code": "FINEG"}]}, "system": FINESS, "value": finess}
                    ],
                }
            )
        for name, parent in (("C1", "S1"), ("A", "S2")):
            self.orgs[name] = await self.create(
                {
                    "resourceType": "Organization",
                    "name": f"Communauté {name}",
                    "type": [{"coding": [{"system": ORG_KIND, "code": "communaute"}]}],
                    "partOf": {"reference": self.orgs[parent]},
                }
            )

    async def user(self, name: str, number: int, communaute: str, side: str) -> None:
        practitioner = await self.create(
            {
                "resourceType": "Practitioner",
                "name": [{"family": name.upper(), "given": ["Bench"]}],
                "identifier": [{"system": RPPS, "value": f"1900000{number:04d}"}],
            }
        )
        role = await self.create(
            {
                "resourceType": "PractitionerRole",
                "active": True,
                "practitioner": {"reference": practitioner},
                "organization": {"reference": self.orgs[communaute]},
                "code": [{"coding": [{"system": ROLE, "code": "ps"}]}],
            }
        )
        token = mint_token(
            self.srv.data_dir,
            issuer=self.srv.base,
            audience=self.srv.base,
            scope="user/*.cruds",
            lifetime=36000,
            subject=practitioner,
            extra={"fhirUser": practitioner},
        )
        self.users[name] = {
            "headers": {"Authorization": f"Bearer {token}", **JSON},
            "role": role,
            "communaute": self.orgs[communaute],
            "side": side,
        }

    async def dossier(self, author: str, n: int) -> None:
        headers = self.users[author]["headers"]
        patient = await self.create(
            {"resourceType": "Patient", "name": [{"family": f"CHARGE{n}", "given": ["Test"]}]}, headers
        )
        sr = await self.create(
            {
                "resourceType": "ServiceRequest",
                "status": "draft",
                "intent": "order",
                "category": [{"coding": [{"system": DOSSIER_TYPE, "code": "tle-programmee"}]}],
                "subject": {"reference": patient},
            },
            headers,
        )
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": "addressee", "valueReference": {"reference": self.orgs["A"]}}],
        }
        r = await self.http.post(f"{self.srv.base}/{sr}/$send", json=body, headers=headers)
        if r.status_code != 200:
            raise SystemExit(f"$send failed: {r.status_code} {r.text[:300]}")
        self.dossiers.append(sr.split("/", 1)[1])
        self.tasks += [e["resource"]["id"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "Task"]


async def build(srv: Running, http: httpx.AsyncClient, users: int, rounds: int) -> Region:
    region = Region(srv, http)
    await region.organisations()
    half = max(1, users // 2)
    for i in range(half):
        await region.user(f"req{i}", i, "C1", "requerant")
        await region.user(f"exp{i}", half + i, "A", "requis")
    requerants = [u for u, v in region.users.items() if v["side"] == "requerant"]
    for n in range(rounds * half):
        await region.dossier(requerants[n % len(requerants)], n)
    return region


Op = Callable[[], Awaitable[None]]


async def run_load(scripts: list[list[tuple[str, Op]]]) -> dict[str, list[float]]:
    """Every user's script at once; latencies per operation kind (s)."""
    timings: dict[str, list[float]] = {}

    async def play(script: list[tuple[str, Op]]) -> None:
        for kind, op in script:
            t = time.perf_counter()
            await op()
            timings.setdefault(kind, []).append(time.perf_counter() - t)

    await asyncio.gather(*(play(s) for s in scripts))
    return timings


def ours(region: Region, rounds: int) -> list[list[tuple[str, Op]]]:
    http, base = region.http, region.srv.base
    tasks = list(region.tasks)
    scripts = []

    def get(url: str, headers: dict[str, str], **params: Any) -> Op:
        async def op() -> None:
            r = await http.get(url, headers=headers, params=params)
            if r.status_code != 200:
                raise SystemExit(f"{url}: {r.status_code} {r.text[:300]}")

        return op

    def accept(task: str, headers: dict[str, str]) -> Op:
        async def op() -> None:
            r = await http.post(f"{base}/Task/{task}/$accept", json={"resourceType": "Parameters"}, headers=headers)
            if r.status_code != 200:
                raise SystemExit(f"$accept: {r.status_code} {r.text[:300]}")

        return op

    for user in region.users.values():
        h, script = user["headers"], []
        name = "to-answer" if user["side"] == "requis" else "sent-waiting"
        for _ in range(rounds):
            script.append(("worklist", get(f"{base}/Task/$worklist", h, list=name, _count="20")))
            script.append(("read", get(f"{base}/ServiceRequest/{random.choice(region.dossiers)}", h)))
            if user["side"] == "requis":
                script.append(("update", accept(tasks.pop(), h)))
        scripts.append(script)
    return scripts


def raw(region: Region, db: AsyncIOMotorDatabase, rounds: int) -> list[list[tuple[str, Op]]]:
    tasks = list(region.tasks)
    scripts = []

    def worklist(params: list[tuple[str, str]]) -> Op:
        flt = plain_filter("Task", params, region.srv.base)

        async def op() -> None:
            await db.Task.find(flt, {"res": 1}).sort([("i.authored-on.max", -1), ("_id", 1)]).limit(21).to_list(21)

        return op

    def read(rid: str) -> Op:
        async def op() -> None:
            await db.ServiceRequest.find_one({"_id": rid})

        return op

    def update(tid: str) -> Op:
        async def op() -> None:
            await db.Task.update_one({"_id": tid}, {"$set": {"bench_touched": time.time()}})

        return op

    for user in region.users.values():
        if user["side"] == "requis":
            params = [("tlx-addressee", f"{user['role']},{user['communaute']}"), ("status", OPEN)]
        else:
            params = [("requester", user["role"]), ("status", OPEN)]
        script: list[tuple[str, Op]] = []
        for _ in range(rounds):
            script.append(("worklist", worklist(params)))
            script.append(("read", read(random.choice(region.dossiers))))
            if user["side"] == "requis":
                script.append(("update", update(tasks.pop())))
        scripts.append(script)
    return scripts


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


async def main(args: argparse.Namespace) -> None:
    async with running_server(args.mongodb_uri) as srv:
        async with httpx.AsyncClient(timeout=120) as http:
            t = time.perf_counter()
            region = await build(srv, http, args.users, args.rounds)
            setup = time.perf_counter() - t
            ours_t = await run_load(ours(region, args.rounds))
        db = AsyncIOMotorClient(srv.uri)["bench"]
        raw_t = await run_load(raw(region, db, args.rounds))
    backend = "MongoDB" if args.mongodb_uri else "FerretDB"
    print(
        f"backend: {backend}; {len(region.users)} users at once, {args.rounds} rounds; "
        f"{len(region.dossiers)} dossiers sent (setup {setup:.0f} s)"
    )
    print(f"{'operation':10} {'n':>4} {'ours p50':>10} {'ours p95':>10} {'raw p50':>9} {'raw p95':>9} {'p95 ratio':>9}")
    for kind in ("worklist", "read", "update"):
        o, r = ours_t[kind], raw_t[kind]
        print(
            f"{kind:10} {len(o):4d} {statistics.median(o) * 1e3:8.1f}ms {p95(o) * 1e3:8.1f}ms "
            f"{statistics.median(r) * 1e3:7.1f}ms {p95(r) * 1e3:7.1f}ms {p95(o) / p95(r):9.1f}"
        )
    worst = max(p95(v) for v in ours_t.values())
    print(f"worst p95 of ours: {worst:.2f} s (the CCTP's page-load target is about 2 s)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20, help="concurrent users (half requérants, half requis)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of operations per user")
    ap.add_argument("--mongodb-uri", default=None)
    asyncio.run(main(ap.parse_args()))
