"""Wiring of everything that leaves the server through the outbox (jobs/outbox.py), done once at start-up.

Outbox kinds: `subscription-activate`, `subscription-match`, `subscription-notify` (subscriptions/),
`tlx-notify` (teleexpertise/notify.py: a workflow event → one notice per contact point), `notice`
(jobs/notices.py: one e-mail or SMS, recorded as a Communication) and `tlx-invitation`
(teleexpertise/invitation_mail.py: the enrolment e-mail of an invited professional, recorded the same way).
"""

from __future__ import annotations

from functools import partial

from fhir_server.context import ServerContext
from fhir_server.jobs import notices
from fhir_server.jobs.outbox import Kind, Outbox
from fhir_server.subscriptions import delivery, lifecycle
from fhir_server.subscriptions.registry import ACTIVATE, MATCH, SubscriptionRegistry


async def install(ctx: ServerContext) -> Outbox:
    """Create the outbox, register its kinds and hook Subscriptions into the store's writes. The caller
    runs `outbox.loop()` where deliveries should happen (FHIR_JOBS_ENABLED)."""
    from fhir_server.teleexpertise import (  # late: the téléexpertise package may import this module
        invitation_mail,
        notify,
    )

    settings = ctx.settings
    outbox = Outbox(
        ctx.database, max_attempts=settings.notify_max_attempts, retry_seconds=settings.notify_retry_seconds
    )
    await outbox.ensure_indexes()
    registry = SubscriptionRegistry(ctx, outbox)
    outbox.kinds[ACTIVATE] = Kind(partial(lifecycle.activate, ctx, registry))
    outbox.kinds[MATCH] = Kind(partial(delivery.match, ctx, registry, outbox))
    outbox.kinds[delivery.NOTIFY] = Kind(
        partial(delivery.notify, ctx, registry), partial(delivery.notify_failed, ctx, registry)
    )
    outbox.kinds[notify.EXPAND] = Kind(partial(notify.expand, ctx, outbox))
    outbox.kinds[notices.NOTICE] = Kind(partial(notices.deliver, ctx), partial(notices.failed, ctx))
    # The invitation e-mail of a professional invited from outside the annuaire (enrolment link).
    outbox.kinds[invitation_mail.KIND] = Kind(partial(invitation_mail.deliver, ctx), partial(notices.failed, ctx))
    outbox.periodic.append(registry.refresh)
    await registry.refresh()
    ctx.outbox = outbox
    ctx.store.observers.append(registry.on_write)
    return outbox
