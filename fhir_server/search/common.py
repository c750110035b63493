"""Helpers shared by the per-type modules in fhir_server/search/types/."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from fhir_server.search.errors import SearchError


class Item(NamedTuple):
    """One value selected by a search-parameter expression.

    `type` is its FHIR type when known ("CodeableConcept", "dateTime", ...; None when FHIRPath could not
    tell, then the type modules recognise the value by its shape). `path` is the model path to navigate
    from it ("Observation.component", "UsageContext"): composites evaluate their components from there."""

    value: Any
    type: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class IndexContext:
    resource_type: str
    base_url: str = ""
    # Per-resource memo: composites share components (`code` of code-value-quantity, combo-code-...).
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class QueryContext:
    resource_type: str
    base_url: str = ""
    # Reference point of the `ap` prefix on dates; fixed here so that a query is deterministic.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


# ---------------------------------------------------------------------------------------------------
# Strings

# Letters NFKD does not decompose but that French/European users type without the diacritic/ligature.
_EXTRA_FOLD = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=65536)  # displays and names repeat a lot across resources
def normalize(text: str) -> str:
    """Accent- and case-insensitive form: NFKD, combining marks removed, casefolded, spaces collapsed.

    "Hélène" -> "helene", "LEFÈVRE" -> "lefevre", "Cœur" -> "coeur"."""
    if text.isascii():  # fast path: most values
        return _SPACES.sub(" ", text).strip().lower()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped.casefold().translate(_EXTRA_FOLD)).strip()


def regex_prefix(text: str) -> dict[str, str]:
    """An anchored regex so MongoDB can use index bounds."""
    return {"$regex": "^" + re.escape(text)}


@lru_cache(maxsize=65536)
def hash16(text: str) -> str:
    """First 16 hex characters of sha1: keys of unit- and composite-specific sub-fields."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def unique(values: Iterable[Any]) -> list[Any]:
    """Deduplicated, order kept."""
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------------------------------
# Search-value syntax: `,` separates alternatives, `|` and `$` separate parts; `\` escapes them.


def split_escaped(value: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on `sep` not preceded by a backslash; parts keep their escapes (unescape them last)."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            buf.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep and maxsplit != len(parts):
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


_ESCAPE = re.compile(r"\\([\\,|$])")


def unescape(value: str) -> str:
    return _ESCAPE.sub(r"\1", value)


def split_or(value: str) -> list[str]:
    """The comma-separated alternatives of one parameter occurrence (still escaped)."""
    return split_escaped(value, ",")


# ---------------------------------------------------------------------------------------------------
# Prefixes (number, date, quantity)

PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})


def split_prefix(value: str) -> tuple[str, str]:
    """("ge", "2020") from "ge2020"; ("eq", v) without prefix. An unknown two-letter prefix is an error."""
    if len(value) >= 2 and value[:2].isalpha() and value[:2].islower():
        prefix = value[:2]
        if prefix not in PREFIXES:
            raise SearchError(f"unknown search prefix {prefix!r} in {value!r}")
        return prefix, value[2:]
    return "eq", value


# ---------------------------------------------------------------------------------------------------
# Combining predicates


def any_of(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """OR of clauses; plain equalities on the same field become one `$in` (one index scan)."""
    if len(clauses) == 1:
        return clauses[0]
    eq_by_field: dict[str, list[Any]] = {}
    others: list[dict[str, Any]] = []
    for clause in clauses:
        if len(clause) == 1:
            ((key, val),) = clause.items()
            if not key.startswith("$") and not isinstance(val, dict):
                eq_by_field.setdefault(key, []).append(val)
                continue
        others.append(clause)
    merged = [{key: vals[0]} if len(vals) == 1 else {key: {"$in": unique(vals)}} for key, vals in eq_by_field.items()]
    out = merged + others
    return out[0] if len(out) == 1 else {"$or": out}


def all_of(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    clauses = [c for c in clauses if c]
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def none_of(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """NOT(any of): `$ne`/`$nin` for equalities on one field (resources without the field match too)."""
    positive = any_of(clauses)
    if len(positive) == 1:
        ((key, val),) = positive.items()
        if not key.startswith("$"):
            if not isinstance(val, dict):
                return {key: {"$ne": val}}
            if set(val) == {"$in"}:
                return {key: {"$nin": val["$in"]}}
    return {"$nor": [positive]}


def check_modifier(modifier: str | None, supported: Iterable[str], type_name: str) -> None:
    if modifier is not None and modifier not in supported:
        raise SearchError(f"modifier :{modifier} is not supported on {type_name} parameters")
