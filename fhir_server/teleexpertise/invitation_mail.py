"""The invitation e-mail of a professional invited from outside the annuaire (teleexpertise/invitation.py).

After the transition commits, `queue()` puts one outbox item (kind `tlx-invitation`) per invitee still to
enrol; it never raises, so the transition stands whatever happens to the e-mail. The background handler
`deliver()` draws the enrolment token (teleexpertise/enrolment.py keeps only its hash), sends the e-mail
(jobs/senders.py, the FHIR_SMTP_* settings) and records it as a Communication like every notice
(jobs/notices.py: category teledossier-event `invited`, recipient the invitation PractitionerRole, about the
Task and the ServiceRequest, the address used), whose payload is the text sent with the link replaced by a
placeholder: the token is never stored in clear, neither in the outbox nor in the record. A delivery that gives
up is recorded `not-done` with the reason.

Content: no medical data — the dossier id, that the addressee is invited to give an opinion, the enrolment
link and its expiry; never the patient, the requérant's text or any clinical word.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from fhir_server.context import ServerContext
from fhir_server.jobs.notices import communication, record
from fhir_server.jobs.outbox import OutboxItem
from fhir_server.jobs.senders import send_mail
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.teleexpertise.enrolment import TOKENS, enrolment_link, issue_token, token_hash
from fhir_server.teleexpertise.invitation import Invited, task_of
from fhir_server.teleexpertise.notify import dossier_id

log = logging.getLogger(__name__)

KIND = "tlx-invitation"
EVENT = "invited"
PLACEHOLDER = "[lien personnel d'inscription, non conservé]"


def message(dossier: str, link: str, expires: float) -> tuple[str, str]:
    """(subject, text) of the invitation: the dossier id, the link and its expiry, nothing else."""
    until = datetime.fromtimestamp(expires, UTC).strftime("%d/%m/%Y à %H:%M (UTC)")
    subject = f"Téléexpertise – invitation à donner un avis (dossier {dossier})"
    text = (
        "Bonjour,\n\n"
        f"Un professionnel de santé vous adresse le télédossier {dossier} pour avis, sur la plateforme "
        "régionale de téléexpertise.\n\n"
        f"Pour y accéder, créez votre compte avec ce lien personnel, utilisable une seule fois, jusqu'au {until} :\n"
        f"{link}\n\n"
        "Vous vous connecterez ensuite avec votre identifiant, votre mot de passe et un code à usage unique "
        "envoyé à cette adresse.\n\n"
        "Ce message ne contient aucune donnée médicale. Si vous n'attendiez pas cette invitation, ignorez-le. "
        "Merci de ne pas y répondre.\n"
    )
    return subject, text


async def queue(
    ctx: ServerContext, invited: list[Invited], tasks: list[dict[str, Any]], service_request: dict[str, Any]
) -> None:
    """Queue the invitation e-mail of each invitee still to enrol. Never raises."""
    for person in (i for i in invited if i.enrol):
        try:
            outbox = ctx.outbox
            if outbox is None:
                log.warning("notifications are not installed: invitation e-mail dropped", extra={"role": person.role})
                continue
            task = task_of(tasks, person.role) or {}
            sr_ref = f"ServiceRequest/{service_request.get('id', '')}"
            data = {
                "channel": "email",
                "to": person.invitee.email,
                "event": EVENT,
                "recipient": person.role,
                "about": [f"Task/{task.get('id')}", sr_ref],
                "practitioner": person.practitioner,
                "role": person.role,
                "service_request": sr_ref,
                "dossier": dossier_id(service_request),
            }
            # The item's id is the Communication's: a FHIR id, stable per Task (a re-run queues nothing new).
            item_id = hashlib.sha256(f"tlx-invitation|Task/{task.get('id')}".encode()).hexdigest()[:32]
            await outbox.enqueue(KIND, data, item_id=item_id)
        except Exception:
            log.exception("invitation e-mail could not be queued", extra={"role": person.role})


async def deliver(ctx: ServerContext, item: OutboxItem) -> None:
    """The `tlx-invitation` outbox handler: a fresh token, the e-mail, then its Communication."""
    data = item.data
    if not data.get("sent"):
        token, expires = await issue_token(
            ctx,
            practitioner=data["practitioner"],
            role=data["role"],
            service_request=data["service_request"],
            email=data["to"],
        )
        subject, text = message(data["dossier"], enrolment_link(ctx, token), expires)
        try:
            await send_mail(ctx.settings, data["to"], subject, text)
        except Exception:
            # Never delivered: the token goes (a retry draws another one).
            await ctx.database.db[TOKENS].delete_one({"_id": token_hash(token)})
            raise
        _, recorded = message(data["dossier"], PLACEHOLDER, expires)
        await item.update(sent=fhir_instant(now_ms()), subject=subject, text=recorded)
    await record(ctx, item.id, communication(data, "completed", sent=data["sent"]))
