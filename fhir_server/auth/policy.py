"""Access policy beyond scopes, in one place: security labels and the usager's opposition (Consent deny).

Rules (each reading only the token and the resource, so reads and searches apply the same ones):
- Confidentiality (`meta.security`, v3-Confidentiality): `R` (restricted) and `V` (very restricted)
  resources are visible to unconfined system tokens, and to user tokens whose `labels` claim clears
  them (`V` clears `R` too).
- Information natures of the DUI (profiles/policy/information-natures.json): a user token with a
  `category` claim sees only the natures its category is allowed (a health professional never sees
  PSYCHO-SOCIAL information).
- Opposition: an active `Consent` with `provision.type = deny` for a patient hides that patient's
  compartment from the user tokens it names in `provision.actor` (from every user token when it names
  none); the patient's own tokens and system tokens are not affected.
Refusals on reads answer 404 (existence must not leak); searches simply do not match.
Later issues add rules here (care team, communauté membership).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from starlette.requests import Request

from fhir_server.auth.tokens import AccessToken
from fhir_server.config import REPO_ROOT
from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.search.compartments import compartment_params

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
NATURES_FILE = REPO_ROOT / "profiles" / "policy" / "information-natures.json"


@lru_cache(maxsize=1)
def _natures() -> dict[str, Any]:
    return json.loads(NATURES_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Policy:
    """What one token may see, derived once per request."""

    hidden_labels: tuple[tuple[str, str], ...]  # (system, code) pairs this token may not see
    user: str | None  # fhirUser, for Consent actors
    patient_self: str | None  # the Patient the user is, if any

    @property
    def unrestricted(self) -> bool:
        return not self.hidden_labels and self.user is None


def policy_for(access: AccessToken | None) -> Policy:
    if access is None:
        return Policy((), None, None)
    system_only = all(s.startswith("system/") for s in access.scopes if "/" in s)
    hidden: list[tuple[str, str]] = []
    if not system_only:
        cleared = set(access.claims.get("labels") or [])
        if "V" in cleared:
            cleared.add("R")
        hidden += [(CONFIDENTIALITY, code) for code in ("R", "V") if code not in cleared]
    category = access.claims.get("category")
    if category:
        natures = _natures()
        allowed = set(natures["allowed"].get(category, []))
        hidden += [(natures["system"], n) for n in natures["natures"] if n not in allowed]
    user = None if system_only else str(access.claims.get("fhirUser") or access.subject)
    patient_self = user.split("/", 1)[1] if user and user.startswith("Patient/") else None
    return Policy(tuple(hidden), user, patient_self)


def request_policy(request: Request) -> Policy:
    cached = getattr(request.state, "policy", None)
    if cached is None:
        cached = request.state.policy = policy_for(getattr(request.state, "access", None))
    return cached


def _labels(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(s.get("system", ""), s.get("code", "")) for s in (resource.get("meta") or {}).get("security", [])}


async def denied_patients(ctx: ServerContext, policy: Policy) -> list[str]:
    """Patient references whose active Consent denies this user (one indexed query on Consent)."""
    if policy.user is None:
        return []
    flt = {"res": {"$exists": True}, "i.status.c": "active", "res.provision.type": "deny"}
    denied: list[str] = []
    async for doc in ctx.database.resources("Consent").find(flt, {"i": 1}):
        actors = (doc["i"].get("actor") or {}).get("r", [])
        for patient in (doc["i"].get("patient") or {}).get("r", []):
            if patient == f"Patient/{policy.patient_self}":
                continue
            if not actors or policy.user in actors:
                denied.append(patient)
    return denied


def search_restriction(policy: Policy, resource_type: str, denied: list[str]) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if policy.hidden_labels:
        clauses.append({"i._security.sc": {"$nin": [f"{s}|{c}" for s, c in policy.hidden_labels]}})
    if denied:
        if resource_type == "Patient":
            clauses.append({"_id": {"$nin": [p.split("/", 1)[1] for p in denied]}})
        for param in compartment_params("Patient").get(resource_type, ()):
            clauses.append({f"i.{param}.r": {"$nin": denied}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


async def check_readable(ctx: ServerContext, request: Request, resource_type: str, resource: dict[str, Any]) -> None:
    policy = request_policy(request)
    if policy.unrestricted:
        return
    hidden = _labels(resource) & set(policy.hidden_labels)
    refused = bool(hidden)
    if not refused and policy.user is not None:
        denied = set(await denied_patients(ctx, policy))
        if denied:
            if resource_type == "Patient":
                refused = f"Patient/{resource.get('id')}" in denied
            else:
                index = ctx.store.index_fn(resource)
                params = compartment_params("Patient").get(resource_type, ())
                refused = any(set((index.get(p) or {}).get("r", [])) & denied for p in params)
    if refused:
        raise FHIRError(404, f"{resource_type}/{resource.get('id')} is not known", code="not-found")
