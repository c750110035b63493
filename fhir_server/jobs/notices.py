"""One notice (an e-mail or an SMS) from the outbox, and its record as a Communication.

Outbox item data: {channel: email|sms, to, subject, text, event, recipient: "Organization/1", about:
["Task/1", "ServiceRequest/1"]}. The notice is sent, then recorded as a Communication whose id is the
item's, so a re-run after a crash neither sends twice (the item remembers `sent`) nor records twice:

- `status` completed, `sent`; or, after the last attempt failed, `not-done` with `statusReason.text`;
- `medium` e-mail (v3-ParticipationMode EMAILWRIT) or SMS; `recipient` the addressee (Organization,
  PractitionerRole or Practitioner); `about` the Task and ServiceRequest; `category` the workflow event;
- `payload[0].contentString` the exact text sent (and `topic.text` the e-mail subject);
- extension `tlx-ext-notification-address` (valueContactPoint): the address or number used.
"""

from __future__ import annotations

import logging
from typing import Any

from fhir_server.conformance import CANONICAL_BASE
from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.jobs.outbox import OutboxItem
from fhir_server.jobs.senders import send_mail, send_sms
from fhir_server.storage.clock import fhir_instant, now_ms

log = logging.getLogger(__name__)

NOTICE = "notice"
EVENT_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/teledossier-event"
CHANNEL_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/notification-channel"
ADDRESS_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/tlx-ext-notification-address"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
MEDIUM: dict[str, dict[str, Any]] = {
    "email": {
        "coding": [
            {"system": PARTICIPATION_MODE, "code": "EMAILWRIT", "display": "email"},
            {"system": CHANNEL_SYSTEM, "code": "email"},
        ],
        "text": "e-mail",
    },
    "sms": {"coding": [{"system": CHANNEL_SYSTEM, "code": "sms"}], "text": "SMS"},
}
CONTACT_SYSTEM = {"email": "email", "sms": "sms"}


def communication(
    data: dict[str, Any], status: str, *, reason: str | None = None, sent: str | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Communication"}
    channel, to = data.get("channel"), data.get("to")
    if channel and to:
        resource["extension"] = [
            {"url": ADDRESS_EXTENSION, "valueContactPoint": {"system": CONTACT_SYSTEM[channel], "value": to}}
        ]
    resource["status"] = status
    if reason:
        resource["statusReason"] = {"text": reason[:1000]}
    resource["category"] = [{"coding": [{"system": EVENT_SYSTEM, "code": data["event"]}]}]
    if channel:
        resource["medium"] = [MEDIUM[channel]]
    if data.get("subject") and channel == "email":
        resource["topic"] = {"text": data["subject"]}
    resource["about"] = [{"reference": ref} for ref in data.get("about", [])]
    if sent:
        resource["sent"] = sent
    if data.get("recipient"):
        resource["recipient"] = [{"reference": data["recipient"]}]
    if data.get("text"):
        resource["payload"] = [{"contentString": data["text"]}]
    return resource


async def record(ctx: ServerContext, rid: str, resource: dict[str, Any]) -> None:
    """Store the Communication under the given id; already there (a re-run) is fine."""
    try:
        await ctx.store.create("Communication", resource, rid=rid)
    except FHIRError as exc:
        if exc.status != 409:
            raise


async def deliver(ctx: ServerContext, item: OutboxItem) -> None:
    """The `notice` outbox handler."""
    data = item.data
    if not data.get("sent"):
        if data["channel"] == "email":
            await send_mail(ctx.settings, data["to"], data["subject"], data["text"])
        else:
            await send_sms(ctx.settings, data["to"], data["text"])
        await item.update(sent=fhir_instant(now_ms()))
    await record(ctx, item.id, communication(data, "completed", sent=data["sent"]))


async def failed(ctx: ServerContext, item: OutboxItem, reason: str) -> None:
    """After the last attempt: the notice is recorded as not sent, with why (or as sent, if only its
    record kept failing)."""
    if item.data.get("sent"):
        await record(ctx, item.id, communication(item.data, "completed", sent=item.data["sent"]))
        return
    await record(ctx, item.id, communication(item.data, "not-done", reason=reason))
