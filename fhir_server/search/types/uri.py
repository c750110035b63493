"""uri parameters.

Index `i.<p>`: {"u": [uri]} (a versioned canonical `url|1.0` is stored both as given and without version).
Query: `p=uri` -> {"i.p.u": uri};
`p:below=http://a/b` -> {"i.p.u": {"$regex": "^http://a/b"}} (anchored prefix);
`p:above=http://a/b/c` -> {"i.p.u": {"$in": ["http://a/b/c", "http://a/b", "http://a"]}}.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    check_modifier,
    regex_prefix,
    unescape,
    unique,
)
from fhir_server.search.registry import SearchParam

MODIFIERS = frozenset({"below", "above"})


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, list[str]]:
    out: list[str] = []
    for item in items:
        value = item.value
        if isinstance(value, dict):  # a Reference in a uri parameter (custom definitions)
            value = value.get("reference")
        if isinstance(value, str) and value:
            out.append(value)
            if "|" in value:
                out.append(value.split("|", 1)[0])
    return {"u": unique(out)} if out else {}


def prefixes(uri: str) -> list[str]:
    """The URI and each of its ancestors cut at `/` (never inside the `scheme://authority` part)."""
    start = uri.find("://")
    start = uri.find("/", start + 3) if start >= 0 else uri.find("/")
    cut = uri.rstrip("/")
    out = [uri, cut]
    while start >= 0:
        pos = cut.rfind("/")
        if pos < start:
            break
        cut = cut[:pos]
        out.append(cut)
    return unique(out)


def predicate(field: str, raw: str, modifier: str | None) -> dict[str, Any]:
    value = unescape(raw)
    if modifier == "below":
        return {f"{field}.u": regex_prefix(value)}
    if modifier == "above":
        return {f"{field}.u": {"$in": prefixes(value)}}
    return {f"{field}.u": value}


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    check_modifier(modifier, MODIFIERS, "uri")
    return any_of([predicate(field, raw, modifier) for raw in alternatives])


def composite_keys(entry: dict[str, list[Any]]) -> list[str]:
    return list(entry.get("u", ()))


def composite_query_keys(raw: str, ctx: QueryContext) -> list[str]:
    return [unescape(raw)]
