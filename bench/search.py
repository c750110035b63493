"""Search benchmark on Synthea: our HTTP search against the same query sent raw with motor.

    .venv/bin/python bench/search.py [--patients N] [--runs R] [--count C] [--mongodb-uri URI]
                                     [--load-mode bundle|put|auto] [--concurrency K]

Loads the Synthea fixtures (bench/load_synthea.py: the information bundles, then N patient bundles,
all 120 by default), then for each query shape prints the p50 over R runs of
  raw    the equivalent motor queries on the same database: the filter our server builds
         (fhir_server.search.query.build_filter + the live clause, chains and _has resolved the way
         search/engine.py does), sorted as we sort, limit C+1, plus the include queries;
  ours   GET [base]/[type]?...&_count=C as a client sends it (the default `_total=accurate` counts
         every match), and the same with `_total=none`;
and the ratios ours ÷ raw, whether both returned the same page, and the raw query's explain()
(FerretDB: its SQLite plan and pushdown flags; MongoDB: the winning plan's stages and index names).
Then full paging throughput: follow `next` links over a token search against one raw cursor over the
same filter, resources/s. Time is printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import running_server
from bench.load_synthea import FIXTURES, bundle_files, load_synthea, prepare, refuse_non_empty, resources_of
from fhir_server.search.common import all_of, normalize
from fhir_server.search.engine import LIVE, MAX_JOIN_IDS
from fhir_server.search.includes import MAX_INCLUDED
from fhir_server.search.query import build_filter
from fhir_server.search.registry import load_registry
from fhir_server.search.sorting import mongo_sort, parse_sort

LOINC = "http://loinc.org"
REGISTRY = load_registry()


# ---- what to search for: picked from the bundles that were loaded ------------------------------------


@dataclass
class Picks:
    code: str  # the most common LOINC code of Observation.code
    code_count: int
    family_prefix: str  # the most common 3-letter prefix of Patient family names
    prefix_count: int
    date_year_count: int  # Observations with effectiveDateTime in 2015


def pick_values(resources: list[dict[str, Any]]) -> Picks:
    codes: Counter[str] = Counter()
    prefixes: Counter[str] = Counter()
    in_2015 = 0
    for res in resources:
        rtype = res.get("resourceType")
        if rtype == "Observation":
            for c in (res.get("code") or {}).get("coding") or []:
                if c.get("system") == LOINC and c.get("code"):
                    codes[c["code"]] += 1
            in_2015 += str(res.get("effectiveDateTime", "")).startswith("2015")
        elif rtype == "Patient":
            for name in res.get("name") or []:
                family = normalize(str(name.get("family") or ""))
                if len(family) >= 3:
                    prefixes[family[:3]] += 1
    if not codes or not prefixes:
        raise SystemExit("the selected bundles hold no LOINC-coded Observation or no named Patient: load more")
    (code, code_count), (prefix, prefix_count) = codes.most_common(1)[0], prefixes.most_common(1)[0]
    return Picks(code, code_count, prefix, prefix_count, in_2015)


# ---- raw side ---------------------------------------------------------------------------------------


def plain_filter(rtype: str, params: list[tuple[str, str]], base: str) -> dict[str, Any]:
    """What compile_filter sends for parameters without chains: the live clause AND build_filter's."""
    flt, unknown, deferred = build_filter(rtype, params, REGISTRY, base)
    if unknown or deferred:
        raise SystemExit(f"bench bug: {params} has unknown {unknown} / deferred {deferred}")
    return all_of([LIVE, flt])


@dataclass
class RawPlan:
    """The main query of a shape (explained), how to build it, and its include steps."""

    rtype: str
    sort: list[tuple[str, int]]
    prepare: Callable[[AsyncIOMotorDatabase], Awaitable[dict[str, Any]]]  # -> the main filter
    include: Callable[[AsyncIOMotorDatabase, list[dict[str, Any]]], Awaitable[list[str]]] | None = None


@dataclass
class Shape:
    name: str
    rtype: str
    params: list[tuple[str, str]]
    raw: RawPlan


async def raw_page(db: AsyncIOMotorDatabase, plan: RawPlan, count: int) -> tuple[list[str], list[str], dict]:
    """(match ids of the first page, included 'Type/id's, main filter): what our server fetches."""
    flt = await plan.prepare(db)
    proj = {"res": 1, "i": 1, **{f: 1 for f, _ in plan.sort}}
    docs = await db[plan.rtype].find(flt, proj).sort(plan.sort).limit(count + 1).to_list(count + 1)
    page = docs[:count]
    included = await plan.include(db, page) if plan.include else []
    return [d["_id"] for d in page], included, flt


