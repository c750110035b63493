"""Running a search: parameters -> MongoDB filter (search/query.py) -> current documents."""

from __future__ import annotations

from typing import Any

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError, OutcomeIssue
from fhir_server.search.errors import SearchError, UnknownParameter
from fhir_server.search.query import build_filter

# Every search runs on current, non-deleted resources only.
LIVE = {"gone": {"$exists": False}}


def compile_filter(
    ctx: ServerContext, resource_type: str, params: list[tuple[str, str]], *, strict: bool
) -> tuple[dict[str, Any], list[OutcomeIssue]]:
    """The MongoDB filter for `params`, plus warnings for the parameters that were ignored."""
    try:
        flt, unknown, deferred = build_filter(resource_type, params, ctx.registry, ctx.base_url)
    except UnknownParameter as exc:
        unknown, deferred, flt = [str(exc)], [], None
        if strict:
            raise FHIRError(400, f"unknown search parameter {exc}", code="not-supported") from None
        raise FHIRError(400, f"unknown search parameter {exc}", code="not-supported") from None
    except SearchError as exc:
        raise FHIRError(400, exc.message, code="invalid") from None
    ignored = list(unknown) + [name for name, _ in deferred]
    if ignored and strict:
        raise FHIRError(
            400, f"unknown or unsupported search parameter(s): {', '.join(ignored)}", code="not-supported"
        )
    warnings = [
        OutcomeIssue("warning", "not-supported", f"search parameter {name!r} ignored") for name in ignored
    ]
    return {"$and": [LIVE, flt]} if flt else dict(LIVE), warnings


async def find_current(
    ctx: ServerContext, resource_type: str, params: list[tuple[str, str]], *, limit: int, strict: bool
) -> list[dict[str, Any]]:
    flt, _ = compile_filter(ctx, resource_type, params, strict=strict)
    cursor = ctx.database.resources(resource_type).find(flt, {"v": 1, "lu": 1, "res": 1}).limit(limit)
    return await cursor.to_list(limit)
