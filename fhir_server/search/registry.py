"""The search parameters the server knows: R4 core (profiles/search-parameters.r4.json) plus custom ones.

The committed registry is built by profiles/build_search_registry.py from the official R4 bundle; the
server never reads anything outside profiles/ at runtime. Custom SearchParameter resources (one JSON file
each, or a Bundle of them) dropped in profiles/search-parameters/ are loaded on top and win over core
parameters with the same url, or the same code on the same base.

`Registry.params_for(type)` / `Registry.get(type, code)` return SearchParam objects *specialised* to that
type: `expression` holds only the part of a multi-type expression that applies to the type
(`AllergyIntolerance.code | Condition.code` -> `Condition.code` for Condition), with the `Resource.` /
`DomainResource.` prefix of common parameters rewritten to the type, so extraction evaluates only the
relevant part. `full_expression` keeps the definition's expression.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
CORE_FILE = "search-parameters.r4.json"
CUSTOM_DIR = "search-parameters"

# The few R4 resources that derive from Resource directly, not from DomainResource (no text/contained):
# DomainResource-based parameters (e.g. `_text`) do not apply to them.
NOT_DOMAIN_RESOURCES = frozenset({"Binary", "Bundle", "Parameters"})
ABSTRACT_BASES = ("Resource", "DomainResource")


@dataclass(frozen=True)
class Component:
    """One component of a composite parameter, its type and code resolved from its definition url."""

    definition: str
    expression: str
    type: str = ""
    code: str = ""


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    expression: str | None
    base: tuple[str, ...]
    targets: tuple[str, ...] = ()
    # Modifiers declared by the definition (R4 core declares none). The modifiers the server supports
    # per type live in fhir_server/search/types/<type>.py; a non-empty declaration restricts them further.
    modifiers: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    url: str = ""
    comparators: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None
    full_expression: str | None = field(default=None, compare=False)


# ---------------------------------------------------------------------------------------------------
# Compact form (shared with profiles/build_search_registry.py)


def compact_definition(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of a SearchParameter resource the server uses, in the committed registry's format."""
    if resource.get("resourceType") != "SearchParameter":
        return None
    code, ptype, url = resource.get("code"), resource.get("type"), resource.get("url")
    if not (code and ptype and url and resource.get("base")):
        return None
    out: dict[str, Any] = {"url": url, "code": code, "base": list(resource["base"]), "type": ptype}
    if resource.get("expression"):
        out["expression"] = resource["expression"]
    for key in ("target", "modifier", "comparator"):
        if resource.get(key):
            out[key] = list(resource[key])
    for key in ("multipleOr", "multipleAnd"):
        if key in resource:
            out[key] = bool(resource[key])
    if resource.get("component"):
        out["component"] = [
            {"definition": c.get("definition", ""), "expression": c.get("expression", "")}
            for c in resource["component"]
        ]
    return out


