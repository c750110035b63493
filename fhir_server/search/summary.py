"""`_summary` and `_elements`: returning part of each resource, marked SUBSETTED as FHIR asks."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_server.errors import FHIRError

SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
ALWAYS = ("resourceType", "id", "meta")


@lru_cache(maxsize=256)
def _summary_elements(resource_type: str) -> frozenset[str] | None:
    """Summary elements (isSummary) of a type, from the R4B model; None if the model does not know it."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None
    # Choice elements appear under their typed names (valueQuantity...), which is how JSON has them.
    return frozenset(model.summary_elements_sequence())


@lru_cache(maxsize=256)
def _mandatory_elements(resource_type: str) -> frozenset[str]:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return frozenset()
    return frozenset(name for name, f in model.model_fields.items() if f.is_required())


def parse_summary(raw: str | None) -> str | None:
    if raw is None:
        return None
    if raw not in SUMMARY_MODES:
        raise FHIRError(400, f"_summary must be one of {', '.join(sorted(SUMMARY_MODES))}", code="invalid")
    return raw


def parse_elements(raw: list[str]) -> frozenset[str] | None:
    names = {n.strip() for value in raw for n in value.split(",") if n.strip()}
    return frozenset(names) or None


def _mark_subsetted(resource: dict[str, Any]) -> None:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    resource["meta"] = meta


def _keep(resource: dict[str, Any], wanted: frozenset[str]) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k in wanted or k in ALWAYS or k.lstrip("_") in wanted}
    _mark_subsetted(out)
    return out


def subset(resource: dict[str, Any], summary: str | None, elements: frozenset[str] | None) -> dict[str, Any]:
    """The part of `resource` the client asked for (the resource itself when nothing was asked)."""
    rtype = resource.get("resourceType", "")
    if summary in ("true",):
        wanted = _summary_elements(rtype)
        return resource if wanted is None else _keep(resource, wanted)
    if summary == "text":
        return _keep(resource, frozenset({"text"}) | _mandatory_elements(rtype))
    if summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
        _mark_subsetted(out)
        return out
    if elements:
        # Mandatory elements are always kept (FHIR search, _elements).
        return _keep(resource, elements | _mandatory_elements(rtype))
    return resource
