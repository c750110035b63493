"""One inbound HL7 v2 message → the mapping of its family, retried on concurrent updates.

| message | module |
| --- | --- |
| ADT (IHE PAM France), A40 merge | `adt.py`, `merge.py` |
| ORU^R01, MDM^T02/T04/T10/T11 (CI-SIS "Transmission de document(s) CDA en HL7v2") | `documents.py` |
| ORM^O01, OMG^O19, OMI^O23 | `orders.py` |
| ZAM^Z01/Z02/Z03 business acknowledgements | `zam.py` |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mappings.hl7v2 import adt, documents, orders, zam
from mappings.hl7v2.ack import ERR_APPLICATION_INTERNAL, ERR_UNSUPPORTED_MESSAGE_TYPE, HL7Reject, Processed
from mappings.hl7v2.segments import Message
from mappings.hl7v2.writes import Conflict

if TYPE_CHECKING:
    from fhir_server.config import Settings
    from fhir_server.context import ServerContext

Handler = Callable[["ServerContext", Message, "Settings"], Awaitable[Processed]]
HANDLERS: dict[str, Handler] = {
    "ADT": adt.process,
    "ORU": documents.process,
    "MDM": documents.process,
    "ORM": orders.process,
    "OMG": orders.process,
    "OMI": orders.process,
    "ZAM": zam.process,
}
ATTEMPTS = 5


def parse(text: str, settings: Settings) -> Message:
    return Message.parse(text, settings.hl7v2_timezone)


async def process(ctx: ServerContext, msg: Message) -> Processed:
    """Apply one message; HL7Reject for the messages answered AE / AR."""
    handler = HANDLERS.get(msg.message_type)
    if handler is None:
        raise HL7Reject("AR", ERR_UNSUPPORTED_MESSAGE_TYPE, f"unsupported message type {msg.message_type or '(none)'}")
    for _ in range(ATTEMPTS):
        try:
            return await handler(ctx, msg, ctx.settings)
        except Conflict:
            continue  # a resource it updates changed meanwhile: map the message again on fresh data
    raise HL7Reject("AE", ERR_APPLICATION_INTERNAL, "the resources of this message keep changing; send it again")
