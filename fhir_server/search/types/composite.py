"""composite parameters.

The composite expression selects elements (the Observation itself, each Observation.component, each
useContext...); every component expression is evaluated relative to each element, so `code$value`
pairs never mix values of different elements.
  All components token/string/uri/reference: `i.<p>` = {"k": ["<c1>$<c2>", ...]}, the product of the
  forms each component can be queried with (token: "code" and "system|code" or "|code"; string: its
  normalized form; uri/reference: as stored). Query `a$b` -> {"i.p.k": "<a>$<b>"}.
  Last component number/quantity/date: `i.<p>` = {"q_<hash(key)>": <number/quantity entry>} or
  {"d_<hash(key)>": <date entry>} where key is the "$"-joined keys of the other components.
  Query `a$gt5.4|sys|code` -> the quantity predicate of `gt5.4|sys|code` on "i.p.q_<hash(a)>".
Composites whose numeric/date component is not the last one (the MolecularSequence coordinates) are not
indexed, and searching them is an error.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import product
from types import ModuleType
from typing import Any

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    check_modifier,
    hash16,
    split_escaped,
    unique,
)
from fhir_server.search.errors import SearchError
from fhir_server.search.paths import compile_expression
from fhir_server.search.registry import Component, SearchParam
from fhir_server.search.types import date, number, quantity, reference, string, token, uri

MODIFIERS: frozenset[str] = frozenset()

KEYED: dict[str, ModuleType] = {"token": token, "string": string, "uri": uri, "reference": reference}
VALUED: dict[str, ModuleType] = {"number": number, "quantity": quantity, "date": date}
_SUBKEY_PREFIX = {"number": "q_", "quantity": "q_", "date": "d_"}


@lru_cache(maxsize=1024)
def _layout(param: SearchParam) -> tuple[tuple[Component, ...], Component | None] | None:
    """(key components, value component or None), or None when the composite is not supported."""
    comps = param.components
    if not comps:
        return None
    last = comps[-1]
    keyed, valued = (comps[:-1], last) if last.type in VALUED else (comps, None)
    if not keyed or any(c.type not in KEYED for c in keyed):
        return None
    return keyed, valued


def _component_entry(comp: Component, element: Item, param: SearchParam, ctx: IndexContext) -> dict:
    # The element object lives as long as the extraction of its resource, and so does ctx.memo.
    memo_key = (id(element.value), comp.expression, comp.type)
    entry = ctx.memo.get(memo_key)
    if entry is None:
        context = element.path or element.type or ctx.resource_type
        items = compile_expression(comp.expression, context)(element.value)
        module = KEYED.get(comp.type) or VALUED[comp.type]
        entry = module.index(items, param, ctx) if items else {}
        ctx.memo[memo_key] = entry
    return entry


def _merge(target: dict[str, list[Any]], entry: dict[str, list[Any]]) -> None:
    for key, values in entry.items():
        target.setdefault(key, []).extend(values)


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, Any]:
    layout = _layout(param)
    if layout is None:
        return {}
    keyed, valued = layout
    out: dict[str, Any] = {}
    for element in items:
        # The value component first: it is absent for most composites of a given resource
        # (code-value-concept on a quantity Observation), and then the keys need not be computed.
        entry = _component_entry(valued, element, param, ctx) if valued is not None else {}
        if valued is not None and not entry:
            continue
        key_lists = []
        for comp in reversed(keyed):
            keys = KEYED[comp.type].composite_keys(_component_entry(comp, element, param, ctx))
            if not keys:
                break
            key_lists.append(keys)
        else:
            key_lists.reverse()
            joined = ["$".join(combo) for combo in product(*key_lists)]
            if valued is None:
                out.setdefault("k", []).extend(joined)
                continue
            for key in joined:
                _merge(out.setdefault(_SUBKEY_PREFIX[valued.type] + hash16(key), {}), entry)
    for key, value in out.items():
        out[key] = unique(value) if isinstance(value, list) else {k: unique(v) for k, v in value.items()}
    return out


def predicate(field: str, raw: str, param: SearchParam, ctx: QueryContext) -> dict[str, Any]:
    layout = _layout(param)
    if layout is None:
        raise SearchError(f"composite parameter {param.code!r} is not supported")
    keyed, valued = layout
    parts = split_escaped(raw, "$")
    if len(parts) != len(param.components):
        raise SearchError(f"{param.code!r} expects {len(param.components)} '$'-separated values, got {raw!r}")
    key_lists = [KEYED[c.type].composite_query_keys(part, ctx) for c, part in zip(keyed, parts, strict=False)]
    keys = ["$".join(combo) for combo in product(*key_lists)]
    if valued is None:
        return any_of([{f"{field}.k": key} for key in keys])
    module = VALUED[valued.type]
    prefix = _SUBKEY_PREFIX[valued.type]
    return any_of([module.predicate(f"{field}.{prefix}{hash16(key)}", parts[-1], ctx) for key in keys])


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    check_modifier(modifier, MODIFIERS, "composite")
    return any_of([predicate(field, raw, param, ctx) for raw in alternatives])
