"""Evaluating search-parameter expressions: a fast path for simple paths, fhirpathpy for the rest.

Extraction runs on every write, and fhirpathpy costs ~20 µs even for `Patient.gender`, so the expressions
R4 actually uses are compiled into a few dict lookups:
  `A.b.c`                      children, lists flattened; choice elements (`Observation.effective`) read
                               every `effective<Type>` key the R4 model lists for that element
  `(A.b as T)`, `A.b.as(T)`, `A.b.ofType(T)`   one choice type (`valueQuantity`) or a type filter
  `... .where(resolve() is T)` references whose target type (from the reference string) is T
  `... .where(field = 'lit')`  elements whose field equals the literal (`telecom.where(system='email')`)
  `... .extension('url')`      the extensions with that url (then `.value` = every `value<Type>` key)
  `X | Y`                      union (concatenation; the index deduplicates)
Anything else (`exists()`, `[0]`, `%resource`, extensions of primitives, ...) goes to fhirpathpy with the R4
model, with a `resolve()` that answers from the reference string alone (there is no database here).
Every value comes back as an Item carrying its FHIR type when known (see common.Item).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.models import models

from fhir_server.search.common import Item
from fhir_server.search.registry import split_top_level

log = logging.getLogger(__name__)

MODEL: dict[str, Any] = models["r4"]
_PATH2TYPE: dict[str, str] = MODEL["path2Type"]
_CHOICES: dict[str, list[str]] = MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = MODEL["pathsDefinedElsewhere"]
_PARENT: dict[str, str] = MODEL["type2Parent"]

# Choice suffixes naming primitive types (the model lists them capitalised: "DateTime").
_PRIMITIVES = frozenset(
    {
        "Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
        "Integer", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri", "Url", "Uuid",
    }
)  # fmt: skip
_SYSTEM_TYPES = {
    "System.String": "string",
    "System.Boolean": "boolean",
    "System.Integer": "integer",
    "System.Decimal": "decimal",
    "System.Date": "date",
    "System.DateTime": "dateTime",
    "System.Time": "time",
    "System.Quantity": "Quantity",
}

Evaluator = Callable[[Any], list[Item]]
Step = Callable[[list[Item]], list[Item]]


class NotFast(Exception):
    """The expression is outside the fast-path subset: use fhirpathpy."""


def fhir_type_name(suffix: str) -> str:
    """ "DateTime" -> "dateTime", "Quantity" -> "Quantity"."""
    return suffix[0].lower() + suffix[1:] if suffix in _PRIMITIVES else suffix


def type_suffix(type_name: str) -> str:
    """ "dateTime" -> "DateTime": the casing choice keys use (`valueDateTime`)."""
    return type_name[0].upper() + type_name[1:]


@lru_cache(maxsize=1)
def _backbone_paths() -> frozenset[str]:
    """Every path having children in the model: backbone elements have no path2Type entry of their own."""
    out: set[str] = set()
    for path in (*_PATH2TYPE, *_CHOICES):
        parts = path.split(".")
        for i in range(1, len(parts)):
            out.add(".".join(parts[:i]))
    return frozenset(out)


def _type_chain(path: str) -> list[str]:
    """`path` then its ancestor types, so that `Age.value` is found as `Quantity.value`."""
    chain = [path]
    while "." not in chain[-1] and chain[-1] in _PARENT:
        chain.append(_PARENT[chain[-1]])
    return chain


def _nav(type_name: str) -> str | None:
    """The model path to continue from a value of this type (None for primitives)."""
    return type_name if type_name[:1].isupper() and not type_name.startswith("System.") else None


# ---------------------------------------------------------------------------------------------------
# Steps of the fast path. Each maps a list of Items to a list of Items.


class _Child:
    __slots__ = ("name", "nav", "type")

    def __init__(self, name: str, type_: str | None, nav: str | None) -> None:
        self.name, self.type, self.nav = name, type_, nav

    def __call__(self, items: list[Item]) -> list[Item]:
        out: list[Item] = []
        name, type_, nav = self.name, self.type, self.nav
        for it in items:
            v = it.value.get(name) if isinstance(it.value, dict) else None
            if v is None:
                continue
            if isinstance(v, list):
                out.extend(Item(x, type_, nav) for x in v if x is not None)
            else:
                out.append(Item(v, type_, nav))
        return out


class _Choice:
    """A choice element: each of its `name<Type>` keys."""

    __slots__ = ("options",)

    def __init__(self, options: list[tuple[str, str, str | None]]) -> None:
        self.options = options  # (key, FHIR type, nav path)

    def __call__(self, items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for it in items:
            if not isinstance(it.value, dict):
                continue
            for key, type_, nav in self.options:
                v = it.value.get(key)
                if v is None:
                    continue
                if isinstance(v, list):
                    out.extend(Item(x, type_, nav) for x in v if x is not None)
                else:
                    out.append(Item(v, type_, nav))
        return out


class _IsType:
    """`as(T)` / `ofType(T)` on a non-choice element: keep values of that type."""

    __slots__ = ("suffix",)

    def __init__(self, type_name: str) -> None:
        self.suffix = type_suffix(type_name)

    def __call__(self, items: list[Item]) -> list[Item]:
        return [it for it in items if it.type and type_suffix(it.type) == self.suffix]


class _WhereEq:
    __slots__ = ("field", "literal")

    def __init__(self, field: str, literal: str) -> None:
        self.field, self.literal = field, literal

    def __call__(self, items: list[Item]) -> list[Item]:
        return [it for it in items if isinstance(it.value, dict) and it.value.get(self.field) == self.literal]


class _ResolveIs:
    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, items: list[Item]) -> list[Item]:
        return [it for it in items if reference_type(it.value) == self.target]


class _Empty:
    def __call__(self, items: list[Item]) -> list[Item]:
        return []


_HISTORY = re.compile(r"/_history/[^/]+$")
_TYPED_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}$")


def reference_type(value: Any) -> str | None:
    """The resource type a Reference (or a reference string) points to, decided without a database:
    `Reference.type` when given, else the `Type/id` part of a relative or absolute reference."""
    if isinstance(value, dict):
        if value.get("type"):
            return value["type"]
        value = value.get("reference")
    if not isinstance(value, str) or value.startswith("#"):
        return None
    m = _TYPED_REF.search(_HISTORY.sub("", value.split("?", 1)[0]))
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------------
# Fast-path parsing


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FUNC = re.compile(r"^(as|ofType)\(\s*(?:FHIR\.)?([A-Za-z]+)\s*\)$")
_WHERE_RESOLVE = re.compile(r"^where\(\s*resolve\(\)\s+is\s+(?:FHIR\.)?([A-Za-z]+)\s*\)$")
_WHERE_EQ = re.compile(r"^where\(\s*([A-Za-z]+)\s*=\s*'([^'\\]*)'\s*\)$")
_EXTENSION = re.compile(r"^extension\(\s*'([^'\\]*)'\s*\)$")
_AS_OP = re.compile(r"^(.*\S)\s+as\s+(?:FHIR\.)?([A-Za-z]+)$", re.S)


def _split_dots(expr: str) -> list[str]:
    return split_top_level(expr, ".")


def _closing_paren(text: str) -> int:
    """Index of the parenthesis closing the one at text[0]."""
    depth = 0
    for pos, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return pos
    raise NotFast(text)


def _segments(alt: str) -> list[tuple[str, str]]:
    """("child", name) | ("as", Type) | ("resolve", Type) | ("where", "field=lit") segments of a path."""
    alt = alt.strip()
    if alt.startswith("("):
        end = _closing_paren(alt)
        inner, rest = alt[1:end], alt[end + 1 :].strip()
        m = _AS_OP.match(inner)
        segs = [*_segments(m.group(1)), ("as", m.group(2))] if m else _segments(inner)
        if rest:
            if not rest.startswith("."):
                raise NotFast(alt)
            segs += _segments(rest[1:])
        return segs
    segs: list[tuple[str, str]] = []
    for part in _split_dots(alt):
        part = part.strip()
        if _IDENT.match(part):
            segs.append(("child", part))
        elif m := _FUNC.match(part):
            segs.append(("as", m.group(2)))
        elif m := _WHERE_RESOLVE.match(part):
            segs.append(("resolve", m.group(1)))
        elif m := _WHERE_EQ.match(part):
            segs.append(("where", f"{m.group(1)}={m.group(2)}"))
        elif m := _EXTENSION.match(part):  # extension('url') = extension.where(url = 'url')
            segs += [("child", "extension"), ("where", f"url={m.group(1)}")]
        else:
            raise NotFast(part)
    return segs


def _child_step(nav: str, name: str, cast: str | None) -> tuple[Step, str | None]:
    """The step reading child `name` from values at model path `nav`, and the nav path after it."""
    for base in _type_chain(nav):
        path = f"{base}.{name}"
        path = _ELSEWHERE.get(path, path) if path not in _CHOICES and path not in _PATH2TYPE else path
        if path in _CHOICES:
            options = [
                (name + suffix, fhir_type_name(suffix), _nav(fhir_type_name(suffix)))
                for suffix in _CHOICES[path]
                if cast is None or suffix == type_suffix(cast)
            ]
            if not options:
                return _Empty(), None
            # Navigating further below an unrestricted choice would need one path per type.
            return _Choice(options), options[0][2] if len(options) == 1 else "?"
        if path in _PATH2TYPE:
            t = _PATH2TYPE[path]
            t = _SYSTEM_TYPES.get(t, t)
            step = _Child(name, t, _nav(t))
            if cast is not None and type_suffix(cast) != type_suffix(t) and _PARENT.get(t) != cast:
                return _Empty(), None
            return step, _nav(t)
        if path in _backbone_paths():
            return _Child(name, None, path), path
    raise NotFast(f"{nav}.{name}")


def _chain(steps: list[Step]) -> Step:
    """The steps applied in turn, stopping as soon as nothing is left (most parameters select nothing)."""
    if len(steps) == 1:
        return steps[0]

    def run(items: list[Item]) -> list[Item]:
        for step in steps:
            items = step(items)
            if not items:
                return items
        return items

    return run


def compile_fast(expr: str, context: str) -> Evaluator:
    """Fast evaluator of `expr` on values at model path `context` (a resource type for absolute
    expressions, e.g. "Observation"; a path like "Observation.component" for relative ones)."""
    root = context.split(".")[0]
    alternatives: list[list[Step]] = []
    for alt in split_top_level(expr):
        segs = _segments(alt)
        if segs and segs[0][0] == "child" and segs[0][1][:1].isupper():
            if segs[0][1] != root:  # another resource type's part: selects nothing here
                alternatives.append([_Empty()])
                continue
            segs = segs[1:]
        steps: list[Step] = []
        nav: str | None = context
        i = 0
        while i < len(segs):
            kind, arg = segs[i]
            if kind == "child":
                if nav is None or nav == "?":
                    raise NotFast(alt)
                cast = segs[i + 1][1] if i + 1 < len(segs) and segs[i + 1][0] == "as" else None
                step, nav = _child_step(nav, arg, cast)
                steps.append(step)
                i += 2 if cast else 1
                continue
            if kind == "as":
                steps.append(_IsType(arg))
                nav = _nav(arg)
            elif kind == "resolve":
                steps.append(_ResolveIs(arg))
            elif kind == "where":
                field, _, literal = arg.partition("=")
                steps.append(_WhereEq(field, literal))
            i += 1
        alternatives.append(steps)

    start_type = context if "." not in context else None
    chains = [_chain(steps) for steps in alternatives]
    if len(chains) == 1:
        only = chains[0]
        return lambda value: only([Item(value, start_type, context)])

    def evaluate(value: Any) -> list[Item]:
        start = [Item(value, start_type, context)]
        out: list[Item] = []
        for chain in chains:
            out.extend(chain(start))
        return out

    return evaluate


# ---------------------------------------------------------------------------------------------------
# fhirpathpy fallback


def _resolve(inputs: list[Any]) -> list[Any]:
    """FHIRPath resolve() without a database: a stub resource of the type named by the reference, enough
    for `resolve() is Patient` and `resolve().ofType(Patient)`."""
    out = []
    for value in inputs:
        rtype = reference_type(value)
        if rtype:
            out.append(ResourceNode.create_node({"resourceType": rtype}))
    return out


_OPTIONS = {
    "returnRawData": True,
    "userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}},
}


def _item_from_node(node: Any) -> Item:
    if isinstance(node, ResourceNode):
        path = node.path
        if path is None:
            return Item(node.data)
        if path.startswith("System."):
            return Item(node.data, _SYSTEM_TYPES.get(path))
        if "." in path:  # a backbone element
            return Item(node.data, None, path)
        return Item(node.data, path, _nav(path))
    if isinstance(node, FP_Type):
        return Item(str(node))
    if isinstance(node, bool):
        return Item(node, "boolean")
    return Item(node)


def compile_fhirpath(expr: str, context: str) -> Evaluator:
    fn = fhirpathpy.compile(expr, MODEL, _OPTIONS)
    is_resource = "." not in context

    def evaluate(value: Any) -> list[Item]:
        node = value if is_resource and isinstance(value, dict) else ResourceNode.create_node(value, context)
        return [_item_from_node(n) for n in fn(node)]

    return evaluate


@lru_cache(maxsize=8192)
def compile_expression(expr: str, context: str) -> Evaluator:
    """Evaluator for `expr` from model path `context`; compiled once per (expression, context)."""
    try:
        return compile_fast(expr, context)
    except NotFast:
        return compile_fhirpath(expr, context)


def is_fast(expr: str, context: str) -> bool:
    try:
        compile_fast(expr, context)
    except NotFast:
        return False
    return True
