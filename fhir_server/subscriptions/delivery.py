"""From a written resource version to rest-hook calls (two outbox kinds, retried independently).

`subscription-match` (one per write of a subscribed type): each candidate Subscription's criteria are
compiled (chains resolved now, not when the Subscription was created) and run as a search restricted to
`_id` and the version written, so the match is exactly what a search would answer, for that version.
A version already replaced by a newer one is skipped: the newer write has its own match item (R4 also
says there is no notification for a deletion). The Subscription's owner must be allowed to search the
type (and read it, when the payload carries the resource) and to see that resource under the policy
layer (auth/policy.py: labels, Consent, care team) and its patient context, else nothing goes out.

`subscription-notify` (one per matching Subscription and version), R4 rest-hook: without payload, a POST
with an empty body to the endpoint; with a payload, a PUT of the resource version to
`{endpoint}/{type}/{id}` (R4: the endpoint is then a FHIR base). The channel's headers are sent as given.
Any answer but 2xx, or no answer, is retried; after FHIR_NOTIFY_MAX_ATTEMPTS the Subscription goes to
`error`. Notifications of one Subscription are independent items: their order is not guaranteed.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
from starlette.requests import Request

from fhir_server.auth.patient_context import in_compartment
from fhir_server.auth.policy import check_readable
from fhir_server.auth.scopes import allows
from fhir_server.auth.tokens import AccessToken
from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.jobs.outbox import Outbox, OutboxItem, Permanent
from fhir_server.search.engine import compile_filter
from fhir_server.storage.clock import now_ms
from fhir_server.subscriptions.lifecycle import parse_headers, set_status
from fhir_server.subscriptions.registry import Owner, SubscriptionRegistry

log = logging.getLogger(__name__)

NOTIFY = "subscription-notify"


def _stand_in_request(access: AccessToken, patient: str | None) -> Request:
    """A request carrying the owner's token (as app._authorize leaves it), for the policy functions."""
    state: dict[str, Any] = {"access": access}
    if patient is not None:
        state["patient"] = patient
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b"", "state": state}
    return Request(scope)


async def owner_may_see(
    ctx: ServerContext, owner: Owner | None, rtype: str, resource: dict[str, Any], payload: bool
) -> bool:
    if owner is None:
        return True  # created with authorisation turned off
    access = owner.access()
    actions = ("s", "r") if payload else ("s",)
    patient = None
    if not all(allows(access.scopes, rtype, a) for a in actions):
        # Only patient/ scopes: confined to the token's patient compartment, like its searches.
        patient = access.patient
        if patient is None or not all(allows(access.scopes, rtype, a, context="patient") for a in actions):
            return False
        if not in_compartment(ctx, rtype, resource, patient):
            return False
    try:
        await check_readable(ctx, _stand_in_request(access, patient), rtype, resource)
    except FHIRError:
        return False
    return True


async def match(ctx: ServerContext, registry: SubscriptionRegistry, outbox: Outbox, item: OutboxItem) -> None:
    """The `subscription-match` handler."""
    rtype, rid, version = item.data["type"], item.data["id"], item.data["v"]
    collection = ctx.database.resources(rtype)
    now = now_ms()
    for sub in await registry.active(item.data["subs"]):
        if sub.resource_type != rtype or (sub.end is not None and sub.end <= now):
            continue
        try:
            compiled = await compile_filter(ctx, rtype, sub.criteria, strict=False)
        except FHIRError as exc:
            log.info("subscription criteria no longer valid", extra={"subscription": sub.id, "error": exc.diagnostics})
            continue
        doc = await collection.find_one({"$and": [compiled.flt, {"_id": rid, "v": version}]}, {"res": 1})
        if doc is None:
            continue
        if not await owner_may_see(ctx, sub.owner, rtype, doc["res"], sub.payload):
            continue
        await outbox.enqueue(
            NOTIFY,
            {"sub": sub.id, "type": rtype, "id": rid, "v": version},
            item_id=f"notify:{sub.id}:{rtype}/{rid}/{version}",
        )


async def notify(ctx: ServerContext, registry: SubscriptionRegistry, item: OutboxItem) -> None:
    """The `subscription-notify` handler: one rest-hook call."""
    sid = item.data["sub"]
    if not await registry.active([sid]):
        return  # switched off, in error, deleted or rewritten since: nothing to send
    doc = await ctx.store.current("Subscription", sid)
    if doc is None or doc.get("gone"):
        return
    channel = doc["res"].get("channel") or {}
    endpoint: str = channel.get("endpoint", "")
    headers = dict(parse_headers(channel.get("header")))
    payload = (channel.get("payload") or "").split(";")[0].strip()
    async with httpx.AsyncClient(timeout=ctx.settings.notify_timeout_seconds, follow_redirects=False) as http:
        if payload:
            rtype, rid = item.data["type"], item.data["id"]
            try:
                resource = (await ctx.store.vread(rtype, rid, item.data["v"])).resource
            except FHIRError as exc:
                raise Permanent(f"{rtype}/{rid} version {item.data['v']} is not readable: {exc.diagnostics}") from None
            headers["Content-Type"] = payload
            response = await http.put(
                f"{endpoint.rstrip('/')}/{rtype}/{rid}", content=orjson.dumps(resource), headers=headers
            )
        else:
            response = await http.post(endpoint, content=b"", headers=headers)
    if not response.is_success:
        raise OSError(f"{endpoint} answered {response.status_code}")


async def notify_failed(ctx: ServerContext, registry: SubscriptionRegistry, item: OutboxItem, reason: str) -> None:
    """After the last attempt: the Subscription goes to `error` and gets no more notifications."""
    sid = item.data["sub"]
    if not await registry.active([sid]):
        return
    doc = await ctx.store.current("Subscription", sid)
    if doc is None or doc.get("gone"):
        return
    await registry.deactivate(sid)
    error = f"a notification failed {item.attempts} times, last: {reason}"
    await set_status(ctx, sid, "error", error, expected=doc["v"])
