"""[type]/[id]/$send-hl7: send a DocumentReference or a DiagnosticReport to an HL7 v2 peer over MLLP.

    POST [base]/DocumentReference/[id]/$send-hl7?peer=NAME[&_wait=SECONDS]
    POST [base]/DiagnosticReport/[id]/$send-hl7?peer=NAME

The resource, its Patient (IPP, INS), its Encounter and its content (the Binary, or inline data) are
built into an MDM^T02 (T10 for a replacement, T04 for a document entered in error) or an ORU^R01, as
the peer's configuration says (FHIR_HL7_PEERS; `peer` may be omitted when only one is configured),
and queued in the durable outbox (`jobs/hl7_outbox.py`), which sends it and retries until the peer
acknowledges it. The answer waits up to `_wait` seconds (default 10, at most 60) for the peer's ACK:

- 200 with a Parameters (`status` sent or rejected, `ack` MSA-1 and `ackText`, `messageControlId`,
  `attempts`) once the peer answered;
- 202 with the same Parameters (`status` queued) when it has not yet: the outbox keeps trying.

Access: the read scope on the type (data leaves the server as it would with a read), the
patient-context confinement and the access policy of a read. Audited as an operation; the delivery
itself is audited as an HL7 export (DICOM 110106) when the peer acknowledges it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_visible
from fhir_server.auth.policy import check_readable
from fhir_server.context import resource_id_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, wants_pretty
from mappings.hl7v2.outbound import OutboundError, build

TYPES = ("DocumentReference", "DiagnosticReport")
MAX_WAIT = 60.0


async def send_hl7(request: Request) -> Response:
    ctx = server(request)
    rtype = request.path_params["type"]
    if rtype not in TYPES:
        raise FHIRError(404, f"$send-hl7 is defined on {' and '.join(TYPES)} only", code="not-supported")
    rid = resource_id_of(request)
    outbox = getattr(request.app.state, "hl7_outbox", None)
    if outbox is None:
        raise FHIRError(501, "no HL7 v2 peer is configured (FHIR_HL7_PEERS)", code="not-supported")
    name = request.query_params.get("peer")
    if name is None and len(outbox.peers) == 1:
        name = next(iter(outbox.peers))
    peer = outbox.peers.get(name or "")
    if peer is None:
        known = ", ".join(sorted(outbox.peers))
        raise FHIRError(400, f"unknown HL7 peer {name!r} (configured: {known})", code="invalid")
    try:
        wait = min(float(request.query_params.get("_wait", "10")), MAX_WAIT)
    except ValueError:
        raise FHIRError(400, "_wait must be a number of seconds", code="invalid") from None
    version = await ctx.store.read(rtype, rid)
    check_visible(ctx, request, rtype, version.resource)
    await check_readable(ctx, request, rtype, version.resource or {})
    try:
        built = await build(ctx, version.resource or {}, peer)
    except OutboundError as exc:
        raise FHIRError(422, str(exc), code="business-rule") from None
    queued = await outbox.enqueue(peer, built.text, built.control_id, built.event, f"{rtype}/{rid}")
    doc = await outbox.wait_final(queued["_id"], max(wait, 0.0)) or queued
    status = 200 if doc["state"] in ("sent", "rejected", "failed") else 202
    return fhir_response(_parameters(doc, peer.name, built.event), status, pretty=wants_pretty(request))


def _parameters(doc: dict[str, Any], peer: str, event: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "peer", "valueString": peer},
        {"name": "event", "valueString": event},
        {"name": "messageControlId", "valueString": doc["control_id"]},
        {"name": "status", "valueCode": doc["state"]},
        {"name": "attempts", "valueInteger": doc.get("attempts", 0)},
    ]
    ack = doc.get("ack") or {}
    if ack.get("code"):
        params.append({"name": "ack", "valueCode": ack["code"]})
    if ack.get("text"):
        params.append({"name": "ackText", "valueString": ack["text"]})
    if doc.get("last_error") or doc.get("error"):
        params.append({"name": "lastError", "valueString": doc.get("error") or doc["last_error"]})
    return {"resourceType": "Parameters", "parameter": params}
