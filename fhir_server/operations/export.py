"""Bulk Data Access (HL7 FHIR Bulk Data IG v2): $export at system, Patient and Group level.

Kick-off (`Prefer: respond-async`) answers 202 with Content-Location, the status URL. Polling it
answers 202 with X-Progress and Retry-After while the job runs, then 200 with the manifest; DELETE
cancels and removes the files. Files are served with the same authorisation as the kick-off. The
work itself is a job (jobs/export.py) any server instance may run.
"""

from __future__ import annotations

import shutil
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from fhir_server.auth.scopes import allows
from fhir_server.context import ServerContext, resource_id_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response
from fhir_server.interactions.history import parse_since
from fhir_server.jobs.export import export_dir
from fhir_server.search.compartments import compartment_params
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.validation import is_known_type

NDJSON_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
SUPPORTED_PARAMS = {"_type", "_since", "_typeFilter", "_outputFormat"}


def _client(request: Request) -> str | None:
    access = getattr(request.state, "access", None)
    return access.client_id if access else None


def _requested_types(request: Request, level: str, known: list[str]) -> list[str]:
    raw = [t.strip() for v in request.query_params.getlist("_type") for t in v.split(",") if t.strip()]
    for t in raw:
        if not is_known_type(t):
            raise FHIRError(400, f"_type: unknown resource type {t!r}", code="invalid")
    if level != "system":
        members = set(compartment_params("Patient")) | {"Patient"}
        raw = [t for t in raw if t in members] if raw else sorted(members)
    types = sorted(set(raw)) if raw else known
    return types


def _check_scopes(request: Request, types: list[str]) -> None:
    access = getattr(request.state, "access", None)
    if access is None:
        return
    denied = [t for t in types if not allows(access.scopes, t, "r")]
    if denied:
        raise FHIRError(403, f"the token cannot read {', '.join(denied[:5])}", code="forbidden")


async def _group_members(ctx: ServerContext, group_id: str) -> list[str]:
    group = await ctx.store.read("Group", group_id)
    members = [m.get("entity", {}).get("reference", "") for m in (group.resource or {}).get("member", [])]
    return [m for m in members if m.startswith("Patient/")]


async def _kickoff(request: Request, level: str, group_id: str | None = None) -> Response:
    ctx = server(request)
    if "respond-async" not in request.headers.get("prefer", ""):
        raise FHIRError(400, "$export is asynchronous: send Prefer: respond-async", code="invalid")
    unknown = [k for k in request.query_params if k not in SUPPORTED_PARAMS and k not in ("_format", "_pretty")]
    if unknown:
        raise FHIRError(400, f"unsupported $export parameter(s): {', '.join(unknown)}", code="not-supported")
    fmt = request.query_params.get("_outputFormat", "application/fhir+ndjson")
    if fmt not in NDJSON_FORMATS:
        raise FHIRError(400, f"_outputFormat {fmt!r} is not supported: use application/fhir+ndjson", code="invalid")
    known = await ctx.database.type_collections()
    types = _requested_types(request, level, known)
    _check_scopes(request, types)
    type_filters: dict[str, list[str]] = {}
    for value in request.query_params.getlist("_typeFilter"):
        for item in value.split(","):
            rtype, _, query = item.partition("?")
            if not is_known_type(rtype) or not query:
                raise FHIRError(400, f"_typeFilter {item!r}: expected Type?search-parameters", code="invalid")
            type_filters.setdefault(rtype, []).append(query)
    patient_refs = await _group_members(ctx, group_id) if group_id else None
    since = parse_since(request.query_params.get("_since"))
    job_id = await request.app.state.jobs.submit(
        "export",
        level=level,
        types=types,
        type_filters=type_filters,
        since=since,
        patient_refs=patient_refs,
        transaction_time=now_ms(),
        request_url=str(request.url),
        client_id=_client(request),
    )
    status_url = f"{ctx.base_url}/$export-status/{job_id}"
    return Response(status_code=202, headers={"Content-Location": status_url})


async def export_system(request: Request) -> Response:
    return await _kickoff(request, "system")


async def export_patients(request: Request) -> Response:
    return await _kickoff(request, "patient")


async def export_group(request: Request) -> Response:
    return await _kickoff(request, "group", resource_id_of(request))


async def _owned_job(request: Request) -> dict[str, Any]:
    job = await request.app.state.jobs.get(request.path_params["job"])
    if job is None or job.get("kind") != "export" or job.get("state") == "cancelled":
        raise FHIRError(404, "no such export", code="not-found")
    if job.get("client_id") not in (None, _client(request)):
        raise FHIRError(404, "no such export", code="not-found")  # do not reveal others' exports
    return job


def _manifest(ctx: ServerContext, job: dict[str, Any]) -> dict[str, Any]:
    base = f"{ctx.base_url}/$export-file/{job['_id']}"
    return {
        "transactionTime": fhir_instant(job["transaction_time"]),
        "request": job["request_url"],
        "requiresAccessToken": True,
        "output": [{"type": o["type"], "url": f"{base}/{o['file']}", "count": o["count"]} for o in job["outputs"]]
        if job.get("outputs")
        else [],
        "error": [],
    }


async def export_status(request: Request) -> Response:
    ctx = server(request)
    job = await _owned_job(request)
    state = job["state"]
    if state == "complete":
        return fhir_response(_manifest(ctx, job), 200)
    if state == "failed":
        raise FHIRError(500, f"the export failed: {job.get('error', 'unknown error')}", code="exception")
    progress = job.get("progress") or state
    return Response(status_code=202, headers={"X-Progress": progress[:100], "Retry-After": "2"})


async def export_delete(request: Request) -> Response:
    ctx = server(request)
    job = await _owned_job(request)
    await request.app.state.jobs.collection.update_one(
        {"_id": job["_id"]}, {"$set": {"state": "cancelled", "finished": now_ms()}}
    )
    shutil.rmtree(export_dir(ctx, job["_id"]), ignore_errors=True)
    return Response(status_code=202)


async def export_file(request: Request) -> Response:
    ctx = server(request)
    job = await _owned_job(request)
    name = request.path_params["name"]
    if job["state"] != "complete" or name not in {o["file"] for o in job.get("outputs", [])}:
        raise FHIRError(404, "no such export file", code="not-found")
    return FileResponse(export_dir(ctx, job["_id"]) / name, media_type="application/fhir+ndjson")
