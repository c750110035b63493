"""The annuaire: structures, communautés and professionals, and who a token's user is in it.

Model (FHIR R4, FR Core identifiers):
- Structure: Organization with `type` organization-kind `structure`, identified by a FINESS géographique
  (`identifier.type` fr-core-cs-v2-0203 `FINEG`, system https://finess.esante.gouv.fr) or a SIRET (`SIRET`,
  system https://sirene.fr).
- Communauté: Organization with kind `communaute` and exactly one parent structure in `partOf`; its billing
  site (FINESS géographique or SIRET) in the extension tlx-ext-billing-site.
- Professional: Practitioner (RPPS identifier, or an internal id prefixed by its structure's) with one
  PractitionerRole per (practitioner, communauté or structure); `PractitionerRole.code` carries the user
  profile from teleexpertise-role: `ps`, `bureau-entrees`, `admin-local`, `admin-regional`.

A token's user: its `fhirUser` claim (`Practitioner/ID`) → that practitioner's active PractitionerRoles with
a téléexpertise profile → their organisations (kind, parent structure). Resolved once per request (two
queries: PractitionerRole by practitioner, Organization by id) and cached on the request's Policy.
A practitioner with no such role is not a téléexpertise user: no téléexpertise rule applies to them.
An invitation role (a `ps` role an e-mail invitation created for one dossier, teleexpertise/invitation.py) is a
membership with `invitation` set: it answers that dossier's Tasks, but never authors nor counts as a communauté.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise.codes import (
    EXT_BILLING_SITE,
    FR_ID_TYPE,
    ORG_KIND,
    PROFILES,
    ROLE,
    RPPS_SYSTEMS,
    STRUCTURE_ID_TYPES,
    codes_of,
    extension_value,
    first_code,
    invited_for,
    reference_of,
)

LIVE = {"res": {"$exists": True}}


@dataclass(frozen=True)
class Membership:
    """One active PractitionerRole of the user, with its organisation resolved."""

    role: str  # PractitionerRole/<id>
    profiles: frozenset[str]  # teleexpertise-role codes on the role
    organization: str | None  # Organization/<id> (communauté or structure), None for an independent PS
    kind: str | None  # organization-kind of that organisation
    structure: str | None  # the structure: the organisation itself, or the communauté's parent
    # An invitation role (teleexpertise/invitation.py): the one dossier it was created for. Such a role
    # answers that dossier's Task and nothing else: it never authors, and grants no access of its own beyond
    # the dossier's access list.
    invitation: str | None = None


@dataclass(frozen=True)
class Principal:
    """A téléexpertise user: a practitioner and their memberships."""

    practitioner: str  # Practitioner/<id>
    memberships: tuple[Membership, ...] = field(default_factory=tuple)

    def _with(self, profile: str) -> list[Membership]:
        return [m for m in self.memberships if profile in m.profiles]

    @property
    def regional_admin(self) -> bool:
        return bool(self._with("admin-regional"))

    @property
    def ps_memberships(self) -> list[Membership]:
        """Annuaire `ps` roles: authoring, the requérant side, communautés (invitation roles excluded)."""
        return [m for m in self._with("ps") if m.invitation is None]

    @property
    def requis_memberships(self) -> list[Membership]:
        """Every `ps` role that can be a Task's addressee: the annuaire ones and invitation roles."""
        return self._with("ps")

    @property
    def ps_roles(self) -> set[str]:
        """Roles a Task may be addressed to (worklists): invitation roles included."""
        return {m.role for m in self.requis_memberships}

    @property
    def ps_communautes(self) -> set[str]:
        return {m.organization for m in self.ps_memberships if m.kind == "communaute" and m.organization}

    @property
    def admin_structures(self) -> set[str]:
        return {m.structure for m in self._with("admin-local") if m.structure}

    @property
    def be_structures(self) -> set[str]:
        return {m.structure for m in self._with("bureau-entrees") if m.structure}

    @property
    def be_only(self) -> bool:
        """A bureau des entrées user with no clinical or admin profile: administrative data only."""
        return bool(self.be_structures) and not any(
            m.profiles & {"ps", "admin-local", "admin-regional"} for m in self.memberships
        )

    def membership(self, role: str) -> Membership | None:
        return next((m for m in self.memberships if m.role == role), None)


