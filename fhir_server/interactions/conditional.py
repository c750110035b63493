"""Search criteria of conditional create/update/patch/delete: resolution and the race-free lease."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request

from fhir_server.context import ServerContext, query_items, server
from fhir_server.errors import FHIRError, precondition_failed
from fhir_server.search.engine import find_current
from fhir_server.storage.locks import lease


def parse_criteria(raw: str | list[tuple[str, str]]) -> list[tuple[str, str]]:
    items = parse_qsl(raw.lstrip("?"), keep_blank_values=True) if isinstance(raw, str) else list(raw)
    items = [(k, v) for k, v in items if k not in ("_format", "_pretty")]
    if not items:
        raise FHIRError(400, "conditional interaction without search criteria", code="invalid")
    return items


async def matching(ctx: ServerContext, resource_type: str, criteria: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Up to two current resources matching the criteria (two is enough to answer 412)."""
    return await find_current(ctx, resource_type, criteria, limit=2, strict=True)


def single_match(matches: list[dict[str, Any]], resource_type: str, criteria: list[tuple[str, str]]) -> dict | None:
    if len(matches) > 1:
        raise precondition_failed(
            f"several {resource_type} resources match {urlencode(criteria)}: the criteria must select one"
        )
    return matches[0] if matches else None


@contextlib.asynccontextmanager
async def matched_under_lease(request: Request, resource_type: str) -> AsyncIterator[str | None]:
    """The id of the one resource the request's criteria select (None if none; 412 if several),
    with the criteria's lease held for the body of the `async with`."""
    ctx = server(request)
    criteria = parse_criteria(query_items(request))
    async with criteria_lease(ctx, resource_type, criteria):
        existing = single_match(await matching(ctx, resource_type, criteria), resource_type, criteria)
        yield existing["_id"] if existing else None


@contextlib.asynccontextmanager
async def criteria_lease(
    ctx: ServerContext, resource_type: str, criteria: list[tuple[str, str]]
) -> AsyncIterator[None]:
    """Serialise conditional writes with the same criteria across all server instances.

    Two concurrent `If-None-Exist: identifier=x` creates both search, both see nothing and both
    create, unless the search-then-write is done under one lease per (type, criteria).
    """
    canonical = urlencode(sorted(criteria))
    key = "cond:" + resource_type + ":" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
    async with lease(ctx.database, key):
        yield
