"""number parameters.

Index `i.<p>`: {"v": [float]} (integers, decimals; a Range contributes low and high).
Query (prefix + number; the number's implicit precision gives [lo, hi): "100" -> [99.5, 100.5),
"100.0" -> [99.95, 100.05), "1e2" -> [50, 150): half a unit of its last significant digit):
  eq     {"i.p.v": {"$elemMatch": {"$gte": lo, "$lt": hi}}}   ($elemMatch: one element must satisfy both)
  ne     {"$nor": [<eq>]}
  gt/sa  {"i.p.v": {"$gt": n}}     lt/eb {"i.p.v": {"$lt": n}}
  ge     {"i.p.v": {"$gte": n}}    le    {"i.p.v": {"$lte": n}}
  ap     {"i.p.v": {"$elemMatch": {"$gte": n - 10%, "$lte": n + 10%}}} (never narrower than eq)
Decimal128 is never stored (FerretDB v1 cannot handle it): values are floats.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    check_modifier,
    split_prefix,
    unescape,
    unique,
)
from fhir_server.search.errors import SearchError
from fhir_server.search.registry import SearchParam

MODIFIERS: frozenset[str] = frozenset()

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def as_float(value: Any) -> float | None:
    """A JSON number as float (booleans and non-numbers: None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return None


def _values(item: Item) -> list[float]:
    value = item.value
    if isinstance(value, dict):
        if "low" in value or "high" in value:  # Range
            return [v for v in (as_float((value.get(k) or {}).get("value")) for k in ("low", "high")) if v is not None]
        value = value.get("value")
    v = as_float(value)
    return [] if v is None else [v]


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, list[float]]:
    values = unique(v for item in items for v in _values(item))
    return {"v": values} if values else {}


def parse_number(text: str) -> Decimal:
    if not _NUMBER.match(text):
        raise SearchError(f"invalid number {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a valid decimal
        raise SearchError(f"invalid number {text!r}") from None


def implicit_range(number: Decimal) -> tuple[float, float]:
    """[lo, hi): the number +/- half a unit of its last significant digit."""
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1)
    return float(number - half), float(number + half)


def number_predicate(field: str, prefix: str, text: str) -> dict[str, Any]:
    """The predicate of one prefixed number on `field`, an array of floats."""
    number = parse_number(text)
    n = float(number)
    if prefix in ("eq", "ne"):
        lo, hi = implicit_range(number)
        eq = {field: {"$elemMatch": {"$gte": lo, "$lt": hi}}}
        return eq if prefix == "eq" else {"$nor": [eq]}
    if prefix in ("gt", "sa"):
        return {field: {"$gt": n}}
    if prefix in ("lt", "eb"):
        return {field: {"$lt": n}}
    if prefix == "ge":
        return {field: {"$gte": n}}
    if prefix == "le":
        return {field: {"$lte": n}}
    lo, hi = implicit_range(number)  # ap
    margin = abs(n) * 0.1
    return {field: {"$elemMatch": {"$gte": min(n - margin, lo), "$lte": max(n + margin, hi)}}}


def predicate(field: str, raw: str, ctx: QueryContext) -> dict[str, Any]:
    prefix, text = split_prefix(unescape(raw))
    return number_predicate(f"{field}.v", prefix, text)


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    check_modifier(modifier, MODIFIERS, "number")
    return any_of([predicate(field, raw, ctx) for raw in alternatives])
