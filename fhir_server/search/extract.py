"""extract_index: the `i` document (search index) of a resource, per /tmp/storage_spec.md.

For each search parameter of the resource's type (specialised expression, see registry.py) the values are
selected (paths.py: fast dict walk for plain paths, fhirpathpy otherwise) and turned into the parameter's
index entry by its type module (types/<type>.py). `_id` is answered from the document's `_id` and
`special` parameters are not indexed. A failing expression never fails the write: it is logged and the
parameter is left out of the index.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.search.common import IndexContext, Item
from fhir_server.search.paths import compile_expression
from fhir_server.search.registry import Registry, SearchParam
from fhir_server.search.types import TYPE_MODULES

log = logging.getLogger(__name__)

# Parameters not stored under `i`: `_id` is the document `_id` itself.
NOT_INDEXED = frozenset({"_id"})


@dataclass(frozen=True)
class _Plan:
    code: str
    param: SearchParam
    select: Callable[[Any], list[Item]]
    index: Callable[[list[Item], SearchParam, IndexContext], dict[str, Any]]


_PLANS: weakref.WeakKeyDictionary[Registry, dict[str, list[_Plan]]] = weakref.WeakKeyDictionary()


def _plans(registry: Registry, resource_type: str) -> list[_Plan]:
    per_type = _PLANS.setdefault(registry, {})
    plans = per_type.get(resource_type)
    if plans is None:
        plans = []
        for code, param in registry.params_for(resource_type).items():
            module = TYPE_MODULES.get(param.type)
            if module is None or not param.expression or code in NOT_INDEXED:
                continue
            try:
                select = compile_expression(param.expression, resource_type)
            except Exception as exc:  # an unparsable custom expression must not break every write
                log.warning("search parameter %s on %s not indexed: %s", code, resource_type, exc)
                continue
            plans.append(_Plan(code, param, select, module.index))
        per_type[resource_type] = plans
    return plans


_WARNED: set[tuple[str, str]] = set()


def _warn_once(resource_type: str, code: str, rid: Any, exc: Exception) -> None:
    """A failing custom expression fails on every resource: warn once, then only at debug level."""
    level = logging.DEBUG if (resource_type, code) in _WARNED else logging.WARNING
    _WARNED.add((resource_type, code))
    log.log(level, "search parameter %s not indexed on %s/%s: %s", code, resource_type, rid, exc)


def extract_index(resource: dict[str, Any], registry: Registry, base_url: str) -> dict[str, Any]:
    """The search index of `resource`: {param code: {field: [values]}} (empty entries left out)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return {}
    ctx = IndexContext(resource_type, base_url.rstrip("/"))
    out: dict[str, Any] = {}
    for plan in _plans(registry, resource_type):
        try:
            items = plan.select(resource)
            if not items:
                continue
            entry = plan.index(items, plan.param, ctx)
        except Exception as exc:  # fhirpathpy errors on odd data: skip the parameter, keep the write
            _warn_once(resource_type, plan.code, resource.get("id"), exc)
            continue
        if entry:
            out[plan.code] = entry
    return out
