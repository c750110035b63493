"""search: GET/POST [base]/[type] and [type]/_search, [base]?_type= (system), and
[base]/Patient/[id]/[type] (compartment), answered with a searchset Bundle.

Paging is keyset-based: `next`/`previous` links carry the sort key of the page's last/first entry in an
opaque `_cursor`, so pages stay correct while data changes and any server instance can serve them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import (
    forbid_unconfined,
    in_compartment,
    is_patient_specific,
    restricted_patient,
    search_filter,
)
from fhir_server.auth.policy import (
    check_readable,
    denied_patients,
    request_policy,
    search_restriction,
    team_patients,
)
from fhir_server.auth.scope_queries import scope_filter
from fhir_server.auth.scopes import allows
from fhir_server.context import ServerContext, query_items, resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError, OutcomeIssue, operation_outcome
from fhir_server.http import fhir_response, prefer_handling, wants_pretty
from fhir_server.paging import CURSOR_PARAM, decode_cursor, encode_cursor, page_url, parse_count
from fhir_server.search.compartments import compartment_filter
from fhir_server.search.engine import compile_filter
from fhir_server.search.includes import included, referenced
from fhir_server.search.sorting import after_filter, mongo_sort, parse_sort, projection_for, sort_values
from fhir_server.search.summary import parse_elements, parse_summary, subset
from fhir_server.storage.store import fhir_instant, now_ms
from fhir_server.storage.transactions import consistent
from fhir_server.validation import is_known_type

TOTAL_MODES = ("none", "estimate", "accurate")


@dataclass
class Scope:
    """Where a search runs: one or several types, maybe inside a compartment."""

    types: list[str]
    path: str  # the search URL's path below the base, for links
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # per type, e.g. the compartment
    # $everything: bring every resource the matches reference, not only through search parameters.
    all_references: bool = False


@dataclass
class Page:
    matches: list[tuple[str, dict[str, Any]]]
    next_cursor: Any | None
    prev_cursor: Any | None


def _single(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise FHIRError(400, f"{name} may appear only once", code="invalid")
    return values[0] if values else None


async def _fetch_page(
    ctx: ServerContext,
    scope: Scope,
    filters: list[dict[str, Any]],
    sort: list[tuple[str, int]],
    count: int,
    cursor: dict[str, Any] | None,
) -> Page:
    """Up to `count` matches after (or before) the cursor, walking the scope's types in order."""
    backwards = bool(cursor and cursor.get("d") == "prev")
    start_t = cursor["t"] if cursor else 0
    order = range(start_t, -1, -1) if backwards else range(start_t, len(scope.types))
    eff_sort = [(f, -d) for f, d in sort] if backwards else sort
    proj = {"res": 1, "i": 1, **projection_for(sort)}
    found: list[tuple[int, dict[str, Any]]] = []
    more = False
    for t_index in order:
        flt = filters[t_index]
        if cursor and t_index == start_t and cursor.get("k") is not None:
            flt = {"$and": [flt, after_filter(eff_sort, cursor["k"])]}
        need = count + 1 - len(found)
        coll = ctx.database.resources(scope.types[t_index])
        docs = await coll.find(flt, proj).sort(eff_sort).limit(need).to_list(need)
        found += [(t_index, d) for d in docs]
        if len(found) > count:
            more = True
            found = found[:count]
            break
    if backwards:
        found.reverse()
    page = [(scope.types[t], d) for t, d in found]
    if not found:
        return Page([], None, None)
    first, last = found[0], found[-1]
    first_key = {"t": first[0], "k": sort_values(first[1], sort), "d": "prev"}
    last_key = {"t": last[0], "k": sort_values(last[1], sort)}
    has_next = (more and not backwards) or backwards
    has_prev = (more and backwards) or (cursor is not None and not backwards)
    return Page(page, last_key if has_next else None, first_key if has_prev else None)


