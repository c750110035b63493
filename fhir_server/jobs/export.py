"""The Bulk Data export job: NDJSON files per type, streamed, as of the job's transactionTime.

Resources last changed at or before transactionTime are streamed from the type collection in `_id`
order (constant memory, one cursor per type). Resources changed after it are exported in the version
they had at transactionTime, taken from `history`, so an export is one consistent point in time.
Finished types are recorded on the job, so a job resumed after a restart skips them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.context import ServerContext
from fhir_server.jobs.queue import JobHandle
from fhir_server.search.compartments import compartment_params
from fhir_server.search.engine import LIVE, compile_filter
from fhir_server.storage.clock import now_ms

BATCH = 500


def export_dir(ctx: ServerContext, job_id: str) -> Path:
    return ctx.settings.data_dir / "exports" / job_id


def _patient_filter(rtype: str, patient_refs: list[str] | None) -> dict[str, Any]:
    """Resources in the compartment of any patient (patient level) or of the listed ones (group level)."""
    if rtype == "Patient":
        if patient_refs is None:
            return {}
        return {"_id": {"$in": [r.split("/", 1)[1] for r in patient_refs]}}
    params = compartment_params("Patient").get(rtype, ())
    if patient_refs is None:
        clauses = [{f"i.{p}.r": {"$regex": "^Patient/"}} for p in params]
    else:
        clauses = [{f"i.{p}.r": {"$in": patient_refs}} for p in params]
    return {"$or": clauses} if clauses else {"_id": {"$exists": False}}


async def _type_filter(ctx: ServerContext, rtype: str, queries: list[str]) -> dict[str, Any]:
    if not queries:
        return {}
    alternatives = []
    for q in queries:
        compiled = await compile_filter(ctx, rtype, parse_qsl(q, keep_blank_values=True), strict=True)
        alternatives.append(compiled.flt)
    return alternatives[0] if len(alternatives) == 1 else {"$or": alternatives}


async def _write_type(
    ctx: ServerContext, job: dict[str, Any], rtype: str, flt: dict[str, Any], path: Path, handle: JobHandle
) -> int:
    t_time = job["transaction_time"]
    since = job.get("since")
    lu_range: dict[str, Any] = {"$lte": t_time}
    if since is not None:
        lu_range["$gte"] = since
    coll = ctx.database.resources(rtype)
    count = 0
    with path.open("wb") as out:
        cursor = coll.find({"$and": [LIVE, flt, {"lu": lu_range}]}, {"res": 1}).sort("_id", 1).batch_size(BATCH)
        async for doc in cursor:
            out.write(orjson.dumps(doc["res"]) + b"\n")
            count += 1
            if count % 5000 == 0:
                await handle.update(progress=f"{rtype}: {count} resources")
        # Changed after transactionTime: the version current at transactionTime, if it was in range.
        changed = coll.find({"$and": [flt, {"lu": {"$gt": t_time}}]}, {"_id": 1}).batch_size(BATCH)
        async for doc in changed:
            older = await ctx.database.history.find_one(
                {"t": rtype, "id": doc["_id"], "lu": {"$lte": t_time}}, sort=[("lu", -1)]
            )
            if older and older.get("res") and (since is None or older["lu"] >= since):
                out.write(orjson.dumps(older["res"]) + b"\n")
                count += 1
    return count


async def run_export(ctx: ServerContext, job: dict[str, Any], handle: JobHandle) -> None:
    job_id = job["_id"]
    directory = export_dir(ctx, job_id)
    directory.mkdir(parents=True, exist_ok=True)
    outputs: list[dict[str, Any]] = list(job.get("outputs", []))
    done = {o["type"] for o in outputs} | set(job.get("empty_types", []))
    empty = list(job.get("empty_types", []))
    patient_refs = job.get("patient_refs")
    level = job["level"]
    for n, rtype in enumerate(job["types"]):
        if rtype in done:
            continue
        await handle.update(progress=f"exporting {rtype} ({n + 1}/{len(job['types'])} types)")
        flt_parts = [await _type_filter(ctx, rtype, job.get("type_filters", {}).get(rtype, []))]
        if level in ("patient", "group"):
            flt_parts.append(_patient_filter(rtype, patient_refs if level == "group" else None))
        flt_parts = [f for f in flt_parts if f]
        flt = {"$and": flt_parts} if flt_parts else {}
        path = directory / f"{rtype}.ndjson"
        count = await _write_type(ctx, job, rtype, flt, path, handle)
        if count:
            outputs.append({"type": rtype, "file": path.name, "count": count})
        else:
            path.unlink(missing_ok=True)
            empty.append(rtype)
        await handle.update(outputs=outputs, empty_types=empty)
    await handle.update(state="complete", finished=now_ms(), progress="complete")


async def purge_expired(ctx: ServerContext) -> None:
    """Delete exports older than the retention period (files and job)."""
    from datetime import timedelta

    from fhir_server.jobs.queue import JOBS

    before = now_ms() - timedelta(hours=ctx.settings.export_retention_hours)
    jobs = ctx.database.db[JOBS]
    async for job in jobs.find({"kind": "export", "finished": {"$lt": before}}, {"_id": 1}):
        shutil.rmtree(export_dir(ctx, job["_id"]), ignore_errors=True)
        await jobs.delete_one({"_id": job["_id"]})