def shapes(p: Picks, base: str) -> list[Shape]:
    code = f"{LOINC}|{p.code}"
    by_id = [("_id", 1)]
    out: list[Shape] = []

    def simple(name: str, rtype: str, params: list[tuple[str, str]], sort: list[tuple[str, int]] = by_id) -> Shape:
        async def prep(db: AsyncIOMotorDatabase) -> dict[str, Any]:
            return plain_filter(rtype, params, base)

        return Shape(name, rtype, params, RawPlan(rtype, sort, prep))

    out.append(simple("token", "Observation", [("code", code)]))
    out.append(simple("string", "Patient", [("name", p.family_prefix)]))
    out.append(simple("date range", "Observation", [("date", "ge2015-01-01"), ("date", "lt2016-01-01")]))

    # Chain: the inner search's ids (engine.matching_ids), then an $in on the reference.
    async def chain(db: AsyncIOMotorDatabase) -> dict[str, Any]:
        inner = plain_filter("Patient", [("name", p.family_prefix)], base)
        ids = [d["_id"] async for d in db.Patient.find(inner, {"_id": 1}).limit(MAX_JOIN_IDS + 1)]
        return all_of([LIVE, {"i.subject.r": {"$in": [f"Patient/{i}" for i in ids]}}])

    out.append(
        Shape("chain", "Observation", [("subject:Patient.name", p.family_prefix)], RawPlan("Observation", by_id, chain))
    )

    # _include: the page's subject references, then one `_id $in` per target type (includes._fetch).
    async def include_subject(db: AsyncIOMotorDatabase, page: list[dict[str, Any]]) -> list[str]:
        refs = {r for d in page for r in ((d.get("i") or {}).get("subject") or {}).get("r", [])}
        ids = [r.split("/", 1)[1] for r in refs if r.startswith("Patient/")]
        found = db.Patient.find({"$and": [LIVE, {"_id": {"$in": ids}}]}, {"res": 1, "i": 1})
        return sorted([f"Patient/{d['_id']}" async for d in found])

    token = out[0]
    out.append(
        Shape(
            "_include",
            "Observation",
            [("code", code), ("_include", "Observation:subject")],
            RawPlan("Observation", by_id, token.raw.prepare, include_subject),
        )
    )

    # _revinclude: one query on the referencing type's index (includes._revincluded).
    async def revinclude_conditions(db: AsyncIOMotorDatabase, page: list[dict[str, Any]]) -> list[str]:
        refs = [f"Patient/{d['_id']}" for d in page]
        flt = {"$and": [LIVE, {"i.patient.r": {"$in": refs}}]}
        found = db.Condition.find(flt, {"res": 1, "i": 1}).limit(MAX_INCLUDED + 1)
        return sorted([f"Condition/{d['_id']}" async for d in found])

    string = out[1]
    out.append(
        Shape(
            "_revinclude",
            "Patient",
            [("name", p.family_prefix), ("_revinclude", "Condition:patient")],
            RawPlan("Patient", by_id, string.raw.prepare, revinclude_conditions),
        )
    )

    sort = mongo_sort(parse_sort("-date", "Observation", REGISTRY))
    out.append(simple("_sort=-date", "Observation", [("code", code), ("_sort", "-date")], sort))

    # _has: distinct references of the matching Observations, then an $in on _id (engine._reverse_chain).
    async def has(db: AsyncIOMotorDatabase) -> dict[str, Any]:
        refs = await db.Observation.distinct("i.subject.r", plain_filter("Observation", [("code", code)], base))
        ids = [r[len("Patient/") :] for r in refs if isinstance(r, str) and r.startswith("Patient/")]
        return all_of([LIVE, {"_id": {"$in": ids}}])

    out.append(Shape("_has", "Patient", [("_has:Observation:subject:code", code)], RawPlan("Patient", by_id, has)))
    return out


# ---- ours -------------------------------------------------------------------------------------------


async def our_page(
    http: httpx.AsyncClient, shape: Shape, count: int, total: str | None
) -> tuple[list[str], list[str], int | None]:
    params = [*shape.params, ("_count", str(count))] + ([("_total", total)] if total else [])
    r = await http.get(shape.rtype, params=params)
    if r.status_code != 200:
        raise RuntimeError(f"{shape.name}: HTTP {r.status_code} {r.text[:400]}")
    body = r.json()
    matches, included = [], []
    for e in body.get("entry") or []:
        mode = (e.get("search") or {}).get("mode")
        res = e["resource"]
        if mode == "match":
            matches.append(res["id"])
        elif mode == "include":
            included.append(f"{res['resourceType']}/{res['id']}")
    return matches, sorted(included), body.get("total")


