"""string parameters.

Index `i.<p>`: {"n": [normalized], "x": [exact]}; normalized = accent- and case-insensitive
(common.normalize).
HumanName contributes family, each given, prefix, suffix and text separately; Address each line, city,
district, state, postalCode, country and text.
Query: `p=val` -> {"i.p.n": {"$regex": "^val"}} (normalized, anchored: index bounds on MongoDB);
`p:exact=Val` -> {"i.p.x": "Val"}; `p:contains=al` -> {"i.p.n": {"$regex": "al"}}.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    check_modifier,
    normalize,
    regex_prefix,
    unescape,
    unique,
)
from fhir_server.search.registry import SearchParam

MODIFIERS = frozenset({"exact", "contains"})

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_ADDRESS_ONLY = frozenset(("line", "city", "district", "state", "postalCode", "country"))


def _parts_of(value: dict[str, Any], type_: str | None) -> tuple[str, ...]:
    if type_ == "HumanName":
        return _NAME_PARTS
    if type_ == "Address":
        return _ADDRESS_PARTS
    if type_ is None:  # recognise by shape when FHIRPath could not type the value
        if "family" in value or "given" in value:
            return _NAME_PARTS
        if not _ADDRESS_ONLY.isdisjoint(value):
            return _ADDRESS_PARTS
    return ()


def strings_of(item: Item) -> list[str]:
    value = item.value
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for part in _parts_of(value, item.type):
        v = value.get(part)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(x for x in v if isinstance(x, str))
    return out


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, list[Any]]:
    exact = unique(s for item in items for s in strings_of(item) if s.strip())
    if not exact:
        return {}
    return {"n": unique(normalize(s) for s in exact), "x": exact}


def predicate(field: str, raw: str, modifier: str | None) -> dict[str, Any]:
    value = unescape(raw)
    if modifier == "exact":
        return {f"{field}.x": value}
    if modifier == "contains":
        return {f"{field}.n": {"$regex": re.escape(normalize(value))}}
    return {f"{field}.n": regex_prefix(normalize(value))}


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    check_modifier(modifier, MODIFIERS, "string")
    return any_of([predicate(field, raw, modifier) for raw in alternatives])


# Composite components: a string component matches by exact normalized equality.
def composite_keys(entry: dict[str, list[Any]]) -> list[str]:
    return list(entry.get("n", ()))


def composite_query_keys(raw: str, ctx: QueryContext) -> list[str]:
    return [normalize(unescape(raw))]
