"""The compte-rendu sent to the requesting structure's information system (spec §7.3, §8 test 11).

When `$respond` has committed, `deliver_after_commit()` looks at the requérant's structure (the
structure of the dossier's requester PractitionerRole) for the extension `tlx-ext-hl7-peer`:

    {"url": "https://fhir-server.example/fhir/StructureDefinition/tlx-ext-hl7-peer",
     "extension": [{"url": "peer", "valueString": "EAI-S1"},        # a FHIR_HL7_PEERS entry
                   {"url": "format", "valueCode": "pdf"}]}           # pdf | cda-n1 | tlm-cr (default pdf)

and, when it is there, queues one HL7 v2 message for that peer in the durable outbox (jobs/hl7_outbox.py),
built by mappings/hl7v2/outbound.py from the CR's DocumentReference: MDM^T02 or ORU^R01 as the peer's
own configuration says (`message`), PID-3 the patient's IPP (and INS), OBX-5 the base64 of the PDF, or of
a CDA R2 — the N1 (mappings/cda/generate.py) or the CI-SIS TLM-CR volet (mappings/cda/teleexpertise.py) —
whose header the CR lacks is completed here: custodian = the responder's structure, legal authenticator =
the responder, télémédecine act = the Task's billing code when it is an NGAP act (else TE2, the requis's
téléexpertise act), practice setting / facility type `ETABLISSEMENT` / `SA01` unless the extension gives
`practiceSetting` / `facilityType` (valueCode). The outbox then sends it and retries until the peer
acknowledges it; the ACK is kept on the outbox entry and audited (DICOM 110106 Export).

Never raises and never undoes anything: a structure with no setting, an unknown peer, a CDA that cannot
be built (what is missing is logged) only mean no message; `$respond` has answered regardless.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from starlette.requests import Request

from fhir_server.context import ServerContext, server
from fhir_server.teleexpertise.codes import BASE, EXT_BILLING_CODE, extension_value, reference_of
from fhir_server.teleexpertise.directory import read_live, structure_of

log = logging.getLogger(__name__)

EXT_HL7_PEER = f"{BASE}/StructureDefinition/tlx-ext-hl7-peer"
FORMATS = ("pdf", "cda-n1", "tlm-cr")
NGAP = "urn:oid:1.2.250.1.215.200.3.3"
DEFAULT_ACT = "TE2"  # NGAP: téléexpertise act of the médecin requis
DEFAULT_PRACTICE = "ETABLISSEMENT"  # JDV_J04 (TRE_A01 cadre d'exercice)
DEFAULT_FACILITY = "SA01"  # JDV_J02 (TRE_R02 secteur d'activité): établissement public de santé
CDA_MEDIA_TYPE = "application/hl7-cda+xml"


def delivery_setting(structure: dict[str, Any]) -> dict[str, str] | None:
    """{peer, format[, practiceSetting, facilityType]} from a structure's `tlx-ext-hl7-peer`, if any."""
    for ext in structure.get("extension") or []:
        if ext.get("url") != EXT_HL7_PEER:
            continue
        values: dict[str, str] = {}
        for part in ext.get("extension") or []:
            value = next((v for k, v in part.items() if k.startswith("value")), None)
            if isinstance(value, str) and part.get("url"):
                values[part["url"]] = value
        if values.get("peer"):
            values.setdefault("format", "pdf")
            return values
    return None


async def deliver_after_commit(request: Request, *, task: dict[str, Any], service_request: dict[str, Any]) -> None:
    """Queue the compte-rendu for the requérant structure's HL7 peer, if it has one. Never raises."""
    try:
        ctx = server(request)
        outbox = getattr(request.app.state, "hl7_outbox", None)
        await deliver(ctx, outbox, task=task, service_request=service_request)
    except Exception:
        log.exception(
            "the compte-rendu could not be queued for the requesting structure", extra={"task": task.get("id")}
        )


