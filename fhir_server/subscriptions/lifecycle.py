"""A Subscription's status as the server manages it: `requested` → `active`, or `error`, or left `off`.

Every Subscription a client writes is checked in the background (an `subscription-activate` outbox
item): the criteria must be a valid search on a known type, the channel a rest-hook to an absolute
http(s) URL, the payload empty or JSON, each header `Name: value`. No handshake: R4 mandates none, and
a hook that is down at creation time is no reason to refuse the Subscription (deliveries are retried).
A valid `requested` (or client-written `active`) Subscription becomes `active`; an invalid one `error`
with the reason in `Subscription.error`; `off` and `entered-in-error` ones get no notification. A client
revives an `error` Subscription by writing it again as `requested`. After a notification failed
`FHIR_NOTIFY_MAX_ATTEMPTS` times the Subscription goes to `error` (delivery.py).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.jobs.outbox import OutboxItem
from fhir_server.search.engine import CONTROL_PARAMS, compile_filter
from fhir_server.storage.clock import now_ms
from fhir_server.subscriptions.registry import SubscriptionRegistry, server_write
from fhir_server.validation import is_known_type

log = logging.getLogger(__name__)

JSON_PAYLOADS = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
LIVE_STATUSES = frozenset({"requested", "active"})
# Headers the HTTP client sets itself.
RESERVED_HEADERS = frozenset({"content-length", "content-type", "host", "transfer-encoding", "connection"})


class Invalid(Exception):
    pass


def parse_criteria(criteria: Any) -> tuple[str, list[tuple[str, str]]]:
    """`Task?owner=Organization/1` → ("Task", [("owner", "Organization/1")])."""
    if not isinstance(criteria, str) or not criteria.strip():
        raise Invalid("Subscription.criteria is required")
    rtype, _, query = criteria.strip().partition("?")
    if "/" in rtype or not is_known_type(rtype):
        raise Invalid(f"criteria {criteria!r}: {rtype!r} is not a FHIR R4 resource type")
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in CONTROL_PARAMS]
    return rtype, params


def parse_headers(values: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for value in values or []:
        name, sep, content = str(value).partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise Invalid(f"channel.header {value!r} is not of the form 'Name: value'")
        if name.lower() not in RESERVED_HEADERS:
            out.append((name, content.strip()))
    return out


def _end(subscription: dict[str, Any]) -> datetime | None:
    end = subscription.get("end")
    if not end:
        return None
    try:
        return datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"Subscription.end {end!r} is not an instant") from None


async def check(ctx: ServerContext, subscription: dict[str, Any]) -> dict[str, Any]:
    """The server's record of a valid Subscription (fields of registry.STATE); Invalid says why not."""
    rtype, params = parse_criteria(subscription.get("criteria"))
    try:
        await compile_filter(ctx, rtype, params, strict=True)
    except FHIRError as exc:
        raise Invalid(f"criteria {subscription.get('criteria')!r}: {exc.diagnostics}") from None
    channel = subscription.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise Invalid(f"channel type {channel.get('type')!r} is not supported: this server sends rest-hook only")
    endpoint = channel.get("endpoint") or ""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(f"channel.endpoint {endpoint!r} must be an absolute http(s) URL")
    payload = (channel.get("payload") or "").split(";")[0].strip()
    if payload and payload not in JSON_PAYLOADS:
        raise Invalid(f"channel.payload {payload!r} is not supported: use application/fhir+json or none")
    parse_headers(channel.get("header"))
    # Pairs as documents: FerretDB v1 stores no nested arrays.
    criteria = [{"n": k, "v": v} for k, v in params]
    return {"type": rtype, "criteria": criteria, "payload": bool(payload), "end": _end(subscription)}


async def set_status(
    ctx: ServerContext, sid: str, status: str, error: str | None = None, *, expected: int | None = None
) -> bool:
    """Write the Subscription's next version with this status (and error text); False if it is gone, or
    if `expected` is given and the Subscription is no longer at that version."""
    for _ in range(5):
        doc = await ctx.store.current("Subscription", sid)
        if doc is None or doc.get("gone") or (expected is not None and doc["v"] != expected):
            return False
        resource = dict(doc["res"])
        if resource.get("status") == status and resource.get("error") == error:
            return True
        resource["status"] = status
        if error:
            resource["error"] = error
        else:
            resource.pop("error", None)
        token = server_write.set(True)
        try:
            await ctx.store.write("Subscription", sid, resource, if_match=doc["v"])
            return True
        except FHIRError as exc:
            if exc.status != 412:
                raise
            if expected is not None:
                return False
            # A client wrote it meanwhile: its write queued a new check; the error still stands on top of it.
        finally:
            server_write.reset(token)
    return False


async def activate(ctx: ServerContext, registry: SubscriptionRegistry, item: OutboxItem) -> None:
    """The `subscription-activate` outbox handler."""
    sid, version = item.data["id"], item.data["v"]
    doc = await ctx.store.current("Subscription", sid)
    if doc is None or doc.get("gone") or doc["v"] != version:
        return  # deleted or rewritten since: that write queued its own check
    subscription = doc["res"]
    if subscription.get("status") not in LIVE_STATUSES:
        await registry.deactivate(sid)
        return
    try:
        record = await check(ctx, subscription)
    except Invalid as exc:
        log.info("subscription refused", extra={"subscription": sid, "reason": str(exc)})
        await registry.deactivate(sid)
        await set_status(ctx, sid, "error", str(exc), expected=version)
        return
    if record["end"] is not None and record["end"] <= now_ms():
        await registry.deactivate(sid)
        await set_status(ctx, sid, "off", expected=version)
        return
    # Matching first, then the status: a client that reads `active` is notified of its next write. Should the
    # status write lose to a client's rewrite, that rewrite deactivated it and queued its own check.
    await registry.state.update_one({"_id": sid}, {"$set": {**record, "active": True}})
    await registry.refresh()
    if subscription.get("status") != "active" or subscription.get("error"):
        await set_status(ctx, sid, "active", expected=version)
