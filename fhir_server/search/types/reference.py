"""reference parameters.

Index `i.<p>`: {"r": ["Type/id"], "cv": ["url|version"], "ic": [identifier value], "isc": ["sys|value"]}.
  Reference.reference: relative `Type/id` (a `/_history/n` suffix is dropped); absolute URLs on our base
  are stored relative, other absolute URLs and urns as they are; contained references (`#x`) are skipped.
  Reference.identifier: ic=value, isc="system|value" (or "|value").
  canonical / uri elements: r=url without `|version`, cv="url|version" when versioned.
Query:
  `123`                 -> {"i.p.r": "T/123"} or {"i.p.r": {"$in": ["T1/123", ...]}} for the param's targets
  `Patient/123`, `<base>/Patient/123` -> {"i.p.r": "Patient/123"};  other URLs -> {"i.p.r": url}
  `url|1.0` (canonical) -> {"i.p.cv": "url|1.0"}
  `:Patient` + `123`    -> {"i.p.r": "Patient/123"}
  `:identifier` `sys|v` -> {"i.p.isc": "sys|v"};  `v` -> {"i.p.ic": "v"}
Chains (`subject.name`) and `_has` are not handled here (they need the database).
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    split_escaped,
    unescape,
    unique,
)
from fhir_server.search.errors import SearchError
from fhir_server.search.registry import SearchParam

MODIFIERS = frozenset({"identifier"})  # plus a resource type (`subject:Patient`)

_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_RELATIVE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
_VERSIONED = re.compile(r"^(.*?(?:^|/)[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})/_history/[^/]+$")


def normalize_reference(ref: str, base_url: str) -> str | None:
    """The stored/queried form of a literal reference (None for contained ones)."""
    ref = ref.strip()
    if not ref or ref.startswith("#"):
        return None
    if base_url and ref.startswith(base_url + "/"):
        ref = ref[len(base_url) + 1 :]
    m = _VERSIONED.match(ref)
    return m.group(1) if m else ref


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, list[str]]:
    r: list[str] = []
    cv: list[str] = []
    ic: list[str] = []
    isc: list[str] = []
    for item in items:
        value = item.value
        if isinstance(value, str):  # canonical or uri
            url, sep, _version = value.partition("|")
            if url:
                r.append(url)
                if sep:
                    cv.append(value)
            continue
        if not isinstance(value, dict):
            continue
        if "resourceType" in value:  # a resource itself (Bundle.entry[0].resource)
            if value.get("id"):
                r.append(f"{value['resourceType']}/{value['id']}")
            continue
        ref = value.get("reference")
        if isinstance(ref, str):
            norm = normalize_reference(ref, ctx.base_url)
            if norm:
                r.append(norm)
        ident = value.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            ic.append(ident["value"])
            isc.append(f"{ident.get('system') or ''}|{ident['value']}")
    out = {"r": r, "cv": cv, "ic": ic, "isc": isc}
    return {k: unique(v) for k, v in out.items() if v}


def _check_type_modifier(modifier: str, param: SearchParam) -> None:
    if not _TYPE_NAME.match(modifier):
        raise SearchError(f"modifier :{modifier} is not supported on reference parameters")
    if param.targets and modifier not in param.targets:
        raise SearchError(f"{modifier} is not a target type of parameter {param.code!r}")


def _identifier(field: str, raw: str) -> dict[str, Any]:
    parts = split_escaped(raw, "|", 1)
    if len(parts) == 1:
        return {f"{field}.ic": unescape(parts[0])}
    system, value = unescape(parts[0]), unescape(parts[1])
    if not value:
        raise SearchError(f":identifier expects 'system|value' or 'value', got {raw!r}")
    return {f"{field}.isc": f"{system}|{value}"}


def query_references(raw: str, param: SearchParam, modifier: str | None, ctx: QueryContext) -> list[str]:
    """The stored forms a reference search value can match (several for a bare id with several targets)."""
    value = normalize_reference(unescape(raw), ctx.base_url.rstrip("/"))
    if not value:
        raise SearchError(f"invalid reference search value {raw!r}")
    if _RELATIVE.match(value):
        if modifier and not value.startswith(modifier + "/"):
            raise SearchError(f"reference {value!r} is not a {modifier}")
        return [value]
    if _ID.match(value):
        targets = [modifier] if modifier else list(param.targets)
        return [f"{t}/{value}" for t in targets]
    return [value]


def predicate(field: str, raw: str, param: SearchParam, modifier: str | None, ctx: QueryContext) -> dict:
    if modifier == "identifier":
        return _identifier(field, raw)
    value = unescape(raw).strip()
    if "|" in value and ":" in value.split("|", 1)[0]:  # versioned canonical
        return {f"{field}.cv": value}
    refs = query_references(raw, param, modifier, ctx)
    if not refs:  # bare id, parameter without declared targets
        return {f"{field}.r": {"$regex": f"^[A-Za-z]+/{re.escape(value)}$"}}
    return {f"{field}.r": refs[0]} if len(refs) == 1 else {f"{field}.r": {"$in": refs}}


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    if modifier is not None and modifier not in MODIFIERS:
        _check_type_modifier(modifier, param)
    return any_of([predicate(field, raw, param, modifier, ctx) for raw in alternatives])


# Composite components: the stored forms.
def composite_keys(entry: dict[str, list[Any]]) -> list[str]:
    return unique([*entry.get("r", ()), *entry.get("cv", ())])


def composite_query_keys(raw: str, ctx: QueryContext) -> list[str]:
    value = normalize_reference(unescape(raw), ctx.base_url.rstrip("/"))
    if not value:
        raise SearchError(f"invalid reference search value {raw!r}")
    return [value]
