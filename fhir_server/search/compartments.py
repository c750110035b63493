"""The Patient compartment (profiles/compartmentdefinition-patient.json, official R4)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from fhir_server.config import REPO_ROOT
from fhir_server.errors import FHIRError

DEFINITIONS = {"Patient": REPO_ROOT / "profiles" / "compartmentdefinition-patient.json"}


@lru_cache(maxsize=4)
def compartment_params(compartment: str) -> dict[str, tuple[str, ...]]:
    """resource type -> the parameters that put a resource of that type in the compartment."""
    path = DEFINITIONS.get(compartment)
    if path is None:
        raise FHIRError(400, f"the {compartment} compartment is not supported", code="not-supported")
    definition = json.loads(path.read_text(encoding="utf-8"))
    return {r["code"]: tuple(r["param"]) for r in definition["resource"] if r.get("param")}


def compartment_filter(compartment: str, owner_id: str, resource_type: str) -> dict[str, Any]:
    """The filter of `resource_type` resources inside `compartment`/`owner_id`."""
    params = compartment_params(compartment).get(resource_type)
    if not params:
        raise FHIRError(
            400, f"{resource_type} resources are not in the {compartment} compartment", code="not-supported"
        )
    ref = f"{compartment}/{owner_id}"
    clauses: list[dict[str, Any]] = []
    for p in params:
        if p == "{def}":  # the compartment owner itself
            clauses.append({"_id": owner_id} if resource_type == compartment else {})
        else:
            clauses.append({f"i.{p}.r": ref})
    clauses = [c for c in clauses if c]
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}
