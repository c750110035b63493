"""Search parameters -> MongoDB filter on the `i` index (and `_id`), per /tmp/storage_spec.md.

Per type, the exact filter shapes are documented at the top of types/<type>.py. Common rules:
  `p:missing=true`  -> {"i.p": {"$exists": False}};  `p:missing=false` -> {"i.p": {"$exists": True}}
  `p=a,b`           -> OR of the alternatives (equalities on one field merged into `$in`)
  repeated params   -> {"$and": [...]}
  `_id=a,b`         -> {"_id": {"$in": ["a", "b"]}} (`_id:not` -> `$ne`/`$nin`)
Not handled here: result parameters (`_sort`, `_count`, `_include`, ...: skipped), chains
(`subject.name=`, `subject:Patient.name=`) and `_has` (returned as `deferred`, they need the database).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server.search.common import QueryContext, all_of, any_of, none_of, split_or, unescape
from fhir_server.search.errors import SearchError, UnknownParameter
from fhir_server.search.registry import Registry
from fhir_server.search.types import TYPE_MODULES

RESULT_PARAMS = frozenset(
    {
        "_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total", "_contained",
        "_containedType", "_format", "_pretty",
    }
)  # fmt: skip


def _missing(field: str, values: str) -> dict[str, Any]:
    if values not in ("true", "false"):
        raise SearchError(f":missing expects true or false, got {values!r}")
    return {field: {"$exists": values == "false"}}


def _id_filter(modifier: str | None, values: str) -> dict[str, Any]:
    if modifier == "missing":
        return _missing("_id", values)
    ids = [unescape(v) for v in split_or(values) if v]
    if not ids:
        return {}
    clauses = [{"_id": i} for i in ids]
    if modifier is None:
        return any_of(clauses)
    if modifier == "not":
        return none_of(clauses)
    raise SearchError(f"modifier :{modifier} is not supported on _id")


def build_param_filter(
    resource_type: str,
    name: str,
    modifier: str | None,
    values: str,
    registry: Registry,
    base_url: str,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The filter for one occurrence of a parameter (`values` as in the query string, comma = OR).

    Returns {} when there is nothing to filter (empty value: FHIR says to ignore it). Raises
    UnknownParameter (message = the name) for a name unknown on the type or not supported
    (`_text`, `_content`, `_query`, `special` parameters), SearchError for a malformed value or an
    unsupported modifier. `now` fixes the reference time of the `ap` date prefix (tests)."""
    if name == "_id":
        return _id_filter(modifier, values)
    param = registry.get(resource_type, name)
    if param is None or param.type not in TYPE_MODULES or not param.expression:
        raise UnknownParameter(name)
    field = f"i.{param.code}"
    if modifier == "missing":
        return _missing(field, values)
    if param.modifiers and modifier is not None and modifier not in param.modifiers:
        raise SearchError(f"modifier :{modifier} is not allowed on {name!r}")
    alternatives = [v for v in split_or(values) if v != ""]
    if not alternatives:
        return {}
    ctx = (
        QueryContext(resource_type, base_url.rstrip("/"))
        if now is None
        else QueryContext(resource_type, base_url.rstrip("/"), now)
    )
    return TYPE_MODULES[param.type].build(field, param, modifier, alternatives, ctx)


def is_deferred(key: str) -> bool:
    """Chains and reverse chains need the database: the caller resolves them."""
    return key.startswith("_has:") or key == "_has" or "." in key


def build_filter(
    resource_type: str, params: list[tuple[str, str]], registry: Registry, base_url: str
) -> tuple[dict[str, Any], list[str], list[tuple[str, str]]]:
    """(AND of every parameter's filter, unknown/unsupported parameter keys, deferred (key, value) pairs).

    `params` are the raw query items (`("name:exact", "Dupont")`). Result parameters are skipped
    silently; chains and `_has` are returned in `deferred`. Malformed values raise SearchError."""
    clauses: list[dict[str, Any]] = []
    unknown: list[str] = []
    deferred: list[tuple[str, str]] = []
    for key, value in params:
        name, _, modifier = key.partition(":")
        if name in RESULT_PARAMS:
            continue
        if is_deferred(key):
            deferred.append((key, value))
            continue
        try:
            flt = build_param_filter(resource_type, name, modifier or None, value, registry, base_url)
        except UnknownParameter:
            unknown.append(key)
            continue
        if flt:
            clauses.append(flt)
    return all_of(clauses), unknown, deferred