async def deliver(
    ctx: ServerContext, outbox: Any, *, task: dict[str, Any], service_request: dict[str, Any]
) -> dict[str, Any] | None:
    """The queued outbox entry, or None when there is nothing to send (or nowhere to send it)."""
    from mappings.hl7v2.outbound import build

    requester = reference_of(service_request.get("requester"))
    requester_role = await read_live(ctx, requester) if requester else None
    structure_ref = await structure_of(ctx, reference_of((requester_role or {}).get("organization")))
    structure = await read_live(ctx, structure_ref) if structure_ref else None
    setting = delivery_setting(structure or {})
    if setting is None:
        return None
    if outbox is None:
        log.warning("a structure asks for HL7 delivery but no peer is configured", extra={"structure": structure_ref})
        return None
    peer = outbox.peers.get(setting["peer"])
    if peer is None or setting["format"] not in FORMATS:
        log.warning(
            "compte-rendu not delivered: unknown HL7 peer or format",
            extra={"structure": structure_ref, "peer": setting["peer"], "format": setting["format"]},
        )
        return None
    document_ref = next(
        (
            reference_of(o.get("valueReference"))
            for o in task.get("output") or []
            if (reference_of(o.get("valueReference")) or "").startswith("DocumentReference/")
        ),
        None,
    )
    document = await read_live(ctx, document_ref) if document_ref else None
    if document is None:
        log.warning("compte-rendu not delivered: the answer has no PDF document", extra={"task": task.get("id")})
        return None
    if setting["format"] != "pdf":
        cda = await _cda(ctx, document, task, setting)
        if cda is None:
            return None
        attachment = {"contentType": CDA_MEDIA_TYPE, "data": base64.b64encode(cda).decode("ascii")}
        document = {**document, "content": [{"attachment": attachment}]}
    built = await build(ctx, document, peer)
    return await outbox.enqueue(peer, built.text, built.control_id, built.event, f"DocumentReference/{document['id']}")


async def _cda(
    ctx: ServerContext, document: dict[str, Any], task: dict[str, Any], setting: dict[str, str]
) -> bytes | None:
    """The CR as a CDA R2 (N1 or TLM-CR), or None (logged) when the CI-SIS header cannot be filled."""
    from mappings.cda.generate import CdaGenerationError, generate_n1
    from mappings.cda.teleexpertise import TELEMEDICINE_ACTS, generate_tlm_cr
    from mappings.hl7v2.outbound import _bytes

    attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
    pdf = await _bytes(ctx, attachment)
    resources: dict[str, dict[str, Any]] = {}

    async def load(ref: str | None) -> dict[str, Any] | None:
        if not ref or ref in resources:
            return resources.get(ref or "")
        found = await read_live(ctx, ref)
        if found is not None:
            resources[ref] = {**found, "id": ref.split("/", 1)[1]}
        return found

    await load(reference_of(document.get("subject")))
    author = reference_of((document.get("author") or [{}])[0])
    role = await load(author) or {}
    practitioner = reference_of(role.get("practitioner"))
    await load(practitioner)
    await load(reference_of(role.get("organization")))
    custodian = await structure_of(ctx, reference_of(role.get("organization")))
    await load(custodian)
    act = extension_value(task, EXT_BILLING_CODE)
    act = act if act in TELEMEDICINE_ACTS else DEFAULT_ACT
    context = dict(document.get("context") or {})
    context["practiceSetting"] = {"coding": [{"code": setting.get("practiceSetting", DEFAULT_PRACTICE)}]}
    context["facilityType"] = {"coding": [{"code": setting.get("facilityType", DEFAULT_FACILITY)}]}
    if setting["format"] == "tlm-cr":
        context["event"] = [*(context.get("event") or []), {"coding": [{"system": NGAP, "code": act}]}]
    view = {**document, "context": context, "content": [{"attachment": {**attachment, "language": "fr-FR"}}]}
    if custodian:
        view["custodian"] = {"reference": custodian}
    if practitioner:
        view["authenticator"] = {"reference": practitioner}
    version = str((document.get("meta") or {}).get("versionId") or "1")
    generate = generate_tlm_cr if setting["format"] == "tlm-cr" else generate_n1
    try:
        return generate(view, resources, pdf, media_type="application/pdf", document_version=version)
    except CdaGenerationError as exc:
        log.warning(
            "compte-rendu not delivered: its CDA cannot be built",
            extra={"document": document.get("id"), "issues": [str(i) for i in exc.issues]},
        )
        return None