# ---- explain ----------------------------------------------------------------------------------------


def _walk_plan(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        stage = node.get("stage")
        if stage:
            out.append(stage + (f"({node['indexName']})" if node.get("indexName") else ""))
        for key in ("inputStage", "queryPlan", "winningPlan"):
            if key in node:
                _walk_plan(node[key], out)
        for child in node.get("inputStages") or []:
            _walk_plan(child, out)


async def explain(db: AsyncIOMotorDatabase, rtype: str, flt: dict, sort: list[tuple[str, int]], limit: int) -> str:
    cmd = {"find": rtype, "filter": flt, "sort": dict(sort), "limit": limit}
    try:
        r = await db.command({"explain": cmd, "verbosity": "queryPlanner"})
    except Exception as exc:  # explain is informative only
        return f"explain failed: {exc}"
    if "ferretdbVersion" in (r.get("serverInfo") or {}) or "filterPushdown" in r:
        plan = (r.get("queryPlanner") or {}).get("Plan")
        flags = {k: r[k] for k in ("filterPushdown", "sortPushdown", "limitPushdown") if k in r}
        return f"FerretDB {plan} {flags}"
    stages: list[str] = []
    _walk_plan((r.get("queryPlanner") or {}).get("winningPlan") or {}, stages)
    return "MongoDB winning plan: " + " <- ".join(stages)


def _short(flt: Any, width: int = 220) -> str:
    text = json.dumps(flt, default=str)
    if len(text) <= width:
        return text
    return text[: width - 20] + f"… ({len(text)} chars)"


# ---- measuring --------------------------------------------------------------------------------------


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def measure_shape(
    http: httpx.AsyncClient, db: AsyncIOMotorDatabase, shape: Shape, count: int, runs: int
) -> dict[str, Any]:
    t_raw: list[float] = []
    t_ours: list[float] = []
    t_none: list[float] = []
    raw_ids: list[str] = []
    raw_inc: list[str] = []
    flt: dict = {}
    ours: tuple[list[str], list[str], int | None] = ([], [], None)
    for run in range(runs + 1):  # run 0 warms up and is not counted
        t = time.perf_counter()
        raw_ids, raw_inc, flt = await raw_page(db, shape.raw, count)
        dt_raw = time.perf_counter() - t
        t = time.perf_counter()
        ours = await our_page(http, shape, count, None)
        dt_ours = time.perf_counter() - t
        t = time.perf_counter()
        await our_page(http, shape, count, "none")
        dt_none = time.perf_counter() - t
        if run:
            t_raw.append(dt_raw)
            t_ours.append(dt_ours)
            t_none.append(dt_none)
    same = ours[0] == raw_ids and ours[1] == raw_inc
    return {
        "shape": shape,
        "raw": p50(t_raw),
        "ours": p50(t_ours),
        "none": p50(t_none),
        "matches": len(raw_ids),
        "included": len(raw_inc),
        "total": ours[2],
        "same": same,
        "filter": flt,
        "explain": await explain(db, shape.rtype, flt, shape.raw.sort, count + 1),
    }


async def follow_next(http: httpx.AsyncClient, shape: Shape, params: list[tuple[str, str]], max_pages: int) -> int:
    """Page through a search by its `next` links (at most max_pages requests); the matches seen."""
    url: str | None = str(http.build_request("GET", shape.rtype, params=[*shape.params, *params]).url)
    seen = pages = 0
    while url and pages < max_pages:
        r = await http.get(url)
        r.raise_for_status()
        body = r.json()
        seen += sum(1 for e in body.get("entry") or [] if (e.get("search") or {}).get("mode") == "match")
        url = next((ln["url"] for ln in body.get("link") or [] if ln["relation"] == "next"), None)
        pages += 1
    return seen


async def paging(http: httpx.AsyncClient, db: AsyncIOMotorDatabase, shape: Shape, page_size: int) -> dict[str, Any]:
    """Resources/s: one raw cursor over the filter; our pages with the default _total, and with _total=none."""
    flt = await shape.raw.prepare(db)
    t = time.perf_counter()
    raw_n = 0
    async for _ in db[shape.rtype].find(flt, {"res": 1, "i": 1}).sort(shape.raw.sort):
        raw_n += 1
    out: dict[str, Any] = {"raw_n": raw_n, "raw": raw_n / (time.perf_counter() - t)}
    max_pages = math.ceil(raw_n / page_size) + 2  # bounded: a server that loops cannot hang the bench
    for key, extra in (("ours", []), ("none", [("_total", "none")])):
        t = time.perf_counter()
        out[f"{key}_n"] = await follow_next(http, shape, [("_count", str(page_size)), *extra], max_pages)
        out[key] = out[f"{key}_n"] / (time.perf_counter() - t)
    return out


async def main(args: argparse.Namespace) -> None:
    info_paths, patient_paths = bundle_files(Path(args.fixtures), args.patients)
    picks = pick_values(list(resources_of(prepare(info_paths + patient_paths))))
    await refuse_non_empty(args.mongodb_uri)
    async with running_server(args.mongodb_uri) as srv:
        backend = "MongoDB" if args.mongodb_uri else "FerretDB v1.24 (SQLite)"
        print(
            f"backend: {backend} {srv.uri}; {len(patient_paths)} patient bundles; runs={args.runs} count={args.count}"
        )
        stats = await load_synthea(
            srv.base, srv.token, limit=args.patients, concurrency=args.concurrency, mode=args.load_mode,
            fixtures=Path(args.fixtures),
        )  # fmt: skip
        db = AsyncIOMotorClient(srv.uri, tz_aware=True)["bench"]
        counts = {t: await db[t].count_documents({}) for t in ("Patient", "Observation", "Condition")}
        print(f"stored: {counts}; load {stats.rate:.0f} resources/s ({stats.mode})")
        print(
            f"picked: code {LOINC}|{picks.code} ({picks.code_count} Observations), family prefix "
            f"{picks.family_prefix!r} ({picks.prefix_count} names), {picks.date_year_count} Observations in 2015"
        )
        headers = {"Authorization": f"Bearer {srv.token}"}
        timeout = httpx.Timeout(600.0, connect=10.0)
        async with httpx.AsyncClient(base_url=srv.base + "/", headers=headers, timeout=timeout) as http:
            print(
                f"\n{'shape':<12} | {'raw p50':>9} | {'ours p50':>9} | {'ratio':>6} |"
                f" {'_total=none':>11} | {'ratio':>6} | page (+incl) | total | same"
            )
            results = []
            for shape in shapes(picks, srv.base):
                try:
                    res = await measure_shape(http, db, shape, args.count, args.runs)
                except RuntimeError as exc:
                    print(f"{shape.name:<12} | FAILED: {exc}")
                    continue
                results.append(res)
                print(
                    f"{shape.name:<12} | {res['raw']:7.1f}ms | {res['ours']:7.1f}ms | {res['ours'] / res['raw']:6.2f} |"
                    f" {res['none']:9.1f}ms | {res['none'] / res['raw']:6.2f} |"
                    f" {res['matches']:>4} (+{res['included']:>3}) | {res['total']!s:>5} |"
                    f" {'yes' if res['same'] else 'NO'}"
                )
            print("\nqueries (raw filter as sent; explain of the raw main query):")
            for res in results:
                shape = res["shape"]
                query = "&".join(f"{k}={v}" for k, v in shape.params)
                print(f"- {shape.name}: {shape.rtype}?{query}")
                print(f"    filter:  {_short(res['filter'])}  sort {shape.raw.sort}")
                print(f"    explain: {res['explain']}")
            print(f"\npaging: follow next links (_count={args.page_size}) vs one raw cursor over the same filter")
            for shape in (s for s in shapes(picks, srv.base) if s.name in ("token", "_sort=-date")):
                pg = await paging(http, db, shape, args.page_size)
                ok = pg["ours_n"] == pg["none_n"] == pg["raw_n"]
                print(
                    f"{shape.name:<12} | raw {pg['raw']:8.0f}/s |"
                    f" ours {pg['ours']:8.0f}/s ratio {pg['ours'] / pg['raw']:.2f}"
                    f" | _total=none {pg['none']:8.0f}/s ratio {pg['none'] / pg['raw']:.2f} | {pg['raw_n']} resources"
                    + ("" if ok else f" MISMATCH: ours {pg['ours_n']}, _total=none {pg['none_n']}")
                )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=None, help="patient bundles to load (default: all)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per shape (after one warm-up)")
    ap.add_argument("--count", type=int, default=20, help="page size of the first-page measurements")
    ap.add_argument("--page-size", type=int, default=20, help="page size when paging through everything")
    ap.add_argument("--concurrency", type=int, default=2, help="bundles loaded at once")
    ap.add_argument("--load-mode", choices=("bundle", "put", "auto"), default="auto")
    ap.add_argument("--fixtures", default=str(FIXTURES))
    ap.add_argument("--mongodb-uri", default=None)
    asyncio.run(main(ap.parse_args()))
