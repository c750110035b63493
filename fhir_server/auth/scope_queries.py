"""SMART v2 fine-grained scopes: `patient/Observation.rs?category=http://…|laboratory`.

A scope with a `?` grants its actions only on the resources its search parameters match. Several
such scopes on the same type add up (OR); an unrestricted scope on the type wins over them. The
restriction is applied where it can be applied exactly:

- search on one type (`GET/POST [type]`, `Patient/[id]/[type]`): the scope's parameters become one
  more clause of the MongoDB filter (the same search engine, so the same indexes);
- read (`GET [type]/[id]`): the resource must match the same filter, else 404 (its existence does not
  leak).

Everything else a restricted scope would have to cover (vread and history of past versions, system
search, `_include` of that type, writes, `$everything`, `$export`) is not granted by it: such a scope
grants nothing rather than too much (`scopes.allows` ignores it).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Za-z]+)\.(\*|read|write|[cruds]+)\?(.+)$")
_V1 = {"*": "cruds", "read": "rs", "write": "cud"}
# The interactions a restricted scope can serve exactly (route function names).
SERVED = {"read", "search_type", "search_type_post", "search_compartment"}
Query = list[tuple[str, str]]


def granting_queries(scopes: frozenset[str], resource_type: str | None, action: str, *, context: str) -> list[Query]:
    """The search parameters of every restricted scope of `context` that grants `action` on the type."""
    found: list[Query] = []
    for scope in scopes:
        m = _SCOPE.match(scope)
        if not m or (m.group(1) == "patient") != (context == "patient"):
            continue
        if m.group(2) not in ("*", resource_type) or action not in _V1.get(m.group(3), m.group(3)):
            continue
        params = parse_qsl(m.group(4), keep_blank_values=True)
        if params:
            found.append(params)
    return found


def set_queries(request: Request, queries: list[Query]) -> None:
    request.state.scope_queries = queries


def queries_of(request: Request) -> list[Query] | None:
    return getattr(request.state, "scope_queries", None)


async def scope_filter(ctx: ServerContext, request: Request, resource_type: str) -> dict[str, Any] | None:
    """The MongoDB clause the token's restricted scopes add to a search or read (None: unrestricted)."""
    queries = queries_of(request)
    if not queries:
        return None
    from fhir_server.search.engine import compile_filter

    clauses = []
    for params in queries:
        try:
            clauses.append((await compile_filter(ctx, resource_type, params, strict=True)).flt)
        except FHIRError as exc:
            # A scope the server cannot evaluate grants nothing (and says why).
            reason = f"the token's scope restriction cannot be applied: {exc.diagnostics}"
            raise FHIRError(403, reason, code="forbidden") from None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


async def check_matches(ctx: ServerContext, request: Request, resource_type: str, rid: str) -> None:
    """404 for a read of a resource the token's restricted scopes do not match."""
    flt = await scope_filter(ctx, request, resource_type)
    if flt is None:
        return
    found = await ctx.database.resources(resource_type).find_one({"$and": [{"_id": rid}, flt]}, {"_id": 1})
    if found is None:
        raise FHIRError(404, f"{resource_type}/{rid} is not known", code="not-found")
