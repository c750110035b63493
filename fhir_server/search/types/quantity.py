"""quantity parameters.

Index `i.<p>`: {"v": [value], "u_<h>": [value], ...}: every Quantity (also Age, Duration, Distance, Count,
SimpleQuantity, Money with currency as code, and each bound of a Range) adds its value to "v" and to
"u_<h>" for h in hash("system|code"), hash("|code"), hash("|unit") (parts that are missing are skipped;
hash = common.hash16). The "|code" and "|unit" forms share one key space on purpose: `5.4||mg`
matches a Quantity whose code OR unit is "mg". SampledData is ignored; comparators (`<`, `>`) are ignored.
Query `[prefix]number[|system|code]` -> the number predicate (see number.py) on
  `5.4`          "i.p.v"
  `5.4|sys|code` "i.p.u_<hash('sys|code')>"
  `5.4||mg`      "i.p.u_<hash('|mg')>"
No unit conversion (UCUM canonicalisation) is done.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    check_modifier,
    hash16,
    split_escaped,
    split_prefix,
    unescape,
)
from fhir_server.search.errors import SearchError
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.number import as_float, number_predicate

MODIFIERS: frozenset[str] = frozenset()


def unit_keys(system: Any, code: Any, unit: Any) -> list[str]:
    keys = []
    if isinstance(code, str) and code:
        if isinstance(system, str) and system:
            keys.append(hash16(f"{system}|{code}"))
        keys.append(hash16(f"|{code}"))
    if isinstance(unit, str) and unit:
        keys.append(hash16(f"|{unit}"))
    return list(dict.fromkeys(keys))


def _quantities(item: Item) -> list[dict[str, Any]]:
    value = item.value
    if not isinstance(value, dict) or item.type == "SampledData" or "origin" in value:
        return []
    if item.type == "Range" or "low" in value or "high" in value:
        return [q for q in (value.get("low"), value.get("high")) if isinstance(q, dict)]
    return [value]


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for item in items:
        for q in _quantities(item):
            v = as_float(q.get("value"))
            if v is None:
                continue
            out.setdefault("v", []).append(v)
            code = q.get("code") or q.get("currency")
            for key in unit_keys(q.get("system"), code, q.get("unit")):
                out.setdefault(f"u_{key}", []).append(v)
    return {k: list(dict.fromkeys(vs)) for k, vs in out.items()}


def predicate(field: str, raw: str, ctx: QueryContext) -> dict[str, Any]:
    prefix, text = split_prefix(raw)
    parts = split_escaped(text, "|")
    if len(parts) == 1:
        return number_predicate(f"{field}.v", prefix, unescape(parts[0]))
    if len(parts) != 3:
        raise SearchError(f"invalid quantity {raw!r} (expected [prefix]number[|system|code])")
    number, system, code = (unescape(p) for p in parts)
    if not code:
        if system:
            raise SearchError(f"quantity {raw!r} has a system but no code")
        return number_predicate(f"{field}.v", prefix, number)
    key = hash16(f"{system}|{code}" if system else f"|{code}")
    return number_predicate(f"{field}.u_{key}", prefix, number)


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    check_modifier(modifier, MODIFIERS, "quantity")
    return any_of([predicate(field, raw, ctx) for raw in alternatives])