async def _total(ctx: ServerContext, scope: Scope, filters: list[dict[str, Any]], mode: str) -> int | None:
    if mode == "none":
        return None
    total = 0
    for rtype, flt in zip(scope.types, filters, strict=True):
        total += await ctx.database.resources(rtype).count_documents(flt)
    return total


async def run_search(
    request: Request, ctx: ServerContext, scope: Scope, params: list[tuple[str, str]]
) -> dict[str, Any]:
    """The searchset, never showing part of a transaction (see storage/transactions.py)."""
    tx = ctx.store.tx
    for _ in range(5):
        # Commit state first, then settle: a commit after this read changes the state; one before it
        # is fully applied by settle() before the query runs.
        before = await tx.commit_state()
        await tx.settle()
        with ctx.database.tracking() as touched:  # the types this attempt reads (matches, chains, includes)
            bundle = await _run_search_once(request, ctx, scope, params)
        if consistent(before, await tx.commit_state(), touched):
            return bundle
    raise FHIRError(503, "too many concurrent transactions to answer consistently; retry", code="transient")


async def _run_search_once(
    request: Request, ctx: ServerContext, scope: Scope, params: list[tuple[str, str]]
) -> dict[str, Any]:
    strict = prefer_handling(request) == "strict"
    warnings: list[OutcomeIssue] = []
    filters: list[dict[str, Any]] = []
    policy = request_policy(request)
    denied = await denied_patients(ctx, policy)
    team = await team_patients(ctx, policy)
    for rtype in scope.types:
        compiled = await compile_filter(ctx, rtype, params, strict=strict)
        if len(scope.types) == 1 or not compiled.ignored:
            warnings += compiled.warnings()
        # The scope's own restriction (compartment, $everything) and the token's patient confinement.
        extra = [
            f
            for f in (
                scope.extra.get(rtype),
                search_filter(request, rtype),
                search_restriction(policy, rtype, denied, team),
                await scope_filter(ctx, request, rtype),  # SMART v2 fine-grained scopes
            )
            if f
        ]
        filters.append({"$and": [compiled.flt, *extra]} if extra else compiled.flt)
    count = parse_count(_single(params, "_count"), ctx.settings.default_count, ctx.settings.max_count)
    summary = parse_summary(_single(params, "_summary"))
    elements = parse_elements([v for k, v in params if k == "_elements"])
    # Counting every match costs O(matches): by default the first page carries the total and later pages
    # (reached through a cursor) do not, unless the client asks with _total=accurate.
    total_mode = _single(params, "_total") or ("none" if _single(params, CURSOR_PARAM) else "accurate")
    if total_mode not in TOTAL_MODES:
        raise FHIRError(400, f"_total must be one of {', '.join(TOTAL_MODES)}", code="invalid")
    sort_type = scope.types[0] if len(scope.types) == 1 else None
    sort = mongo_sort(parse_sort(_single(params, "_sort"), sort_type, ctx.registry))
    raw_cursor = _single(params, CURSOR_PARAM)
    cursor = decode_cursor(raw_cursor) if raw_cursor else None
    if cursor is not None and (not isinstance(cursor, dict) or not 0 <= cursor.get("t", -1) < len(scope.types)):
        raise FHIRError(400, "invalid paging cursor", code="invalid")

    self_base = f"{ctx.base_url}/{scope.path}" if scope.path else ctx.base_url
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": fhir_instant(now_ms())},
    }
    total = await _total(ctx, scope, filters, "accurate" if summary == "count" else total_mode)
    if total is not None:
        bundle["total"] = total
    links = [{"relation": "self", "url": page_url(self_base, params, raw_cursor)}]
    entries: list[dict[str, Any]] = []
    if summary != "count" and count > 0:
        page = await _fetch_page(ctx, scope, filters, sort, count, cursor)
        for rtype, doc in page.matches:
            entries.append(_entry(ctx, rtype, doc, "match", summary, elements))
        access = getattr(request.state, "access", None)
        extra_docs = await (
            referenced(ctx, page.matches) if scope.all_references else included(ctx, page.matches, params)
        )
        for rtype, doc in extra_docs:
            try:
                await check_readable(ctx, request, rtype, doc["res"])
            except FHIRError:
                continue  # labels or an opposition hide it from this user
            # An include must not reveal a type the token cannot read, nor another patient's data.
            if access is None or allows(access.scopes, rtype, "r"):
                entries.append(_entry(ctx, rtype, doc, "include", summary, None))
            elif (
                restricted_patient(request)
                and allows(access.scopes, rtype, "r", context="patient")
                and (
                    not is_patient_specific(rtype)
                    or in_compartment(ctx, rtype, doc["res"], restricted_patient(request))
                )
            ):
                entries.append(_entry(ctx, rtype, doc, "include", summary, None))
        if page.next_cursor is not None:
            links.append({"relation": "next", "url": page_url(self_base, params, encode_cursor(page.next_cursor))})
        if page.prev_cursor is not None:
            links.append({"relation": "previous", "url": page_url(self_base, params, encode_cursor(page.prev_cursor))})
    bundle["link"] = links
    if warnings:
        entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(
    ctx: ServerContext, rtype: str, doc: dict[str, Any], mode: str, summary: str | None, elements: Any
) -> dict[str, Any]:
    return {
        "fullUrl": f"{ctx.base_url}/{rtype}/{doc['_id']}",
        "resource": subset(doc["res"], summary, elements),
        "search": {"mode": mode},
    }


