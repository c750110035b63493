"""Téléexpertise notices: who is told, by e-mail and SMS, when a dossier moves (spec R-36, R-37, §8 test 7).

`notify()` is what the workflow calls after a transition. It only queues one outbox item (jobs/outbox.py)
and never raises, so a transition never waits for, nor fails because of, an SMTP server or SMS gateway.
In the background, `expand()` finds the addressees' contact points and queues one notice per e-mail
address or mobile number (jobs/notices.py sends it and records it as a Communication).

Who (R-36): the requis side (the Task's owner: the communauté Organization, or the PractitionerRole that
took charge; `Task.restriction.recipient` when there is no owner) on `sent`, `readdressed` (the new
Task) and `info-given`; the requérant (`Task.requester`, else `ServiceRequest.requester`) on
`info-requested`, `answered` and `refused`. The actor of the transition is not notified of it.

Contact points (R-37): the addressee's `telecom` (`email` → e-mail, `sms` or a `mobile` `phone` →
SMS; `old` ones and ones whose period has ended are skipped), then the active Endpoints it references
whose address is `mailto:`, `tel:` or `sms:`; a PractitionerRole without any falls back to its
Practitioner's telecom. An addressee with no contact point gets a `not-done` Communication saying so.

Content: no medical data, ever: the dossier id (the ServiceRequest's identifier, else its id), the kind
of event, and a link to the application (FHIR_APP_URL). Never the patient's name, nor any clinical text.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

from fhir_server.context import ServerContext
from fhir_server.jobs.notices import NOTICE, communication, record
from fhir_server.jobs.outbox import Outbox, OutboxItem
from fhir_server.jobs.senders import normalise_email, normalise_phone
from fhir_server.storage.clock import now_ms

log = logging.getLogger(__name__)

EXPAND = "tlx-notify"
REQUIS, REQUERANT = "requis", "requerant"
# event → (who is told, what they are told)
EVENTS: dict[str, tuple[str, str]] = {
    "sent": (REQUIS, "nouvelle demande d'avis"),
    "readdressed": (REQUIS, "demande d'avis réadressée"),
    "info-given": (REQUIS, "information complémentaire reçue"),
    "info-requested": (REQUERANT, "demande d'information complémentaire"),
    "answered": (REQUERANT, "réponse disponible"),
    "refused": (REQUERANT, "demande refusée"),
}
CONTACT_TYPES = frozenset({"Organization", "PractitionerRole", "Practitioner"})


async def notify(
    ctx: ServerContext, event: str, *, task: dict[str, Any], service_request: dict[str, Any], actor: str | None
) -> None:
    """Queue the notices of one workflow event. Never raises: a lost notice is logged, the transition stands."""
    try:
        if event not in EVENTS:
            raise ValueError(f"unknown téléexpertise event {event!r}")
        outbox: Outbox | None = ctx.outbox
        if outbox is None:
            log.warning("notifications are not installed: notice dropped", extra={"event": event})
            return
        addressees = [a for a in _addressees(event, task, service_request, ctx.base_url) if a != actor]
        if not addressees:
            log.info("no addressee to notify", extra={"event": event, "task": task.get("id")})
            return
        sr_id = str(service_request.get("id", ""))
        data = {
            "event": event,
            "addressees": addressees,
            "dossier": dossier_id(service_request),
            "service_request": sr_id,
            "about": [f"Task/{task.get('id')}", f"ServiceRequest/{sr_id}"],
        }
        version = (task.get("meta") or {}).get("versionId")
        item_id = f"tlx:{event}:Task/{task.get('id')}/{version}" if version else None
        await outbox.enqueue(EXPAND, data, item_id=item_id)
    except Exception:
        log.exception("téléexpertise notice could not be queued", extra={"event": event, "task": task.get("id")})


def dossier_id(service_request: dict[str, Any]) -> str:
    """The télédossier id shown to people: the ServiceRequest's identifier, else its id."""
    for identifier in service_request.get("identifier") or []:
        if identifier.get("value"):
            return str(identifier["value"])
    return str(service_request.get("id", ""))


def _local(reference: Any, base_url: str) -> str | None:
    """`Organization/1` from a Reference (relative, absolute on this server, or versioned)."""
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str):
        return None
    if ref.startswith(base_url + "/"):
        ref = ref[len(base_url) + 1 :]
    parts = ref.split("/")
    if len(parts) < 2 or parts[0] not in CONTACT_TYPES or "://" in ref:
        return None
    return f"{parts[0]}/{parts[1]}"


def _addressees(event: str, task: dict[str, Any], service_request: dict[str, Any], base_url: str) -> list[str]:
    side = EVENTS[event][0]
    if side == REQUIS:
        candidates = (
            [task.get("owner")] if task.get("owner") else list((task.get("restriction") or {}).get("recipient") or [])
        )
    else:
        candidates = [task.get("requester") or service_request.get("requester")]
    out: list[str] = []
    for candidate in candidates:
        ref = _local(candidate, base_url)
        if ref and ref not in out:
            out.append(ref)
    return out


