"""token parameters.

Index `i.<p>`: {"c": [code/value], "sc": ["system|code", or "|code" without system], "s": [system],
"t": [normalized display/text], "ot": ["typeSystem|typeCode|value"]}.
  Coding          c=code, sc, s=system, t=display
  CodeableConcept each coding, plus t=text
  Identifier      c=value, sc="system|value", s=system, t=type.text, ot for each type coding
  ContactPoint    c=value, sc="<ContactPoint.system>|value", s=ContactPoint.system
  code/string/uri/id/... primitives   c=value, sc="|value";  boolean  c="true"/"false", sc="|true"/"|false"
Query:
  `code`      -> {"i.p.c": "code"}          `sys|code` -> {"i.p.sc": "sys|code"}
  `|code`     -> {"i.p.sc": "|code"}        `sys|`     -> {"i.p.s": "sys"}
  `:not`      -> {"i.p.c": {"$ne": ..}} / {"$nin": [..]} / {"$nor": [..]} (resources without it match)
  `:text`     -> {"i.p.t": {"$regex": "^normalized"}}
  `:of-type`  -> {"i.p.ot": "typesys|typecode|value"}
  `:in`, `:not-in`, `:above`, `:below`: not supported (SearchError).
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    check_modifier,
    none_of,
    normalize,
    regex_prefix,
    split_escaped,
    unescape,
    unique,
)
from fhir_server.search.errors import SearchError
from fhir_server.search.registry import SearchParam

MODIFIERS = frozenset({"not", "text", "of-type"})

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_PRIMITIVES = frozenset(
    {"code", "string", "uri", "url", "canonical", "id", "oid", "uuid", "markdown", "integer",
     "positiveInt", "unsignedInt", "decimal", "boolean"}
)  # fmt: skip


class _Entry:
    __slots__ = ("c", "ot", "s", "sc", "t")

    def __init__(self) -> None:
        self.c: list[str] = []
        self.sc: list[str] = []
        self.s: list[str] = []
        self.t: list[str] = []
        self.ot: list[str] = []

    def code(self, system: Any, code: Any) -> None:
        if isinstance(code, str) and code:
            self.c.append(code)
            self.sc.append(f"{system if isinstance(system, str) else ''}|{code}")
        if isinstance(system, str) and system:
            self.s.append(system)

    def text(self, text: Any) -> None:
        if isinstance(text, str) and text.strip():
            self.t.append(normalize(text))

    def as_dict(self) -> dict[str, list[str]]:
        out = {}
        for key in ("c", "sc", "s", "t", "ot"):
            values = getattr(self, key)
            if values:
                out[key] = unique(values)
        return out


def _coding(entry: _Entry, value: dict[str, Any]) -> None:
    entry.code(value.get("system"), value.get("code"))
    entry.text(value.get("display"))


def _concept(entry: _Entry, value: dict[str, Any]) -> None:
    for coding in value.get("coding") or ():
        if isinstance(coding, dict):
            _coding(entry, coding)
    entry.text(value.get("text"))


def _identifier(entry: _Entry, value: dict[str, Any]) -> None:
    ident = value.get("value")
    entry.code(value.get("system"), ident)
    id_type = value.get("type")
    if isinstance(id_type, dict):
        entry.text(id_type.get("text"))
        if isinstance(ident, str) and ident:
            for coding in id_type.get("coding") or ():
                if isinstance(coding, dict) and coding.get("code"):
                    entry.ot.append(f"{coding.get('system') or ''}|{coding['code']}|{ident}")


def _contact_point(entry: _Entry, value: dict[str, Any]) -> None:
    entry.code(value.get("system"), value.get("value"))


def _primitive(entry: _Entry, value: Any) -> None:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    entry.code(None, value)


def _kind(item: Item) -> str:
    """Which FHIR type to read the value as: the known type, else recognised by shape."""
    value, type_ = item.value, item.type
    if type_ in ("Coding", "CodeableConcept", "Identifier", "ContactPoint"):
        return type_
    if type_ in _PRIMITIVES or not isinstance(value, dict):
        return "primitive" if isinstance(value, str | bool | int | float) else ""
    if type_ is not None:
        return ""  # Reference, Quantity, ...: nothing a token search could match
    if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
        return "CodeableConcept"
    if "code" in value and "value" not in value:
        return "Coding"
    if "value" in value:
        return "ContactPoint" if value.get("system") in _CONTACT_SYSTEMS or "rank" in value else "Identifier"
    return ""


_READERS = {
    "Coding": _coding,
    "CodeableConcept": _concept,
    "Identifier": _identifier,
    "ContactPoint": _contact_point,
    "primitive": _primitive,
}


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, list[str]]:
    entry = _Entry()
    for item in items:
        reader = _READERS.get(_kind(item))
        if reader is not None:
            reader(entry, item.value)
    return entry.as_dict()


def _split_system(raw: str) -> tuple[str | None, str]:
    """(system or None when no `|`, code), unescaped."""
    parts = split_escaped(raw, "|", 1)
    if len(parts) == 1:
        return None, unescape(parts[0])
    return unescape(parts[0]), unescape(parts[1])


def predicate(field: str, raw: str) -> dict[str, Any]:
    system, code = _split_system(raw)
    if system is None:
        return {f"{field}.c": code}
    if code:
        return {f"{field}.sc": f"{system}|{code}"}
    if system:
        return {f"{field}.s": system}
    raise SearchError(f"token value {raw!r} has neither a system nor a code")


def _of_type(field: str, raw: str) -> dict[str, Any]:
    parts = [unescape(p) for p in split_escaped(raw, "|", 2)]
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SearchError(f":of-type expects 'type-system|type-code|value', got {raw!r}")
    return {f"{field}.ot": "|".join(parts)}


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    check_modifier(modifier, MODIFIERS, "token")
    if modifier == "text":
        return any_of([{f"{field}.t": regex_prefix(normalize(unescape(raw)))} for raw in alternatives])
    if modifier == "of-type":
        return any_of([_of_type(field, raw) for raw in alternatives])
    clauses = [predicate(field, raw) for raw in alternatives]
    return none_of(clauses) if modifier == "not" else any_of(clauses)


# Composite components: "code" and "system|code" (or "|code") forms.
def composite_keys(entry: dict[str, list[Any]]) -> list[str]:
    return unique([*entry.get("c", ()), *entry.get("sc", ())])


def composite_query_keys(raw: str, ctx: QueryContext) -> list[str]:
    system, code = _split_system(raw)
    if not code:
        raise SearchError(f"a token component needs a code, got {raw!r}")
    return [code if system is None else f"{system}|{code}"]
