"""search: GET/POST [base]/[type]?params and [base]/[type]/_search, answered with a searchset Bundle."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import ServerContext, query_items, resource_type_of, server
from fhir_server.errors import FHIRError, operation_outcome
from fhir_server.http import fhir_response, prefer_handling, wants_pretty
from fhir_server.paging import CURSOR_PARAM, decode_cursor, encode_cursor, page_url, parse_count
from fhir_server.search.engine import compile_filter
from fhir_server.storage.store import fhir_instant, now_ms


async def _form_params(request: Request) -> list[tuple[str, str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if body and ctype not in ("application/x-www-form-urlencoded", ""):
        raise FHIRError(
            415, "POST _search takes application/x-www-form-urlencoded parameters", code="not-supported"
        )
    return parse_qsl(body.decode(), keep_blank_values=True)


async def run_search(
    request: Request, ctx: ServerContext, rtype: str, params: list[tuple[str, str]]
) -> dict[str, Any]:
    strict = prefer_handling(request) == "strict"
    flt, warnings = compile_filter(ctx, rtype, params, strict=strict)
    q = dict(params)
    count = parse_count(q.get("_count"), ctx.settings.default_count, ctx.settings.max_count)
    page_filter = flt
    if CURSOR_PARAM in q:
        last_id = decode_cursor(q[CURSOR_PARAM])
        page_filter = {"$and": [flt, {"_id": {"$gt": last_id}}]}
    collection = ctx.database.resources(rtype)
    docs = await collection.find(page_filter, {"res": 1}).sort("_id", 1).limit(count + 1).to_list(count + 1)
    more = len(docs) > count
    docs = docs[:count]
    self_base = f"{ctx.base_url}/{rtype}"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": fhir_instant(now_ms())},
        "total": await collection.count_documents(flt),
        "link": [{"relation": "self", "url": page_url(self_base, params, q.get(CURSOR_PARAM))}],
        "entry": [
            {
                "fullUrl": f"{ctx.base_url}/{rtype}/{d['_id']}",
                "resource": d["res"],
                "search": {"mode": "match"},
            }
            for d in docs
        ],
    }
    if more and docs:
        bundle["link"].append(
            {"relation": "next", "url": page_url(self_base, params, encode_cursor(docs[-1]["_id"]))}
        )
    if warnings:
        bundle["entry"].append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    return bundle


async def search_type(request: Request) -> Response:
    ctx = server(request)
    rtype = resource_type_of(request)
    bundle = await run_search(request, ctx, rtype, query_items(request))
    return fhir_response(bundle, 200, pretty=wants_pretty(request))


async def search_type_post(request: Request) -> Response:
    ctx = server(request)
    rtype = resource_type_of(request)
    params = query_items(request) + await _form_params(request)
    bundle = await run_search(request, ctx, rtype, params)
    return fhir_response(bundle, 200, pretty=wants_pretty(request))
