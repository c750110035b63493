"""Access policy beyond scopes, in one place: security labels and the usager's opposition (Consent deny).

Rules (each reading the token, the resource and what the database says about the user, so reads and
searches apply the same ones):
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
- Téléexpertise dossiers (a practitioner with téléexpertise PractitionerRoles, teleexpertise/directory.py):
  the resources of a dossier (teleexpertise/access.py GOVERNED: ServiceRequest, Task, Patient,
  QuestionnaireResponse, DiagnosticReport, DocumentReference, Communication(Request), ImagingStudy…) are
  visible only when their access list (`meta.security`, system tlx-access) shares a code with the user's:
  the author and the author's communauté, the addressed communautés and professionals, the local
  administrators of the structures involved; a regional administrator sees them all. A bureau des entrées
  sees the administrative resources of answered dossiers addressed to its structure, and gets 403 on the
  medical ones (access.CLINICAL) by read and by search. Searches add one indexed predicate on
  `i._security.sc`. Other user tokens (no téléexpertise role, e.g. a deactivated one) do not see what
  carries an access list unless it names them; what carries none keeps the other rules. System tokens
  are not affected.
- Audit trail per administrator (spec §8 test 13): a user token sees an AuditEvent only as a téléexpertise
  administrator. A regional administrator sees them all; a local administrator (`admin-local`) those
  whose agents name one of their structures or its communautés (the transition events name the acting
  organisation, audit.py adds the acting user's structures to the others): one indexed predicate on
  `i.agent.r`, the communautés resolved once per request and only for local administrators. Every
  other user token sees none; system tokens keep their scopes.
Refusals on reads answer 404 (existence must not leak); searches simply do not match.
Later issues add rules here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from starlette.requests import Request

from fhir_server.auth.tokens import AccessToken
from fhir_server.config import REPO_ROOT
from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.search.compartments import compartment_params
from fhir_server.teleexpertise.access import CLINICAL, GOVERNED, acl, index_values, user_codes
from fhir_server.teleexpertise.codes import ACCESS
from fhir_server.teleexpertise.directory import Principal, resolve_principal

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
    # What the database says about this user, resolved once per request (see dossier_principal).
    resolved: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def practitioner(self) -> str | None:
        """`Practitioner/<id>` when the user is a practitioner (fhirUser may be an absolute URL)."""
        if not self.user or "Practitioner/" not in self.user or "PractitionerRole/" in self.user:
            return None
        return "Practitioner/" + self.user.rsplit("Practitioner/", 1)[1].strip("/")

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
    # Searches call this first: the dossier rule's user is resolved here for search_restriction.
    await dossier_principal(ctx, policy)
    await audit_organizations(ctx, policy)
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
    dossier = _dossier_clause(policy, resource_type)
    if dossier is not None:
        clauses.append(dossier)
    audit = _audit_clause(policy, resource_type)
    if audit is not None:
        clauses.append(audit)
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
    refused = bool(hidden) or not await _dossier_readable(ctx, policy, resource_type, resource)
    refused = refused or not await _audit_readable(ctx, policy, resource_type, resource)
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


# ---- téléexpertise dossiers ------------------------------------------------------------------------------


async def dossier_principal(ctx: ServerContext, policy: Policy) -> Principal | None:
    """The téléexpertise user behind a practitioner token (None: the dossier rule does not apply)."""
    if "dossier" not in policy.resolved:
        practitioner = policy.practitioner
        policy.resolved["dossier"] = await resolve_principal(ctx, practitioner) if practitioner else None
    return policy.resolved["dossier"]


def _dossier_principal_resolved(policy: Policy) -> Principal | None:
    if "dossier" not in policy.resolved:
        if policy.practitioner is None:
            return None
        # Fail closed: a caller that skipped denied_patients/check_readable must not see everything.
        raise RuntimeError("the dossier policy was not resolved before search_restriction")
    return policy.resolved["dossier"]


def _dossier_clause(policy: Policy, resource_type: str) -> dict[str, Any] | None:
    principal = _dossier_principal_resolved(policy)
    if resource_type not in GOVERNED or policy.user is None:
        return None
    if principal is None:
        # Other users: what carries an access list is hidden unless it names them; the rest is not
        # téléexpertise data and keeps the other rules (a `$ne` on the system: not served by an index).
        who = policy.practitioner or policy.user
        return {"$or": [{"i._security.s": {"$ne": ACCESS}}, {"i._security.sc": {"$in": index_values([who])}}]}
    if principal.regional_admin:
        return None
    if principal.be_only and resource_type in CLINICAL:
        raise FHIRError(403, f"a bureau des entrées does not see {resource_type} (medical data)", code="forbidden")
    return {"i._security.sc": {"$in": index_values(user_codes(principal))}}


async def _dossier_readable(ctx: ServerContext, policy: Policy, resource_type: str, resource: dict[str, Any]) -> bool:
    if resource_type not in GOVERNED:
        return True
    principal = await dossier_principal(ctx, policy)
    if policy.user is None or (principal is not None and principal.regional_admin):
        return True
    if principal is not None and principal.be_only and resource_type in CLINICAL:
        raise FHIRError(403, f"a bureau des entrées does not see {resource_type} (medical data)", code="forbidden")
    codes = set(user_codes(principal)) if principal is not None else {policy.practitioner or policy.user}
    if acl(resource) & codes or (principal is None and not acl(resource)):
        return True
    # An older version (vread) may predate a grant: the current access list decides.
    current = await ctx.store.current(resource_type, str(resource.get("id")))
    return bool(current and current.get("res") and acl(current["res"]) & codes)


# ---- the audit trail per administrator -------------------------------------------------------------------

AUDIT_EVENT = "AuditEvent"
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


async def audit_organizations(ctx: ServerContext, policy: Policy) -> list[str] | None:
    """Organisations whose AuditEvents this user token sees (None: all of them, or not a user token).

    A local administrator: their structures and those structures' communautés (one indexed query on
    Organization.partOf, made only for local administrators); other user tokens: none."""
    if "audit" not in policy.resolved:
        principal = await dossier_principal(ctx, policy)
        orgs: list[str] | None = []
        if policy.user is None or (principal is not None and principal.regional_admin):
            orgs = None
        elif principal is not None and principal.admin_structures:
            structures = sorted(principal.admin_structures)
            flt = {"res": {"$exists": True}, "i.partof.r": {"$in": structures}}
            found = await ctx.database.resources("Organization").find(flt, {"_id": 1}).to_list(None)
            orgs = sorted({*structures, *(f"Organization/{d['_id']}" for d in found)})
        policy.resolved["audit"] = orgs
    return policy.resolved["audit"]


def _audit_clause(policy: Policy, resource_type: str) -> dict[str, Any] | None:
    if resource_type != AUDIT_EVENT or policy.user is None:
        return None
    if "audit" not in policy.resolved:
        raise RuntimeError("the audit policy was not resolved before search_restriction")  # fail closed
    orgs = policy.resolved["audit"]
    if orgs is None:
        return None
    return {"i.agent.r": {"$in": orgs}} if orgs else _NOTHING


async def _audit_readable(ctx: ServerContext, policy: Policy, resource_type: str, resource: dict[str, Any]) -> bool:
    if resource_type != AUDIT_EVENT or policy.user is None:
        return True
    orgs = await audit_organizations(ctx, policy)
    if orgs is None:
        return True
    agents = {reference_of_agent(a) for a in resource.get("agent") or [] if isinstance(a, dict)}
    return bool(agents & set(orgs))


def reference_of_agent(agent: dict[str, Any]) -> str | None:
    who = agent.get("who")
    return who.get("reference") if isinstance(who, dict) else None


async def acting_structures(ctx: ServerContext, request: Request) -> list[str]:
    """The structures of the user behind a request, for its AuditEvent (audit.py): nothing to resolve
    for a token that is not a practitioner's; the request's resolution (policy.resolved) is reused."""
    access = getattr(request.state, "access", None)
    if access is None:
        return []
    policy = request_policy(request)
    if policy.practitioner is None:
        return []
    principal = await dossier_principal(ctx, policy)
    if principal is None:
        return []
    return sorted({m.structure for m in principal.memberships if m.structure})
