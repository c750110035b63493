"""Load the Synthea fixtures (../shared/fixtures/synthea/*.json.bz2) into a running server.

    .venv/bin/python bench/load_synthea.py [--limit N] [--concurrency C] [--mode bundle|put|auto]
                                           [--base URL --token T | --mongodb-uri URI]

Without `--base` it starts its own server (bench.common.running_server: FerretDB, or the MongoDB of
`--mongodb-uri`) and stops it afterwards, so it only measures; with `--base` it loads into that server.

The two batch bundles `0-hospitalInformation*` and `0-practitionerInformation*` go first, one after the
other (their Organizations, Locations and Practitioners are what the patients' conditional references
`Practitioner?identifier=...` point at), then the patient transaction bundles, `--concurrency` at a time.
Each bundle is sent as it is, `POST [base]` (FHIR R4 http.html#transaction): a 200 with a
batch-response/transaction-response Bundle whose entries carry `response.status`.

`--mode put` loads the same resources without batch/transaction support, one `PUT [type]/[id]` per
resource (update as create, the Synthea ids kept), with `urn:uuid:` references rewritten to `Type/id`
and conditional references resolved by a search; `auto` uses bundles when `POST [base]` accepts a
one-entry batch and falls back to `put` otherwise. Prints resources/s per phase and overall.
Decompressing and parsing happen before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import bz2
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from motor.motor_asyncio import AsyncIOMotorClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import running_server
from fhir_server.config import REPO_ROOT

FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "synthea"
INFO_PREFIXES = ("0-hospitalInformation", "0-practitionerInformation")  # loaded first, in this order
REQUEST_TIMEOUT = httpx.Timeout(900.0, connect=10.0)  # the largest bundle has 3,419 entries
MAX_REPORTED_ERRORS = 5


@dataclass
class Prepared:
    """One bundle file, decompressed (bytes as sent) and parsed (for counting and `put` mode)."""

    path: Path
    raw: bytes
    bundle: dict[str, Any]

    @property
    def entries(self) -> int:
        return len(self.bundle.get("entry") or [])


@dataclass
class LoadStats:
    mode: str = ""
    bundles: int = 0
    resources: int = 0  # entries sent (an ifNoneExist entry that matched counts too)
    seconds: float = 0.0
    failed: int = 0  # entries (batch, put) or whole bundles' entries (transaction) not accepted
    by_type: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    def add(self, other: LoadStats) -> None:
        self.bundles += other.bundles
        self.resources += other.resources
        self.seconds += other.seconds
        self.failed += other.failed
        self.by_type.update(other.by_type)
        self.errors += other.errors[: MAX_REPORTED_ERRORS - len(self.errors)]


def bundle_files(fixtures: Path = FIXTURES, limit: int | None = None) -> tuple[list[Path], list[Path]]:
    """(the two information bundles in load order, the first `limit` patient bundles by file name)."""
    files = sorted(fixtures.glob("*.json.bz2"))
    info = [p for prefix in INFO_PREFIXES for p in files if p.name.startswith(prefix)]
    patients = [p for p in files if p not in info]
    if len(info) != len(INFO_PREFIXES):
        raise SystemExit(f"expected {', '.join(INFO_PREFIXES)} bundles in {fixtures}")
    return info, patients if limit is None else patients[:limit]


def prepare(paths: list[Path]) -> list[Prepared]:
    out = []
    for path in paths:
        raw = bz2.decompress(path.read_bytes())
        out.append(Prepared(path, raw, json.loads(raw)))
    return out


def resources_of(prepared: list[Prepared]) -> Iterator[dict[str, Any]]:
    for p in prepared:
        for entry in p.bundle.get("entry") or []:
            if isinstance(entry.get("resource"), dict):
                yield entry["resource"]


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


async def batch_supported(http: httpx.AsyncClient, base: str) -> tuple[bool, str]:
    """Does `POST [base]` take a one-entry batch (a harmless search)? (answer, status line)."""
    probe = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?_count=1"}}],
    }
    r = await http.post(base, content=json.dumps(probe))
    ok = r.status_code == 200 and r.json().get("type") == "batch-response"
    return ok, f"{r.status_code} {r.text[:200] if not ok else 'batch-response'}"


# ---- bundle mode -------------------------------------------------------------------------------------


async def _post_bundle(http: httpx.AsyncClient, base: str, p: Prepared) -> LoadStats:
    stats = LoadStats(bundles=1, resources=p.entries)
    stats.by_type.update(e["resource"]["resourceType"] for e in p.bundle.get("entry") or [] if "resource" in e)
    r = await http.post(base, content=p.raw)
    if r.status_code != 200:
        stats.failed = p.entries
        stats.errors.append(f"{p.path.name}: HTTP {r.status_code} {r.text[:300]}")
        return stats
    body = r.json()
    expected = p.bundle.get("type", "") + "-response"
    if body.get("type") != expected or len(body.get("entry") or []) != p.entries:
        stats.failed = p.entries
        stats.errors.append(f"{p.path.name}: got a {body.get('type')} of {len(body.get('entry') or [])} entries")
        return stats
    for i, e in enumerate(body["entry"]):
        status = str((e.get("response") or {}).get("status", ""))
        if not status[:1] == "2":
            stats.failed += 1
            if len(stats.errors) < MAX_REPORTED_ERRORS:
                detail = json.dumps((e.get("response") or {}).get("outcome") or e)[:300]
                stats.errors.append(f"{p.path.name} entry {i}: {status or 'no status'} {detail}")
    return stats


# ---- put mode (no batch/transaction support needed) -----------------------------------------------------


class _Resolver:
    """`urn:uuid:` -> `Type/id` (from the bundles' fullUrls), `Type?criteria` -> `Type/id` (one search each)."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base
        self.urns: dict[str, str] = {}
        self.conditional: dict[str, asyncio.Future[str]] = {}

    def learn(self, prepared: list[Prepared]) -> None:
        for p in prepared:
            for e in p.bundle.get("entry") or []:
                res = e.get("resource") or {}
                if str(e.get("fullUrl", "")).startswith("urn:") and res.get("id"):
                    self.urns[e["fullUrl"]] = f"{res['resourceType']}/{res['id']}"

    async def _search(self, ref: str) -> str:
        rtype, _, criteria = ref.partition("?")
        r = await self.http.get(f"{self.base}/{rtype}?{criteria}&_count=2&_total=none&_elements=id")
        r.raise_for_status()
        ids = [e["resource"]["id"] for e in r.json().get("entry") or [] if e.get("search", {}).get("mode") == "match"]
        if len(ids) != 1:
            raise RuntimeError(f"conditional reference {ref} matches {len(ids)} resources")
        return f"{rtype}/{ids[0]}"

    async def conditional_ref(self, ref: str) -> str:
        fut = self.conditional.get(ref)
        if fut is None:
            fut = self.conditional[ref] = asyncio.ensure_future(self._search(ref))
        return await fut

    async def rewrite(self, node: Any) -> Any:
        if isinstance(node, list):
            return [await self.rewrite(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                if value.startswith("urn:"):
                    value = self.urns.get(value, value)
                elif "?" in value and value.split("?", 1)[0].isalpha():
                    value = await self.conditional_ref(value)
                out[key] = value
            else:
                out[key] = await self.rewrite(value)
        return out


async def _put_bundle(http: httpx.AsyncClient, base: str, p: Prepared, resolver: _Resolver, conc: int) -> LoadStats:
    entries = [e["resource"] for e in p.bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]
    stats = LoadStats(bundles=1, resources=len(entries))
    stats.by_type.update(r["resourceType"] for r in entries)
    todo = iter(entries)

    async def worker() -> None:
        for res in todo:
            body = await resolver.rewrite(res)
            r = await http.put(f"{base}/{res['resourceType']}/{res['id']}", content=json.dumps(body))
            if r.status_code not in (200, 201):
                stats.failed += 1
                if len(stats.errors) < MAX_REPORTED_ERRORS:
                    stats.errors.append(
                        f"{p.path.name} {res['resourceType']}/{res['id']}: {r.status_code} {r.text[:300]}"
                    )

    await asyncio.gather(*(worker() for _ in range(conc)))
    return stats


# ---- driver -------------------------------------------------------------------------------------------


async def _phase(
    items: list[Prepared], conc: int, send: Callable[[Prepared], Any], label: str, quiet: bool
) -> LoadStats:
    total = LoadStats()
    todo = iter(items)
    start = time.perf_counter()

    async def worker() -> None:
        for p in todo:
            total.add(await send(p))

    await asyncio.gather(*(worker() for _ in range(conc)))
    total.seconds = time.perf_counter() - start
    if not quiet:
        print(
            f"  {label}: {total.bundles} bundles, {total.resources} resources in {total.seconds:.1f} s"
            f" = {total.rate:.0f} resources/s" + (f", {total.failed} FAILED" if total.failed else "")
        )
    return total


async def load_synthea(
    base: str,
    token: str,
    *,
    limit: int | None = None,
    concurrency: int = 4,
    mode: str = "bundle",
    fixtures: Path = FIXTURES,
    quiet: bool = False,
) -> LoadStats:
    """Load the information bundles, then `limit` patient bundles (all when None); the stats of the run.

    `mode`: "bundle" (POST [base] with each bundle as it is), "put" (one PUT per resource) or "auto"
    (bundle if the server takes a batch, else put). Failed entries are counted and the first few printed;
    nothing is raised for them."""
    base = base.rstrip("/")
    info_paths, patient_paths = bundle_files(fixtures, limit)
    info, patients = prepare(info_paths), prepare(patient_paths)
    limits = httpx.Limits(max_connections=max(concurrency, 1) * 2, max_keepalive_connections=max(concurrency, 1) * 2)
    async with httpx.AsyncClient(headers=_headers(token), timeout=REQUEST_TIMEOUT, limits=limits) as http:
        if mode in ("bundle", "auto"):
            ok, status = await batch_supported(http, base)
            if not ok:
                if mode == "bundle":
                    raise SystemExit(f"POST {base} does not take a batch bundle yet ({status}); try --mode put")
                mode = "put"
            else:
                mode = "bundle"
        if not quiet:
            print(
                f"loading {len(info)} information + {len(patients)} patient bundles,"
                f" mode {mode}, concurrency {concurrency}"
            )
        if mode == "bundle":

            async def send(p: Prepared) -> LoadStats:
                return await _post_bundle(http, base, p)

            put_conc = 1
        else:
            resolver = _Resolver(http, base)
            resolver.learn(info + patients)
            put_conc = concurrency

            async def send(p: Prepared) -> LoadStats:
                return await _put_bundle(http, base, p, resolver, put_conc)

        stats = LoadStats(mode=mode)
        # The information bundles one after the other (the patients' conditional references need them).
        stats.add(await _phase(info, 1, send, "information bundles", quiet))
        # In put mode a bundle's own resources go `concurrency` at a time: bundles go one by one.
        stats.add(await _phase(patients, 1 if mode == "put" else concurrency, send, "patient bundles", quiet))
    if not quiet:
        print(
            f"total: {stats.resources} resources in {stats.seconds:.1f} s = {stats.rate:.0f} resources/s"
            + (f"; {stats.failed} failed" if stats.failed else "")
        )
        for err in stats.errors:
            print(f"  error: {err}")
    return stats


async def refuse_non_empty(mongodb_uri: str | None, database: str = "bench") -> None:
    """Benchmarks load into `database` and never drop it: on an external MongoDB it must start empty."""
    if mongodb_uri is None:
        return  # a fresh embedded FerretDB each run
    client: AsyncIOMotorClient = AsyncIOMotorClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    try:
        names = await client[database].list_collection_names()
    finally:
        client.close()
    if names:
        raise SystemExit(
            f"database {database!r} at {mongodb_uri} is not empty ({len(names)} collections): drop it first"
        )


async def main(args: argparse.Namespace) -> None:
    fixtures = Path(args.fixtures)
    if args.base:
        token = args.token or os.environ.get("FHIR_TOKEN")
        if not token:
            raise SystemExit("--base needs --token (or FHIR_TOKEN)")
        await load_synthea(
            args.base, token, limit=args.limit, concurrency=args.concurrency, mode=args.mode, fixtures=fixtures
        )
        return
    await refuse_non_empty(args.mongodb_uri)
    async with running_server(args.mongodb_uri) as srv:
        print(f"backend: {'MongoDB' if args.mongodb_uri else 'FerretDB'} ({srv.uri}); server {srv.base}")
        await load_synthea(
            srv.base, srv.token, limit=args.limit, concurrency=args.concurrency, mode=args.mode, fixtures=fixtures
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="number of patient bundles (default: all 120)")
    ap.add_argument("--concurrency", type=int, default=4, help="bundles in flight (put mode: resources in flight)")
    ap.add_argument("--mode", choices=("bundle", "put", "auto"), default="bundle")
    ap.add_argument("--fixtures", default=str(FIXTURES))
    ap.add_argument("--base", default=None, help="load into this running server instead of starting one")
    ap.add_argument("--token", default=None, help="Bearer token for --base (default: $FHIR_TOKEN)")
    ap.add_argument("--mongodb-uri", default=None, help="start the server on this MongoDB instead of FerretDB")
    asyncio.run(main(ap.parse_args()))