def app_link(app_url: str | None, sr_id: str) -> str | None:
    if not app_url:
        return None
    return app_url.replace("{id}", sr_id)


def messages(event: str, dossier: str, link: str | None) -> tuple[str, str, str]:
    """(e-mail subject, e-mail text, SMS text): the dossier id, the event and the link, nothing else."""
    label = EVENTS[event][1]
    subject = f"Téléexpertise – {label} (dossier {dossier})"
    where = (
        f"Pour le consulter, connectez-vous à l'application de téléexpertise : {link}"
        if link
        else ("Pour le consulter, connectez-vous à l'application de téléexpertise.")
    )
    text = (
        f"Bonjour,\n\nTélédossier {dossier} : {label}.\n{where}\n\n"
        "Ce message ne contient aucune donnée médicale. Merci de ne pas y répondre.\n"
    )
    sms = f"Téléexpertise : {label}, dossier {dossier}." + (f" {link}" if link else "")
    return subject, text, sms


# ---- contact points ---------------------------------------------------------------------------------


def _current(point: dict[str, Any], now: datetime) -> bool:
    if point.get("use") == "old":
        return False
    end = (point.get("period") or {}).get("end")
    if end:
        try:
            return datetime.fromisoformat(end.replace("Z", "+00:00")) > now
        except ValueError:
            return True
    return True


def _from_telecom(telecom: list[dict[str, Any]], now: datetime) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for point in telecom:
        value = point.get("value")
        if not isinstance(value, str) or not _current(point, now):
            continue
        system = point.get("system")
        if system == "email" and (email := normalise_email(value)):
            out.append(("email", email))
        elif (system == "sms" or (system == "phone" and point.get("use") == "mobile")) and (
            phone := normalise_phone(value)
        ):
            out.append(("sms", phone))
    return out


def _from_address(address: str) -> tuple[str, str] | None:
    scheme = address.split(":", 1)[0].lower()
    if scheme == "mailto" and (email := normalise_email(address)):
        return ("email", email)
    if scheme in ("tel", "sms") and (phone := normalise_phone(address)):
        return ("sms", phone)
    return None


async def _resource(ctx: ServerContext, ref: str) -> dict[str, Any] | None:
    rtype, _, rid = ref.partition("/")
    doc = await ctx.store.current(rtype, rid)
    return doc.get("res") if doc else None


async def contact_points(ctx: ServerContext, ref: str) -> list[tuple[str, str]]:
    """[(channel, address)] for an Organization, PractitionerRole or Practitioner reference."""
    resource = await _resource(ctx, ref)
    if resource is None:
        return []
    now = now_ms()
    points = _from_telecom(resource.get("telecom") or [], now)
    for endpoint_ref in resource.get("endpoint") or []:
        target = endpoint_ref.get("reference", "") if isinstance(endpoint_ref, dict) else ""
        if target.startswith(ctx.base_url + "/"):
            target = target[len(ctx.base_url) + 1 :]
        if not target.startswith("Endpoint/"):
            continue
        endpoint = await _resource(ctx, "/".join(target.split("/")[:2]))
        if endpoint and endpoint.get("status") == "active" and (point := _from_address(endpoint.get("address", ""))):
            points.append(point)
    if not points and ref.startswith("PractitionerRole/"):
        practitioner = _local(resource.get("practitioner"), ctx.base_url)
        if practitioner and practitioner.startswith("Practitioner/"):
            points = await contact_points(ctx, practitioner)
    unique: list[tuple[str, str]] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique


# ---- the background step ----------------------------------------------------------------------------


def _id(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


async def expand(ctx: ServerContext, outbox: Outbox, item: OutboxItem) -> None:
    """The `tlx-notify` outbox handler: one `notice` item per contact point of each addressee."""
    data = item.data
    event, dossier = data["event"], data["dossier"]
    subject, text, sms = messages(event, dossier, app_link(ctx.settings.app_url, data["service_request"]))
    for addressee in data["addressees"]:
        points = await contact_points(ctx, addressee)
        base = {"event": event, "recipient": addressee, "about": data["about"]}
        if not points:
            reason = f"no e-mail address or mobile number for {addressee}"
            log.warning("addressee without contact point", extra={"addressee": addressee, "event": event})
            await record(ctx, _id(item.id, addressee, "none"), communication(base, "not-done", reason=reason))
            continue
        notices = []
        for channel, address in points:
            notice = {**base, "channel": channel, "to": address}
            notice.update({"subject": subject, "text": text} if channel == "email" else {"text": sms})
            notices.append((_id(item.id, addressee, channel, address), notice))
        await outbox.enqueue_many(NOTICE, notices)
