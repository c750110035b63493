"""history: GET [base]/_history, [base]/[type]/_history, [base]/[type]/[id]/_history (_since, _count)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_visible, forbid_unconfined, restricted_patient
from fhir_server.context import query_items, resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, http_date, wants_pretty
from fhir_server.paging import CURSOR_PARAM, decode_cursor, encode_cursor, page_url, parse_count
from fhir_server.storage.store import fhir_instant, now_ms

METHODS = {"create": "POST", "update": "PUT", "delete": "DELETE"}


def parse_since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise FHIRError(400, f"_since must be a FHIR instant, not {raw!r}", code="invalid") from None
    if since.tzinfo is None:
        raise FHIRError(400, "_since must carry a time zone (an instant)", code="invalid")
    return since


def _entry(doc: dict[str, Any], base_url: str) -> dict[str, Any]:
    rtype, rid, version = doc["t"], doc["id"], doc["v"]
    url = f"{rtype}/{rid}" if doc["op"] != "create" else rtype
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{rtype}/{rid}"}
    if doc.get("res") is not None:
        entry["resource"] = doc["res"]
    entry["request"] = {"method": METHODS[doc["op"]], "url": url}
    status = {"create": "201 Created", "update": "200 OK", "delete": "204 No Content"}[doc["op"]]
    entry["response"] = {"status": status, "etag": f'W/"{version}"', "lastModified": fhir_instant(doc["lu"])}
    return entry


async def _history(request: Request, rtype: str | None, rid: str | None) -> Response:
    ctx = server(request)
    params = query_items(request)
    q = request.query_params
    count = parse_count(q.get("_count"), ctx.settings.default_count, ctx.settings.max_count)
    since = parse_since(q.get("_since"))
    after = None
    if CURSOR_PARAM in q:
        lu_iso, last_id = decode_cursor(q[CURSOR_PARAM])
        after = (datetime.fromisoformat(lu_iso), last_id)
    if rtype and rid:
        if await ctx.store.current(rtype, rid) is None:
            raise FHIRError(404, f"{rtype}/{rid} is not known", code="not-found")
    docs = await ctx.store.history(resource_type=rtype, rid=rid, since=since, after=after, count=count + 1)
    more = len(docs) > count
    docs = docs[:count]
    path = "/".join(p for p in (rtype, rid, "_history") if p)
    self_base = f"{ctx.base_url}/{path}"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "meta": {"lastUpdated": fhir_instant(now_ms())},
        "total": await ctx.store.history_total(resource_type=rtype, rid=rid, since=since),
        "link": [{"relation": "self", "url": page_url(self_base, params, q.get(CURSOR_PARAM))}],
        "entry": [_entry(d, ctx.base_url) for d in docs],
    }
    if more and docs:
        last = docs[-1]
        cursor = encode_cursor([last["lu"].isoformat(), last["_id"]])
        bundle["link"].append({"relation": "next", "url": page_url(self_base, params, cursor)})
    headers = {"Last-Modified": http_date(docs[0]["lu"])} if docs else None
    return fhir_response(bundle, 200, headers, pretty=wants_pretty(request))


async def system_history(request: Request) -> Response:
    forbid_unconfined(request, "system history")
    return await _history(request, None, None)


async def type_history(request: Request) -> Response:
    forbid_unconfined(request, "type history")
    return await _history(request, resource_type_of(request), None)


async def instance_history(request: Request) -> Response:
    rtype, rid = resource_type_of(request), resource_id_of(request)
    if restricted_patient(request):
        current = await server(request).store.current(rtype, rid)
        check_visible(server(request), request, rtype, (current or {}).get("res"))
    return await _history(request, rtype, rid)
