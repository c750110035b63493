"""ZAM^Z01 / Z02 / Z03: the CI-SIS business acknowledgements of a document sent in HL7 v2.

A PFI answers a document message (ORU / MDM) first with the HL7 ACK, then, later, with business
acknowledgements: Z01 DMP receipt (ACK_RECEPTION_DMP, with an ERR segment when refused), Z02 MSSanté
receipt (ACK_RECEPTION_MSS, DESTINATAIRE_MSS), Z03 MSSanté read (ACK_LECTURE_MSS, LECTEUR_MSS). OBX-4
names the acknowledged message (its MSH-10). Each one is recorded on the outbound message it
acknowledges (`hl7_outbox.business_acks`, see `fhir_server/jobs/hl7_outbox.py`) and answered AA; one
about a message this server did not send is still accepted (and said so in MSA-3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.storage.clock import now_ms
from mappings.hl7v2.ack import ERR_REQUIRED_FIELD_MISSING, ERR_UNSUPPORTED_EVENT, HL7Reject, Processed
from mappings.hl7v2.segments import Message

if TYPE_CHECKING:
    from fhir_server.config import Settings
    from fhir_server.context import ServerContext

KINDS = {"Z01": "dmp-receipt", "Z02": "mssante-receipt", "Z03": "mssante-read"}


def business_ack(msg: Message) -> dict[str, Any]:
    """The acknowledgement a ZAM message carries."""
    if msg.trigger not in KINDS:
        raise HL7Reject("AE", ERR_UNSUPPORTED_EVENT, f"unsupported event {msg.trigger or '(none)'} for ZAM")
    ack: dict[str, Any] = {"event": msg.trigger, "kind": KINDS[msg.trigger], "from": msg.sender}
    ack["control_id"] = msg.control_id
    for obx in msg.all("OBX"):
        code = obx.comp(3, 1).upper()
        if obx.text(4) and "message" not in ack:
            ack["message"] = obx.text(4)
        if code.startswith("ACK_"):
            ack["accepted"] = obx.comp(5, 1).upper() == "Y"
        elif obx.text(2).upper() == "XTN":
            ack.setdefault("people", []).append({"id": obx.text(4), "email": obx.comp(5, 4)})
    err = msg.first("ERR")
    if err is not None:
        ack["error"] = {"code": err.comp(5, 1) or err.comp(3, 1), "text": err.comp(5, 2) or err.comp(3, 2)}
    if "message" not in ack:
        raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "OBX-4 (the acknowledged message id) missing")
    return ack


async def process(ctx: ServerContext, msg: Message, settings: Settings) -> Processed:
    from fhir_server.jobs.hl7_outbox import OUTBOX

    ack = business_ack(msg)
    ack["received"] = now_ms()
    result = await ctx.database.db[OUTBOX].update_many(
        {"control_id": ack["message"]}, {"$push": {"business_acks": ack}}
    )
    state = "accepted" if ack.get("accepted") else "refused"
    text = f"{ack['kind']} of message {ack['message']} ({state}) recorded"
    if not result.matched_count:
        text += "; that message was not sent by this server"
    return Processed(text, [])