def definitions_in(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The compact definitions in a SearchParameter resource or a Bundle of them."""
    if doc.get("resourceType") == "Bundle":
        for entry in doc.get("entry") or []:
            compact = compact_definition(entry.get("resource") or {})
            if compact:
                yield compact
    else:
        compact = compact_definition(doc)
        if compact:
            yield compact


def read_custom_definitions(directory: Path) -> list[dict[str, Any]]:
    """Compact definitions from every *.json file in `directory` (sorted by file name, for determinism)."""
    out: list[dict[str, Any]] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        with path.open(encoding="utf-8") as fh:
            out.extend(definitions_in(json.load(fh)))
    return out


# ---------------------------------------------------------------------------------------------------
# Per-type expressions


def split_top_level(expr: str, sep: str = "|") -> list[str]:
    """Split on `sep` outside parentheses, brackets and quoted strings."""
    parts, depth, quote, start = [], 0, "", 0
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(expr[start:i].strip())
            start = i + 1
        i += 1
    parts.append(expr[start:].strip())
    return [p for p in parts if p]


_LEADING_NAME = re.compile(r"^\(*\s*([A-Za-z_][A-Za-z0-9_]*)")


def leading_name(part: str) -> str:
    m = _LEADING_NAME.match(part)
    return m.group(1) if m else ""


def expression_for_type(expression: str, resource_type: str) -> str:
    """The parts of a (possibly multi-type) expression that apply to `resource_type`.

    Keeps the parts starting with the type (also inside parentheses: `(X.value as Quantity)`), rewrites
    `Resource.`/`DomainResource.` parts to the type so the fast path knows where it starts, keeps relative
    (lower-case) parts. If nothing matches, the whole expression is returned: FHIRPath will then simply
    select nothing rather than the server guessing."""
    kept: list[str] = []
    for part in split_top_level(expression):
        name = leading_name(part)
        if name == resource_type or (name and name[0].islower()):
            kept.append(part)
        elif name in ABSTRACT_BASES:
            kept.append(re.sub(rf"\b{name}\b", resource_type, part, count=1))
    return " | ".join(kept) if kept else expression


# ---------------------------------------------------------------------------------------------------
# Registry


def _param_from_compact(d: dict[str, Any], types_by_url: dict[str, tuple[str, str]]) -> SearchParam:
    components = tuple(
        Component(
            definition=c["definition"],
            expression=c["expression"],
            type=types_by_url.get(c["definition"], ("", ""))[0],
            code=types_by_url.get(c["definition"], ("", ""))[1],
        )
        for c in d.get("component", ())
    )
    return SearchParam(
        code=d["code"],
        type=d["type"],
        expression=d.get("expression"),
        base=tuple(d["base"]),
        targets=tuple(d.get("target", ())),
        modifiers=tuple(d.get("modifier", ())),
        components=components,
        url=d["url"],
        comparators=tuple(d.get("comparator", ())),
        multiple_or=d.get("multipleOr"),
        multiple_and=d.get("multipleAnd"),
        full_expression=d.get("expression"),
    )


def _applies(base: str, resource_type: str) -> int:
    """How specifically a base applies to a type: 2 exact, 1 via Resource/DomainResource, 0 not at all."""
    if base == resource_type:
        return 2
    if base == "Resource" or (base == "DomainResource" and resource_type not in NOT_DOMAIN_RESOURCES):
        return 1
    return 0


class Registry:
    """Search parameters by resource type. Immutable after construction; safe to share."""

    def __init__(self, definitions: Iterable[dict[str, Any]]) -> None:
        # Later definitions win over earlier ones with the same url (custom after core).
        by_url: dict[str, dict[str, Any]] = {}
        for d in definitions:
            by_url.pop(d["url"], None)
            by_url[d["url"]] = d
        types_by_url = {url: (d["type"], d["code"]) for url, d in by_url.items()}
        self._params: list[SearchParam] = [_param_from_compact(d, types_by_url) for d in by_url.values()]
        self._by_url = {p.url: p for p in self._params}
        self._per_type: dict[str, dict[str, SearchParam]] = {}

    def __len__(self) -> int:
        return len(self._params)

    def all(self) -> list[SearchParam]:
        """Every parameter as defined (not specialised)."""
        return list(self._params)

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    @property
    def resource_types(self) -> set[str]:
        """Concrete resource types some parameter is defined on."""
        return {b for p in self._params for b in p.base if b not in ABSTRACT_BASES}

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        """code -> parameter specialised to `resource_type` (do not mutate the returned dict)."""
        cached = self._per_type.get(resource_type)
        if cached is None:
            cached = self._build_for(resource_type)
            self._per_type[resource_type] = cached
        return cached

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.params_for(resource_type).get(code)

    def _build_for(self, resource_type: str) -> dict[str, SearchParam]:
        chosen: dict[str, tuple[int, SearchParam]] = {}
        for p in self._params:  # in load order: a later one of equal specificity replaces an earlier one
            rank = max((_applies(b, resource_type) for b in p.base), default=0)
            if rank and rank >= chosen.get(p.code, (0, p))[0]:
                chosen[p.code] = (rank, p)
        out: dict[str, SearchParam] = {}
        for code, (_, p) in sorted(chosen.items()):
            expr = expression_for_type(p.expression, resource_type) if p.expression else None
            out[code] = replace(p, expression=expr)
        return out


def load_definitions(profiles_dir: Path = PROFILES_DIR) -> list[dict[str, Any]]:
    core_path = profiles_dir / CORE_FILE
    with core_path.open(encoding="utf-8") as fh:
        core = json.load(fh)["params"]
    custom = read_custom_definitions(profiles_dir / CUSTOM_DIR)
    if custom:
        log.info("loaded %d custom search parameter(s) from %s", len(custom), profiles_dir / CUSTOM_DIR)
    return [*core, *custom]


@lru_cache(maxsize=4)
def load_registry(profiles_dir: Path = PROFILES_DIR) -> Registry:
    """The registry from profiles/ (cached: the files are read once per process)."""
    return Registry(load_definitions(profiles_dir))