def org_kind(org: dict[str, Any]) -> str | None:
    return first_code(org.get("type") or [], ORG_KIND)


async def resolve_principal(ctx: ServerContext, practitioner: str) -> Principal | None:
    roles = (
        await ctx.database.resources("PractitionerRole")
        .find({**LIVE, "i.practitioner.r": practitioner}, {"res": 1})
        .to_list(None)
    )
    found: list[tuple[str, frozenset[str], str | None, str | None]] = []
    for doc in roles:
        res = doc["res"]
        profiles = frozenset(c for c in codes_of(res.get("code") or [], ROLE) if c in PROFILES)
        if not profiles or res.get("active") is False:
            continue
        invitation = invited_for(res)
        if invitation is not None:
            profiles = profiles & {"ps"}  # an invitation answers one dossier, nothing more
            if not profiles:
                continue
        found.append((f"PractitionerRole/{doc['_id']}", profiles, reference_of(res.get("organization")), invitation))
    if not found:
        return None
    orgs = await organizations(ctx, {o for _, _, o, _ in found if o})
    memberships = []
    for role, profiles, org, invitation in found:
        kind, structure = None, None
        if org and org in orgs and invitation is None:
            kind = org_kind(orgs[org])
            structure = org if kind == "structure" else reference_of(orgs[org].get("partOf"))
        memberships.append(Membership(role, profiles, org if invitation is None else None, kind, structure, invitation))
    return Principal(practitioner, tuple(sorted(memberships, key=lambda m: m.role)))


async def organizations(ctx: ServerContext, refs: set[str]) -> dict[str, dict[str, Any]]:
    """Organization resources by `Organization/<id>` (missing and deleted ones are absent)."""
    ids = [r.split("/", 1)[1] for r in refs if r.startswith("Organization/")]
    if not ids:
        return {}
    docs = await ctx.database.resources("Organization").find({**LIVE, "_id": {"$in": ids}}, {"res": 1}).to_list(None)
    return {f"Organization/{d['_id']}": d["res"] for d in docs}


async def structure_of(ctx: ServerContext, org: str | None) -> str | None:
    """The structure an organisation belongs to (itself for a structure)."""
    if not org:
        return None
    found = await organizations(ctx, {org})
    if org not in found:
        return None
    kind = org_kind(found[org])
    return org if kind == "structure" else reference_of(found[org].get("partOf"))


async def read_live(ctx: ServerContext, ref: str) -> dict[str, Any] | None:
    rtype, _, rid = ref.partition("/")
    doc = await ctx.store.current(rtype, rid)
    return doc["res"] if doc and doc.get("res") else None


# ---- rules on directory writes ----------------------------------------------------------------------


def _unprocessable(message: str, expression: str) -> FHIRError:
    return FHIRError(422, message, code="business-rule", expression=(expression,))


def _typed(identifier: dict[str, Any]) -> str | None:
    return first_code(identifier.get("type") or {}, FR_ID_TYPE)


def _check_structure_identifier(identifier: Any, expression: str) -> None:
    if not isinstance(identifier, dict) or _typed(identifier) not in STRUCTURE_ID_TYPES or not identifier.get("value"):
        raise _unprocessable(
            f"{expression} must be a FINESS géographique (type FINEG) or SIRET (type SIRET) identifier with a value",
            expression,
        )


