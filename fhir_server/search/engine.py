"""Running a search: parameters -> one MongoDB filter -> current documents.

search/query.py turns plain parameters into predicates on the `i` index. This module adds what needs
the database: chains (`subject:Patient.name=x`, several levels) are resolved inner-first into the ids
they match, then into an `$in` on the reference; reverse chains (`_has:Observation:subject:code=x`)
into an `$in` on `_id`.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError, OutcomeIssue
from fhir_server.search.common import all_of
from fhir_server.search.errors import SearchError
from fhir_server.search.query import build_filter

# Every search runs on current, non-deleted resources only.
# Tombstones have no `res`.
LIVE: dict[str, Any] = {"res": {"$exists": True}}
# Parameters that steer the interaction, not the match.
CONTROL_PARAMS = frozenset({"_cursor", "_type", "_since", "_format", "_pretty"})
# A chain or _has resolves to at most this many ids; past it the client must narrow the search.
MAX_JOIN_IDS = 10_000


class SearchFilter:
    """A compiled filter plus the warnings about parameters it ignored."""

    def __init__(self, flt: dict[str, Any], ignored: list[str]) -> None:
        self.flt = flt
        self.ignored = ignored

    def warnings(self) -> list[OutcomeIssue]:
        return [
            OutcomeIssue("warning", "not-supported", f"search parameter {name!r} is unknown and was ignored")
            for name in self.ignored
        ]


async def compile_filter(
    ctx: ServerContext, resource_type: str, params: list[tuple[str, str]], *, strict: bool
) -> SearchFilter:
    """The filter for `params` on `resource_type`; 400 for malformed values (and, if strict, unknowns)."""
    plain = [(k, v) for k, v in params if k not in CONTROL_PARAMS]
    try:
        flt, unknown, deferred = build_filter(resource_type, plain, ctx.registry, ctx.base_url)
        clauses = [flt] if flt else []
        for key, value in deferred:
            clauses.append(await _deferred_clause(ctx, resource_type, key, value, strict=strict))
    except SearchError as exc:
        raise FHIRError(400, exc.message, code="invalid") from None
    if unknown and strict:
        raise FHIRError(400, f"unknown or unsupported search parameter(s): {', '.join(unknown)}", code="not-supported")
    return SearchFilter(all_of([LIVE, *clauses]), unknown)


async def matching_ids(
    ctx: ServerContext, resource_type: str, params: list[tuple[str, str]], *, strict: bool, what: str
) -> list[str]:
    compiled = await compile_filter(ctx, resource_type, params, strict=strict)
    if compiled.ignored:
        # An ignored parameter inside a chain would widen the join silently: refuse instead.
        raise FHIRError(400, f"unknown parameter(s) {', '.join(compiled.ignored)} in {what}", code="not-supported")
    cursor = ctx.database.resources(resource_type).find(compiled.flt, {"_id": 1}).limit(MAX_JOIN_IDS + 1)
    ids = [d["_id"] async for d in cursor]
    if len(ids) > MAX_JOIN_IDS:
        raise FHIRError(400, f"{what} matches more than {MAX_JOIN_IDS} resources: narrow it", code="too-costly")
    return ids


async def _deferred_clause(
    ctx: ServerContext, resource_type: str, key: str, value: str, *, strict: bool
) -> dict[str, Any]:
    if key.startswith("_has:"):
        return await _reverse_chain(ctx, resource_type, key, value, strict=strict)
    return await _chain(ctx, resource_type, key, value, strict=strict)


async def _chain(ctx: ServerContext, resource_type: str, key: str, value: str, *, strict: bool) -> dict[str, Any]:
    """`subject:Patient.name:exact=x` -> i.subject.r in [Patient/<ids whose name is x>]."""
    head, _, rest = key.partition(".")
    name, _, target = head.partition(":")
    param = ctx.registry.get(resource_type, name)
    if param is None or param.type != "reference":
        raise SearchError(f"{name!r} is not a reference parameter of {resource_type}: it cannot be chained")
    targets = [target] if target else list(param.targets)
    inner_name = rest.split(".", 1)[0].split(":", 1)[0]
    # Without an explicit type, the chain applies to every target type that knows the inner parameter.
    candidates = [t for t in targets if inner_name in ("_id",) or ctx.registry.get(t, inner_name)]
    if not candidates:
        raise SearchError(f"no target type of {resource_type}.{name} has a search parameter {inner_name!r}")
    refs: list[str] = []
    for t in candidates:
        ids = await matching_ids(ctx, t, [(rest, value)], strict=strict, what=f"chain {key}")
        refs += [f"{t}/{i}" for i in ids]
    return {f"i.{param.code}.r": {"$in": refs}}


async def _reverse_chain(
    ctx: ServerContext, resource_type: str, key: str, value: str, *, strict: bool
) -> dict[str, Any]:
    """`_has:Observation:subject:code=x` -> _id in [ids referenced by Observation.subject where code=x]."""
    parts = key.split(":", 3)
    if len(parts) < 4 or not all(parts[1:4]):
        raise SearchError(f"malformed reverse chain {key!r}: expected _has:Type:reference:parameter")
    _, other_type, ref_name, inner = parts
    ref = ctx.registry.get(other_type, ref_name)
    if ref is None or ref.type != "reference":
        raise SearchError(f"{ref_name!r} is not a reference parameter of {other_type}")
    compiled = await compile_filter(ctx, other_type, [(inner, value)], strict=strict)
    if compiled.ignored:
        raise FHIRError(400, f"unknown parameter(s) {', '.join(compiled.ignored)} in {key}", code="not-supported")
    prefix = resource_type + "/"
    refs = await ctx.database.resources(other_type).distinct(f"i.{ref.code}.r", compiled.flt)
    ids = [r[len(prefix) :] for r in refs if isinstance(r, str) and r.startswith(prefix)]
    if len(ids) > MAX_JOIN_IDS:
        raise FHIRError(400, f"{key} matches more than {MAX_JOIN_IDS} resources: narrow it", code="too-costly")
    return {"_id": {"$in": ids}}


async def find_current(
    ctx: ServerContext, resource_type: str, params: list[tuple[str, str]], *, limit: int, strict: bool
) -> list[dict[str, Any]]:
    compiled = await compile_filter(ctx, resource_type, params, strict=strict)
    cursor = ctx.database.resources(resource_type).find(compiled.flt, {"v": 1, "lu": 1, "res": 1}).limit(limit)
    return await cursor.to_list(limit)
