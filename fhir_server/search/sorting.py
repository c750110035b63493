"""`_sort` and keyset paging.

Each indexed parameter also stores two scalars, `i.<p>.min` and `i.<p>.max` (the smallest and largest
of its values: first `lo` and last `hi` for dates), computed at write time by `add_sort_keys`. Sorting
ascending uses `min`, descending `max`, which is MongoDB's own array ordering made explicit, so that a
page cursor "after (value, _id)" is an exact predicate on one scalar field, served by the wildcard index.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FHIRError
from fhir_server.search.registry import Registry

# Which array of a parameter's index entry carries its comparable values, per kind of entry.
_VALUE_ARRAYS = (("n", "n"), ("lo", "hi"), ("v", "v"), ("c", "c"), ("r", "r"), ("u", "u"))
TOP_LEVEL = {"_id": "_id", "_lastUpdated": "lu"}


def add_sort_keys(index: dict[str, Any]) -> dict[str, Any]:
    for entry in index.values():
        if not isinstance(entry, dict):
            continue
        for low_key, high_key in _VALUE_ARRAYS:
            low, high = entry.get(low_key), entry.get(high_key)
            if low and high:
                entry["min"] = min(low)
                entry["max"] = max(high)
                break
    return index


class SortKey:
    def __init__(self, field_asc: str, field_desc: str, ascending: bool) -> None:
        self.field = field_asc if ascending else field_desc
        self.ascending = ascending


def parse_sort(raw: str | None, resource_type: str | None, registry: Registry) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        ascending = not item.startswith("-")
        name = item.lstrip("-")
        if name in TOP_LEVEL:
            keys.append(SortKey(TOP_LEVEL[name], TOP_LEVEL[name], ascending))
            continue
        param = registry.get(resource_type, name) if resource_type else None
        if param is None or param.type in ("composite", "special"):
            raise FHIRError(400, f"cannot sort by {name!r}: not a search parameter of {resource_type}", code="invalid")
        keys.append(SortKey(f"i.{param.code}.min", f"i.{param.code}.max", ascending))
    return keys


def mongo_sort(keys: list[SortKey]) -> list[tuple[str, int]]:
    sort = [(k.field, 1 if k.ascending else -1) for k in keys]
    if not any(k.field == "_id" for k in keys):
        sort.append(("_id", 1))  # stable tie-break
    return sort


def sort_values(doc: dict[str, Any], sort: list[tuple[str, int]]) -> list[Any]:
    out = []
    for field, _ in sort:
        value: Any = doc
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out.append(value.isoformat() if hasattr(value, "isoformat") else value)
    return out


def projection_for(sort: list[tuple[str, int]]) -> dict[str, int]:
    return {field: 1 for field, _ in sort}


def after_filter(sort: list[tuple[str, int]], last: list[Any]) -> dict[str, Any]:
    """Documents strictly after `last` in `sort` order (missing values sort lowest, as in MongoDB)."""
    if len(last) != len(sort):
        raise FHIRError(400, "paging cursor does not match the sort", code="invalid")
    branches: list[dict[str, Any]] = []
    equal: list[dict[str, Any]] = []
    for (field, direction), value in zip(sort, last, strict=True):
        value = _restore(field, value)
        beyond = _beyond(field, value, direction == 1)
        if beyond is not None:
            branches.append({"$and": [*equal, beyond]} if equal else beyond)
        equal.append({field: value})
    return {"$or": branches} if branches else {"_id": {"$exists": False}}


def _beyond(field: str, value: Any, ascending: bool) -> dict[str, Any] | None:
    if ascending:
        return {field: {"$ne": None}} if value is None else {field: {"$gt": value}}
    if value is None:
        return None  # nothing sorts below a missing value
    return {"$or": [{field: {"$lt": value}}, {field: None}]}


def _restore(field: str, value: Any) -> Any:
    if field == "lu" and isinstance(value, str):
        from datetime import datetime

        return datetime.fromisoformat(value)
    return value
