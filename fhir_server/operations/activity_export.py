"""`GET [base]/$activity-export`: the téléexpertise activity data (CCTP §3.1.3.5), CSV or JSON, streamed.

    $activity-export?start=2025-01-01&end=2025-01-31[&_format=csv|json]
        one row per addressee Task of the dossiers created in [start, end] (dates are Paris days, `end`
        included; dateTimes with an offset are taken as given), 13 columns (teleexpertise/activity.py);
        no patient data.
    $activity-export?report=monthly-active-users&month=2025-01            (or &start=2025-01&end=2025-06)
        the distinct users who logged in during each month: a MeasureReport (a Bundle of them for a range)
        in JSON, `mois,utilisateurs_actifs` lines in CSV.

Format: `_format=csv` (or `text/csv`) / `_format=json`, else `Accept: text/csv`, else JSON.

Who may call it: a token with `system/` scopes reading the types the report is built from (ServiceRequest
and Task; AuditEvent for the monthly active users): a BI connector with backend-services credentials, or
an administrator's user token whose `fhirUser` holds a téléexpertise `admin-regional` PractitionerRole
(everything) or `admin-local` (the rows and users of their structures only). Anyone else: 403. The call is
audited like any interaction (AuditEvent `operation`, query kept).

Output is streamed row by row from a database cursor (a month of a whole region can be large); parameters
and access are checked before the first byte, so every refusal is an OperationOutcome.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from fhir_server.auth.scopes import allows
from fhir_server.context import ServerContext, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, wants_pretty
from fhir_server.teleexpertise import activity

CSV_FORMATS = frozenset({"csv", "text/csv"})
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
FORMAT_STATE = "activity_format"
Endpoint = Callable[[Request], Awaitable[Response]]


def accepting_csv(endpoint: Endpoint) -> Endpoint:
    """The route's endpoint with `_format=csv` moved aside before the FHIR wrapper, whose format check
    knows only FHIR formats; the operation reads it back from the request state, and the audited query
    keeps it as `format=csv`."""

    async def inner(request: Request) -> Response:
        fmt = request.query_params.get("_format")
        if fmt is not None and fmt.split(";")[0].strip().lower() in CSV_FORMATS:
            items = [("format" if k == "_format" else k, v) for k, v in request.query_params.multi_items()]
            scope = dict(request.scope)
            scope["query_string"] = urlencode(items).encode()
            scope.setdefault("state", {})[FORMAT_STATE] = "csv"
            request = Request(scope, request.receive)
        return await endpoint(request)

    return inner


def route(prefix: str, wrap: Callable[[Endpoint, str], Endpoint]) -> Route:
    """The route, wrapped by app.fhir_endpoint (`wrap`) with the "export" action: the token is verified
    there, and the scopes the report needs are checked here."""
    return Route(prefix + "/$activity-export", accepting_csv(wrap(activity_export, "export")), methods=["GET"])


def _format(request: Request) -> str:
    if request.scope.get("state", {}).get(FORMAT_STATE) == "csv":
        return "csv"
    fmt = request.query_params.get("_format")
    if fmt is not None:
        return "json"  # the wrapper let only JSON formats through
    accept = {part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")}
    return "csv" if "text/csv" in accept else "json"


async def _scope(ctx: ServerContext, request: Request, types: tuple[str, ...]) -> frozenset[str] | None:
    """None for the whole region; a set of structures for a local administrator; 403 otherwise."""
    access = getattr(request.state, "access", None)
    if access is None:
        return None  # authorisation is off (tests, benchmarks)
    if access.patient:
        raise FHIRError(403, "$activity-export is not available to a patient-context token", code="forbidden")
    system_scopes = frozenset(s for s in access.scopes if s.startswith("system/"))
    if all(allows(system_scopes, t, "r") for t in types):
        return None
    if not all(allows(access.scopes, t, "r") for t in types):
        raise FHIRError(403, f"$activity-export needs read access to {', '.join(types)}", code="forbidden")
    from fhir_server.auth.policy import dossier_principal, request_policy

    principal = await dossier_principal(ctx, request_policy(request))
    if principal is not None and principal.regional_admin:
        return None
    if principal is not None and principal.admin_structures:
        return frozenset(principal.admin_structures)
    raise FHIRError(
        403, "$activity-export is for system clients and téléexpertise administrators (local or regional)",
        code="forbidden",
    )  # fmt: skip


async def activity_export(request: Request) -> Response:
    ctx = server(request)
    params = request.query_params
    known = {"start", "end", "report", "month", "_format", "format", "_pretty"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise FHIRError(400, f"unknown parameter(s) {', '.join(unknown)}", code="not-supported")
    fmt = _format(request)
    report = params.get("report")
    if report == "monthly-active-users":
        return await _monthly_active_users(ctx, request, fmt)
    if report not in (None, "", "addressees"):
        raise FHIRError(400, f"report {report!r} is not known (addressees | monthly-active-users)", code="invalid")
    if not params.get("start"):
        raise FHIRError(400, "start (a date or dateTime) is required", code="required")
    start = activity.instant(params["start"])
    end = activity.instant(params["end"], end=True) if params.get("end") else datetime.now(UTC)
    if end <= start:
        raise FHIRError(400, "end is before start", code="invalid")
    structures = await _scope(ctx, request, ("ServiceRequest", "Task"))
    rows = activity.activity_rows(ctx, start, end, structures)
    stamp = f"{params['start']}_{params.get('end') or 'now'}".replace(":", "")
    if fmt == "csv":
        headers = {"Content-Disposition": f'attachment; filename="activite-teleexpertise-{stamp}.csv"'}
        return StreamingResponse(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
    meta = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "columns": [{"name": key, "title": title} for key, title in activity.COLUMNS],
    }
    return StreamingResponse(_json(meta, rows), media_type="application/json")


async def _csv(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([key for key, _ in activity.COLUMNS])
    count = 0
    async for row in rows:
        writer.writerow(activity.flat(row))
        count += 1
        if count % 200 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


async def _json(meta: dict[str, Any], rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    yield orjson.dumps(meta)[:-1] + b',"rows":['
    first = True
    async for row in rows:
        yield (b"" if first else b",") + orjson.dumps(row)
        first = False
    yield b"]}"


async def _monthly_active_users(ctx: ServerContext, request: Request, fmt: str) -> Response:
    params = request.query_params
    if params.get("month"):
        wanted = activity.months(params["month"], params["month"])
    elif params.get("start"):
        wanted = activity.months(params["start"], params.get("end") or params["start"])
    else:
        raise FHIRError(400, "month=YYYY-MM (or start=YYYY-MM&end=YYYY-MM) is required", code="required")
    structures = await _scope(ctx, request, ("AuditEvent",))
    users = await activity.structure_users(ctx, structures) if structures is not None else None
    trail = getattr(ctx, "audit", None)
    if trail is not None:
        await trail.drain()  # logins answered before this request are counted
    counts = [(month, await activity.monthly_active_users(ctx, month, users)) for month in wanted]
    if fmt == "csv":
        lines = ["mois,utilisateurs_actifs", *(f"{month},{count}" for month, count in counts)]
        return Response("\r\n".join(lines) + "\r\n", media_type="text/csv; charset=utf-8")
    reporter = sorted(structures)[0] if structures else None
    reports = [activity.measure_report(ctx, month, count, reporter) for month, count in counts]
    if len(reports) == 1:
        return fhir_response(reports[0], pretty=wants_pretty(request))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in reports],
    }
    return fhir_response(bundle, pretty=wants_pretty(request))
