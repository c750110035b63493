"""Addressing a dossier to a professional outside the annuaire, invited by e-mail (CCTP §3.1.2.2, R-12, R-14).

`$send` and both `$readdress` take, besides `addressee` references, the repeatable parameter `invitee`, with
parts (each a `valueString`; alternatives in brackets):

    {"name": "invitee", "part": [
        {"name": "email",  "valueString": "dr.durand@cabinet.example.fr"},   required [valueContactPoint]
        {"name": "family", "valueString": "Durand"},                         optional
        {"name": "given",  "valueString": "Alice"},                          optional, repeatable
        {"name": "rpps",   "valueString": "10101010101"}                     optional, 11 digits [valueIdentifier]
    ]}

A missing or invalid e-mail, an RPPS that is not 11 digits, an unknown part: 422 before anything is written.

Who the invitee is, in the transition's transaction (`invite`):
- with an RPPS, the Practitioner holding it, whoever created it:
  - an annuaire member with an active `ps` role → 422 naming the role(s): address them with `addressee`;
  - an annuaire Practitioner that is `active: false` → 422 (an administrator deactivated them);
  - another annuaire Practitioner (no `ps` role: e.g. only a bureau des entrées role) → reused;
  - a Practitioner an earlier invitation created → reused when the e-mail is the one it was invited with,
    else 422 (an RPPS typed with someone else's address must not hand the identity over);
  - none → a new one;
- without an RPPS, a Practitioner an earlier invitation created with that e-mail (and no other) → reused;
  annuaire members are never matched by e-mail (a secretariat address is often shared); none → a new one.

A new Practitioner is pending: `active: false`, tagged INVITATION `invited`, the RPPS and names given, the e-mail
as `telecom`. The invitee is addressed through a PractitionerRole of their own for this dossier (reused when
they were invited to it before): profile `ps`, no organisation, `active`, tagged INVITATION `invited` and
INVITED_FOR `ServiceRequest/<id>`, the e-mail as `telecom` (where this dossier's notices go). The Task is
addressed to that role like to any professional; the dossier's access list gains the role and the
Practitioner — the only codes the invitee holds (teleexpertise/access.user_codes): they see this dossier and
nothing else. The role never authors a dossier nor stands for a communauté (directory.Principal.ps_memberships
leaves it out), and answers Tasks of its own dossier only (dossier.requis_membership).

After the commit, a Practitioner still pending (an invitation Practitioner not enrolled yet) gets the
invitation e-mail with an enrolment link (teleexpertise/invitation_mail.py) instead of the usual notice;
anyone else gets the usual notice, at the role's e-mail. Concurrent invitations of one e-mail or RPPS are
serialised by a lease (`storage/locks.py`), so they yield one Practitioner.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.jobs.senders import normalise_email
from fhir_server.search.engine import matching_ids
from fhir_server.storage.locks import lease
from fhir_server.teleexpertise.changes import Changes
from fhir_server.teleexpertise.codes import (
    INVITATION,
    INVITED_FOR,
    ROLE,
    RPPS_SYSTEMS,
    codes_of,
    coding,
    invited_for,
    reference_of,
    tag_codes,
)
from fhir_server.teleexpertise.directory import LIVE
from fhir_server.teleexpertise.operation_input import OperationInput

PARAMETER = "invitee"
PARTS = ("email", "family", "given", "rpps")
INVITED = "invited"
RPPS = RPPS_SYSTEMS[0]
_RPPS = re.compile(r"^\d{11}$")
_EMAIL = re.compile(r'^[^@\s<>",;]+@[^@\s<>",;]+\.[^@\s<>",;]+$')
MAX_TEXT = 200


@dataclass(frozen=True)
class Invitee:
    email: str  # lower case
    family: str | None = None
    given: tuple[str, ...] = ()
    rpps: str | None = None


@dataclass
class Invited:
    """An invitee as addressed by a transition."""

    invitee: Invitee
    role: str  # PractitionerRole/<id>: the Task's addressee
    practitioner: str  # Practitioner/<id>
    codes: set[str] = field(default_factory=set)  # what the dossier's access list gains
    enrol: bool = False  # pending: the invitation e-mail (enrolment link) instead of the usual notice


def _unprocessable(message: str, code: str = "business-rule") -> FHIRError:
    return FHIRError(422, message, code=code, expression=(f"Parameters.parameter.where(name='{PARAMETER}')",))


def _text(part: dict[str, Any]) -> str | None:
    for key in ("valueString", "valueCode"):
        if isinstance(part.get(key), str):
            return part[key].strip()
    for key in ("valueContactPoint", "valueIdentifier"):
        if isinstance(part.get(key), dict) and isinstance(part[key].get("value"), str):
            return part[key]["value"].strip()
    return None


def invitees(params: OperationInput) -> list[Invitee]:
    """The `invitee` parameters, validated (422 before anything is written), one per e-mail address."""
    out: dict[str, Invitee] = {}
    for number, parameter in enumerate(p for p in params.parameters if p.get("name") == PARAMETER):
        parts = parameter.get("part")
        if not isinstance(parts, list) or not parts:
            raise _unprocessable(
                f"invitee #{number + 1} takes parts: email (required), family, given, rpps", code="required"
            )
        values: dict[str, list[str]] = {}
        for part in parts:
            name = part.get("name") if isinstance(part, dict) else None
            if name not in PARTS:
                raise _unprocessable(f"invitee #{number + 1}: unknown part {name!r} (known: {', '.join(PARTS)})")
            value = _text(part)
            if not value or len(value) > (254 if name == "email" else MAX_TEXT):
                raise _unprocessable(f"invitee #{number + 1}: the part {name} has no usable value", code="value")
            values.setdefault(name, []).append(value)
        if any(len(v) > 1 for k, v in values.items() if k != "given"):
            raise _unprocessable(f"invitee #{number + 1}: email, family and rpps are given once each")
        emails = values.get("email") or []
        email = normalise_email(emails[0]) if emails else None
        if email is not None and not _EMAIL.match(email):
            email = None  # what local accounts accept too (auth/local_login.py): no <>, double quotes or separators
        if email is None:
            raise _unprocessable(
                f"invitee #{number + 1} needs a valid e-mail address (part email)",
                code="required" if not emails else "value",
            )
        rpps = (values.get("rpps") or [None])[0]
        if rpps is not None and not _RPPS.match(rpps):
            raise _unprocessable(f"invitee #{number + 1}: an RPPS number has 11 digits", code="value")
        family = (values.get("family") or [None])[0]
        invitee = Invitee(email.lower(), family, tuple(values.get("given") or ()), rpps)
        out.setdefault(invitee.email, invitee)
    return list(out.values())


@contextlib.asynccontextmanager
async def serialised(ctx: ServerContext, people: list[Invitee]) -> AsyncIterator[None]:
    """Hold a lease per e-mail and RPPS while invitees are resolved and committed (one Practitioner per
    person when two dossiers invite them at once). Keys in order, so two holders never wait on each other."""
    keys = sorted(
        {f"tlx-invitee:email:{i.email}" for i in people} | {f"tlx-invitee:rpps:{i.rpps}" for i in people if i.rpps}
    )
    async with contextlib.AsyncExitStack() as stack:
        for key in keys:
            await stack.enter_async_context(lease(ctx.database, key))
        yield


def is_invitation_practitioner(practitioner: dict[str, Any]) -> bool:
    return INVITED in tag_codes(practitioner, INVITATION)


def pending(practitioner: dict[str, Any]) -> bool:
    """Created by an invitation and not enrolled yet."""
    return is_invitation_practitioner(practitioner) and practitioner.get("active") is False


def emails_of(resource: dict[str, Any]) -> set[str]:
    return {
        str(t.get("value", "")).strip().lower()
        for t in resource.get("telecom") or []
        if isinstance(t, dict) and t.get("system") == "email"
    }


async def _practitioners(ctx: ServerContext, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    ids = await matching_ids(ctx, "Practitioner", params, strict=True, what="the invitee lookup")
    docs = []
    for rid in sorted(ids):
        doc = await ctx.store.current("Practitioner", rid)
        if doc and doc.get("res"):
            docs.append(doc)
    return docs


def _token(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


async def _roles_of(ctx: ServerContext, practitioner: str) -> list[dict[str, Any]]:
    flt = {**LIVE, "i.practitioner.r": practitioner}
    return await ctx.database.resources("PractitionerRole").find(flt).sort([("_id", 1)]).to_list(None)


async def _existing(ctx: ServerContext, invitee: Invitee) -> dict[str, Any] | None:
    """The Practitioner the invitee already is (rules in the module docstring), or None; 422 when the
    invitation must not go ahead."""
    if invitee.rpps:
        found = []
        for system in RPPS_SYSTEMS:
            found += await _practitioners(ctx, [("identifier", f"{system}|{_token(invitee.rpps)}")])
        if not found:
            return None
        doc = found[0]
        ref = f"Practitioner/{doc['_id']}"
        if is_invitation_practitioner(doc["res"]):
            if invitee.email not in emails_of(doc["res"]):
                raise _unprocessable(
                    f"the RPPS {invitee.rpps} was already invited with another e-mail address: invite them with "
                    "that address (or ask an administrator to correct it)"
                )
            return doc
        if doc["res"].get("active") is False:
            raise _unprocessable(f"the professional with RPPS {invitee.rpps} ({ref}) is deactivated in the annuaire")
        members = [
            f"PractitionerRole/{r['_id']}"
            for r in await _roles_of(ctx, ref)
            if r["res"].get("active") is not False
            and invited_for(r["res"]) is None
            and "ps" in codes_of(r["res"].get("code") or [], ROLE)
        ]
        if members:
            raise _unprocessable(
                f"the professional with RPPS {invitee.rpps} is in the annuaire: address them with the parameter "
                f"addressee ({', '.join(members)})"
            )
        return doc
    found = await _practitioners(ctx, [("_tag", f"{INVITATION}|{INVITED}"), ("email", _token(invitee.email))])
    return found[0] if found else None


def new_practitioner(invitee: Invitee) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Practitioner",
        "meta": {"tag": [coding(INVITATION, INVITED, "invité hors annuaire")]},
        "active": False,
        "telecom": [{"system": "email", "value": invitee.email}],
    }
    if invitee.rpps:
        out["identifier"] = [{"system": RPPS, "value": invitee.rpps}]
    name: dict[str, Any] = {}
    if invitee.family:
        name["family"] = invitee.family
    if invitee.given:
        name["given"] = list(invitee.given)
    if name:
        out["name"] = [name]
    return out


def new_role(practitioner: str, dossier: str, email: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "meta": {"tag": [coding(INVITATION, INVITED, "invité hors annuaire"), coding(INVITED_FOR, dossier)]},
        "active": True,
        "practitioner": {"reference": practitioner},
        "code": [{"coding": [coding(ROLE, "ps")]}],
        "telecom": [{"system": "email", "value": email}],
    }


async def invite(changes: Changes, ctx: ServerContext, sr_id: str, people: list[Invitee]) -> list[Invited]:
    """Queue in `changes` the Practitioners and roles the invitees need; their addressing, one per person."""
    dossier = f"ServiceRequest/{sr_id}"
    out: dict[str, Invited] = {}
    for invitee in people:
        doc = await _existing(ctx, invitee)
        role: str | None = None
        if doc is None:
            practitioner = changes.create("Practitioner", new_practitioner(invitee))
            enrol = True
        else:
            practitioner = f"Practitioner/{doc['_id']}"
            enrol = pending(doc["res"])
            role = next(
                (
                    f"PractitionerRole/{r['_id']}"
                    for r in await _roles_of(ctx, practitioner)
                    if invited_for(r["res"]) == dossier and r["res"].get("active") is not False
                ),
                None,
            )
        if practitioner in out:
            continue  # two e-mail addresses of one person: addressed once
        if role is None:
            role = changes.create("PractitionerRole", new_role(practitioner, dossier, invitee.email))
        out[practitioner] = Invited(invitee, role, practitioner, {role, practitioner}, enrol)
    return list(out.values())


def task_of(tasks: list[dict[str, Any]], role: str) -> dict[str, Any] | None:
    for task in tasks:
        recipients = [reference_of(r) for r in (task.get("restriction") or {}).get("recipient") or []]
        if role in recipients:
            return task
    return None


def describe(invited: list[Invited]) -> str:
    """For the transition's AuditEvent."""
    return "; ".join(f"{i.role} invited ({i.invitee.email}{', enrolment' if i.enrol else ''})" for i in invited)