async def _form_params(request: Request) -> list[tuple[str, str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if body and ctype not in ("application/x-www-form-urlencoded", ""):
        raise FHIRError(415, "POST _search takes application/x-www-form-urlencoded parameters", code="not-supported")
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise FHIRError(400, "the form body is not UTF-8", code="invalid") from None


def _respond(request: Request, bundle: dict[str, Any]) -> Response:
    return fhir_response(bundle, 200, pretty=wants_pretty(request))


async def search_type(request: Request) -> Response:
    ctx = server(request)
    rtype = resource_type_of(request)
    return _respond(request, await run_search(request, ctx, Scope([rtype], rtype), query_items(request)))


async def search_type_post(request: Request) -> Response:
    ctx = server(request)
    rtype = resource_type_of(request)
    params = query_items(request) + await _form_params(request)
    return _respond(request, await run_search(request, ctx, Scope([rtype], rtype), params))


async def _system_scope(ctx: ServerContext, params: list[tuple[str, str]]) -> Scope:
    requested = [t.strip() for v in (v for k, v in params if k == "_type") for t in v.split(",") if t.strip()]
    for t in requested:
        if not is_known_type(t):
            raise FHIRError(400, f"_type: unknown resource type {t!r}", code="invalid")
    types = sorted(set(requested)) if requested else await ctx.database.type_collections()
    return Scope(types, "")


async def search_system(request: Request) -> Response:
    forbid_unconfined(request, "system search")
    ctx = server(request)
    params = query_items(request)
    if request.method == "POST":
        params += await _form_params(request)
    scope = await _system_scope(ctx, params)
    if not scope.types:
        return _respond(
            request,
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": 0,
                "link": [{"relation": "self", "url": ctx.base_url}],
            },
        )
    return _respond(request, await run_search(request, ctx, scope, params))


async def search_compartment(request: Request) -> Response:
    ctx = server(request)
    compartment = request.path_params["compartment"]
    if compartment != "Patient":
        raise FHIRError(404, f"the {compartment} compartment is not supported", code="not-supported")
    owner = resource_id_of(request)
    rtype = resource_type_of(request)
    await ctx.store.read(compartment, owner)  # 404/410 for an unknown or deleted patient
    scope = Scope([rtype], f"{compartment}/{owner}/{rtype}", {rtype: compartment_filter(compartment, owner, rtype)})
    params = query_items(request)
    return _respond(request, await run_search(request, ctx, scope, params))
