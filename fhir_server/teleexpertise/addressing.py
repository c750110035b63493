"""Addressing a dossier: one Task per addressee (a communauté, or a professional's PractitionerRole).

Used by `$send` and both `$readdress`. The addressee stays in `Task.restriction.recipient` for the Task's
whole life (the `tlx-addressee` search parameter, worklists), while `Task.owner` is the addressee until
someone takes charge, then that professional's PractitionerRole. The dossier's access list grows with the
addressees (and their structures' local administrators), on the ServiceRequest and every resource
linked to it, the Patient included.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise import access
from fhir_server.teleexpertise.changes import Changes
from fhir_server.teleexpertise.codes import (
    DOSSIER_TYPE,
    ROLE,
    codes_of,
    coding,
    dossier_type,
    invited_for,
    reference_of,
    status_concept,
)
from fhir_server.teleexpertise.directory import org_kind, organizations, read_live
from fhir_server.teleexpertise.dossier import grant_dossier, now_instant
from fhir_server.teleexpertise.workflow import WAITING


async def check_addressees(ctx: ServerContext, refs: list[str], *, dossier: str | None = None) -> list[str]:
    """The addressees, deduplicated; each a communauté or an active `ps` PractitionerRole (422 otherwise).
    An invitation role (teleexpertise/invitation.py) is an addressee of its own dossier (`dossier`) only."""
    if not refs:
        raise FHIRError(422, "a dossier is addressed to at least one communauté or professional", code="required")
    out: list[str] = []
    orgs = await organizations(ctx, {r for r in refs if r.startswith("Organization/")})
    for ref in dict.fromkeys(refs):
        if ref.startswith("Organization/"):
            if ref not in orgs or org_kind(orgs[ref]) != "communaute":
                raise FHIRError(422, f"the addressee {ref} is not a communauté", code="business-rule")
        elif ref.startswith("PractitionerRole/"):
            role = await read_live(ctx, ref)
            if role is None or role.get("active") is False or "ps" not in codes_of(role.get("code") or [], ROLE):
                raise FHIRError(
                    422, f"the addressee {ref} is not an active health professional's role", code="business-rule"
                )
            limited_to = invited_for(role)
            if limited_to is not None and limited_to != dossier:
                raise FHIRError(
                    422,
                    f"the addressee {ref} is an invitation for another dossier ({limited_to}): invite the "
                    "professional by e-mail (parameter invitee) instead",
                    code="business-rule",
                )
        else:
            raise FHIRError(
                422,
                f"the addressee {ref} is neither a communauté (Organization) nor a PractitionerRole",
                code="business-rule",
            )
        out.append(ref)
    return out


def new_task(sr: dict[str, Any], addressee: str, codes: set[str]) -> dict[str, Any]:
    now = now_instant()
    kind = dossier_type(sr)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": WAITING[0],
        "businessStatus": status_concept(WAITING[1]),
        "intent": "order",
        "priority": sr.get("priority") or "routine",
        "focus": {"reference": f"ServiceRequest/{sr['id']}"},
        "basedOn": [{"reference": f"ServiceRequest/{sr['id']}"}],
        "authoredOn": now,
        "lastModified": now,
        "owner": {"reference": addressee},
        "restriction": {"recipient": [{"reference": addressee}]},
    }
    if kind:
        task["code"] = {"coding": [coding(DOSSIER_TYPE, kind)]}
    for key in ("requester",):
        if sr.get(key):
            task[key] = sr[key]
    if sr.get("subject"):
        task["for"] = sr["subject"]
    return access.with_acl(task, codes)


async def address(
    changes: Changes,
    ctx: ServerContext,
    sr_doc: dict[str, Any],
    sr_new: dict[str, Any],
    addressees: list[str],
    codes_of_new: dict[str, set[str]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Queue the Tasks of new addressees and the access grants; returns (the dossier as queued, Task refs).
    `codes_of_new`: the access codes of addressees queued in this same transaction (invitation roles), which
    cannot be read from the store yet."""
    grants: set[str] = set()
    for addressee in addressees:
        known = (codes_of_new or {}).get(addressee)
        grants |= known if known is not None else await access.addressee_codes(ctx, addressee)
    performers = [p for p in sr_new.get("performer") or [] if reference_of(p)]
    known = {reference_of(p) for p in performers}
    performers += [{"reference": a} for a in addressees if a not in known]
    sr_new = access.with_acl({**sr_new, "performer": performers}, access.acl(sr_new) | grants)
    changes.update("ServiceRequest", sr_doc, sr_new)
    await grant_dossier(changes, ctx, sr_doc, access.dossier_codes(sr_new))
    codes = access.dossier_codes(sr_new)
    refs = [changes.create("Task", new_task(sr_new, a, codes)) for a in addressees]
    return sr_new, refs


async def open_addressees(tasks: list[dict[str, Any]]) -> set[str]:
    """Addressees that already have a Task still in progress."""
    from fhir_server.teleexpertise.dossier import addressee_of, task_state
    from fhir_server.teleexpertise.workflow import OPEN_TASK_STATES

    return {a for t in tasks if task_state(t["res"]) in OPEN_TASK_STATES and (a := addressee_of(t["res"]))}


async def catch_up_grants(ctx: ServerContext, sr_id: str) -> None:
    """After a commit: resources linked to the dossier while it was being addressed get its access list."""
    from fhir_server.teleexpertise.guarded_writes import extend_acl

    sr = await ctx.store.current("ServiceRequest", sr_id)
    if not sr or not sr.get("res"):
        return
    codes = access.dossier_codes(sr["res"])
    for rtype, doc in await access.linked_resources(ctx, sr["res"]):
        if not codes <= access.acl(doc["res"]):
            await extend_acl(ctx, rtype, doc["_id"], codes)
