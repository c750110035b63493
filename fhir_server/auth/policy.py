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
- Care team (`FHIR_CARE_TEAM_REQUIRED=true`, the DUI rule "nothing outside the team that takes care
  of the usager"): a practitioner's user token sees a patient's compartment only when an active
  CareTeam of that patient lists the practitioner (or one of its PractitionerRoles) as participant.
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


def _team_rule_applies(ctx: ServerContext, policy: Policy) -> bool:
    return bool(getattr(ctx.settings, "care_team_required", False)) and bool(
        policy.user and policy.user.startswith(("Practitioner/", "PractitionerRole/"))
    )


async def team_patients(ctx: ServerContext, policy: Policy) -> list[str] | None:
    """Patients whose active CareTeam lists this practitioner; None when the rule does not apply."""
    if not _team_rule_applies(ctx, policy):
        return None
    flt = {"res": {"$exists": True}, "i.status.c": "active", "i.participant.r": policy.user}
    patients: set[str] = set()
    async for doc in ctx.database.resources("CareTeam").find(flt, {"i": 1}):
        patients.update((doc["i"].get("patient") or {}).get("r", []))
    return sorted(patients)


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


def search_restriction(
    policy: Policy, resource_type: str, denied: list[str], team: list[str] | None = None
) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if team is not None:
        clauses.append(_within(resource_type, team))
    if policy.hidden_labels:
        clauses.append({"i._security.sc": {"$nin": [f"{s}|{c}" for s, c in policy.hidden_labels]}})
    if denied:
        if resource_type == "Patient":
            clauses.append({"_id": {"$nin": [p.split("/", 1)[1] for p in denied]}})
        for param in compartment_params("Patient").get(resource_type, ()):
            clauses.append({f"i.{param}.r": {"$nin": denied}})
    clauses = [c for c in clauses if c]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _within(resource_type: str, patients: list[str]) -> dict[str, Any]:
    """Resources of `resource_type` in the compartment of one of `patients` (others: no restriction)."""
    if resource_type == "Patient":
        return {"_id": {"$in": [p.split("/", 1)[1] for p in patients]}}
    params = compartment_params("Patient").get(resource_type, ())
    if not params:
        return {}
    return {"$or": [{f"i.{p}.r": {"$in": patients}} for p in params]}


def _patients_of(ctx: ServerContext, resource_type: str, resource: dict[str, Any]) -> set[str] | None:
    """The patients whose compartment holds the resource (None: not a patient-specific type)."""
    if resource_type == "Patient":
        return {f"Patient/{resource.get('id')}"}
    params = compartment_params("Patient").get(resource_type)
    if not params:
        return None
    index = ctx.store.index_fn(resource)
    return {r for p in params for r in (index.get(p) or {}).get("r", []) if r.startswith("Patient/")}


async def check_readable(ctx: ServerContext, request: Request, resource_type: str, resource: dict[str, Any]) -> None:
    policy = request_policy(request)
    if policy.unrestricted:
        return
    hidden = _labels(resource) & set(policy.hidden_labels)
    refused = bool(hidden)
    team = await team_patients(ctx, policy) if not refused else None
    if team is not None:
        owners = _patients_of(ctx, resource_type, resource)
        refused = owners is not None and not (owners & set(team))
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
