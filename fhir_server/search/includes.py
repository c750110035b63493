"""`_include` and `_revinclude` (with `:iterate` and `*`): the resources a page brings along.

References are read from the stored index (`i.<param>.r`, relative `Type/id`), so an include is one
`_id $in` query per target type, and a revinclude one query on the referencing type's index.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.references import relative_references
from fhir_server.search.engine import LIVE

# Bound the work one page can cause (each include round is one query per type).
MAX_INCLUDED = 1000
MAX_ITERATIONS = 4


@dataclass(frozen=True)
class IncludeSpec:
    source_type: str  # "*" for `_include=*`
    param: str  # "*" for every reference parameter
    target: str | None
    iterate: bool


def parse_includes(params: list[tuple[str, str]], key: str) -> list[IncludeSpec]:
    specs: list[IncludeSpec] = []
    for k, value in params:
        name, _, modifier = k.partition(":")
        if name != key:
            continue
        if modifier not in ("", "iterate", "recurse"):
            raise FHIRError(400, f"unsupported modifier {k!r}", code="invalid")
        if value == "*":
            specs.append(IncludeSpec("*", "*", None, modifier != ""))
            continue
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise FHIRError(400, f"{key}={value!r}: expected Type:parameter[:targetType]", code="invalid")
        specs.append(IncludeSpec(parts[0], parts[1], parts[2] if len(parts) == 3 else None, modifier != ""))
    return specs


def _reference_params(ctx: ServerContext, rtype: str, spec: IncludeSpec) -> list[str]:
    if spec.source_type not in ("*", rtype):
        return []
    params = ctx.registry.params_for(rtype)
    if spec.param == "*":
        return [p.code for p in params.values() if p.type == "reference"]
    param = params.get(spec.param)
    if param is None or param.type != "reference":
        raise FHIRError(400, f"{spec.param!r} is not a reference parameter of {rtype}", code="invalid")
    return [param.code]


def _references(doc: dict[str, Any], rtype: str, ctx: ServerContext, specs: list[IncludeSpec]) -> set[str]:
    refs: set[str] = set()
    index = doc.get("i") or {}
    for spec in specs:
        for code in _reference_params(ctx, rtype, spec):
            for ref in (index.get(code) or {}).get("r", []):
                target = ref.split("/", 1)[0]
                if "/" in ref and not ref.startswith("http") and (spec.target in (None, target)):
                    refs.add(ref)
    return refs


async def _fetch(ctx: ServerContext, refs: set[str]) -> list[tuple[str, dict[str, Any]]]:
    by_type: dict[str, list[str]] = defaultdict(list)
    for ref in refs:
        rtype, _, rid = ref.partition("/")
        by_type[rtype].append(rid)
    found: list[tuple[str, dict[str, Any]]] = []
    for rtype, ids in sorted(by_type.items()):
        if not ctx.registry.params_for(rtype):
            continue
        cursor = ctx.database.resources(rtype).find({"$and": [LIVE, {"_id": {"$in": ids}}]}, {"res": 1, "i": 1})
        found += [(rtype, d) async for d in cursor]
    return found


async def _revincluded(
    ctx: ServerContext, targets: list[tuple[str, dict[str, Any]]], specs: list[IncludeSpec]
) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    refs = [f"{t}/{d['_id']}" for t, d in targets]
    for spec in specs:
        if spec.source_type == "*" or spec.param == "*":
            raise FHIRError(400, "_revinclude=* is not supported: name Type:parameter", code="not-supported")
        param = ctx.registry.get(spec.source_type, spec.param)
        if param is None or param.type != "reference":
            raise FHIRError(400, f"{spec.param!r} is not a reference parameter of {spec.source_type}", code="invalid")
        wanted = [r for r in refs if spec.target in (None, r.split("/", 1)[0])]
        if not wanted:
            continue
        flt = {"$and": [LIVE, {f"i.{param.code}.r": {"$in": wanted}}]}
        cursor = ctx.database.resources(spec.source_type).find(flt, {"res": 1, "i": 1}).limit(MAX_INCLUDED + 1)
        found += [(spec.source_type, d) async for d in cursor]
    return found


async def referenced(ctx: ServerContext, matches: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The resources that a page of matches references, wherever the reference sits ($everything)."""
    seen = {f"{t}/{d['_id']}" for t, d in matches}
    refs: set[str] = set()
    for _, doc in matches:
        refs |= relative_references(doc.get("res"))
    wanted = {r for r in refs - seen if r.split("/", 1)[0] in ctx.registry.resource_types}
    return await _fetch(ctx, wanted) if wanted else []


async def included(
    ctx: ServerContext, matches: list[tuple[str, dict[str, Any]]], params: list[tuple[str, str]]
) -> list[tuple[str, dict[str, Any]]]:
    """The resources `_include`/`_revinclude` add to a page of matches (not repeating any match)."""
    includes = parse_includes(params, "_include")
    revincludes = parse_includes(params, "_revinclude")
    if not includes and not revincludes:
        return []
    seen = {f"{t}/{d['_id']}" for t, d in matches}
    out: list[tuple[str, dict[str, Any]]] = []
    frontier = matches
    for round_no in range(MAX_ITERATIONS):
        inc = [s for s in includes if round_no == 0 or s.iterate]
        rev = [s for s in revincludes if round_no == 0 or s.iterate]
        if not inc and not rev:
            break
        refs: set[str] = set()
        for rtype, doc in frontier:
            refs |= _references(doc, rtype, ctx, inc)
        new = await _fetch(ctx, refs - seen) if refs - seen else []
        new += await _revincluded(ctx, frontier, rev) if rev else []
        fresh = []
        for rtype, doc in new:
            key = f"{rtype}/{doc['_id']}"
            if key not in seen:
                seen.add(key)
                fresh.append((rtype, doc))
        out += fresh
        if len(out) > MAX_INCLUDED:
            raise FHIRError(
                400, f"the includes bring more than {MAX_INCLUDED} resources: use a smaller _count", code="too-costly"
            )
        frontier = fresh
        if not frontier:
            break
    return out