async def check_organization(ctx: ServerContext, org: dict[str, Any]) -> None:
    """Structures carry a FINESS géographique or SIRET; a communauté has exactly one parent structure."""
    kinds = codes_of(org.get("type") or [], ORG_KIND)
    if len(kinds) > 1:
        raise _unprocessable("an Organization is either a structure or a communauté, not both", "Organization.type")
    kind = kinds[0] if kinds else None
    if kind == "structure":
        if not any(_typed(i) in STRUCTURE_ID_TYPES and i.get("value") for i in org.get("identifier") or []):
            raise _unprocessable(
                "a structure is identified by its FINESS géographique (FINEG) or its SIRET", "Organization.identifier"
            )
    elif kind == "communaute":
        parent = reference_of(org.get("partOf"))
        if parent is None or not parent.startswith("Organization/"):
            raise _unprocessable("a communauté belongs to exactly one structure (partOf)", "Organization.partOf")
        found = await organizations(ctx, {parent})
        if parent not in found or org_kind(found[parent]) != "structure":
            raise _unprocessable(f"the parent {parent} of a communauté must be a structure", "Organization.partOf")
    if extension_value(org, EXT_BILLING_SITE) is not None:
        if kind != "communaute":
            raise _unprocessable("only a communauté has a billing site", "Organization.extension")
        _check_structure_identifier(extension_value(org, EXT_BILLING_SITE), "Organization.extension")


async def check_practitioner_role(ctx: ServerContext, role: dict[str, Any]) -> None:
    """A role with a téléexpertise profile names its practitioner and a structure or communauté; a
    professional without RPPS belongs to communautés of one structure only."""
    profiles = [c for c in codes_of(role.get("code") or [], ROLE) if c in PROFILES]
    unknown = [c for c in codes_of(role.get("code") or [], ROLE) if c not in PROFILES]
    if unknown:
        raise _unprocessable(f"unknown téléexpertise profile {unknown[0]!r}", "PractitionerRole.code")
    if not profiles:
        return
    practitioner = reference_of(role.get("practitioner"))
    if not practitioner or not practitioner.startswith("Practitioner/"):
        raise _unprocessable("a téléexpertise role names its practitioner", "PractitionerRole.practitioner")
    org = reference_of(role.get("organization"))
    if org is None:
        if set(profiles) - {"ps", "admin-regional"}:
            raise _unprocessable(
                "bureau des entrées and local administrator roles belong to a structure",
                "PractitionerRole.organization",
            )
        return
    found = await organizations(ctx, {org})
    if org not in found or org_kind(found[org]) not in ("structure", "communaute"):
        raise _unprocessable(f"{org} is not a structure or a communauté", "PractitionerRole.organization")
    person = await read_live(ctx, practitioner)
    if person is None:
        raise _unprocessable(f"{practitioner} is not known", "PractitionerRole.practitioner")
    if any(i.get("system") in RPPS_SYSTEMS for i in person.get("identifier") or []):
        return
    # Without RPPS: every active role of this practitioner stays within one structure (CCTP §3.1.3.1).
    mine = await structure_of(ctx, org)
    others = (
        await ctx.database.resources("PractitionerRole")
        .find({**LIVE, "i.practitioner.r": practitioner}, {"res": 1})
        .to_list(None)
    )
    for doc in others:
        if doc["_id"] == role.get("id") or doc["res"].get("active") is False:
            continue
        other_org = reference_of(doc["res"].get("organization"))
        if other_org and await structure_of(ctx, other_org) != mine:
            raise _unprocessable(
                "a professional without RPPS belongs to communautés of one structure only",
                "PractitionerRole.organization",
            )


async def check_directory_write(
    ctx: ServerContext, principal: Principal | None, rtype: str, new: dict[str, Any] | None, old: dict[str, Any] | None
) -> None:
    """Who may change the annuaire: regional administrators everything, local administrators their
    structure's communautés and roles (and professionals' accounts); other téléexpertise users nothing.
    System tokens (principal None) are not restricted here."""
    if principal is None or principal.regional_admin:
        return
    mine = principal.admin_structures
    if not mine:
        raise FHIRError(403, "only administrators change the annuaire", code="forbidden")
    if rtype == "Practitioner":
        return
    for resource in (r for r in (new, old) if r is not None):
        if rtype == "Organization":
            kind = org_kind(resource)
            target = (
                f"Organization/{resource.get('id')}" if kind == "structure" else reference_of(resource.get("partOf"))
            )
            if kind == "structure" and old is None:
                raise FHIRError(403, "only a regional administrator creates structures", code="forbidden")
        else:
            target = await structure_of(ctx, reference_of(resource.get("organization")))
        if target not in mine:
            raise FHIRError(403, "a local administrator manages their own structure only", code="forbidden")
