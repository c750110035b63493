"""Orders: ORM^O01, OMG^O19, OMI^O23 → ServiceRequest; and the ServiceRequest a result message links to.

The ServiceRequest of an order is found by its filler order number (ORC-3 / OBR-3, identifier type
FILL), else its placer order number (ORC-2 / OBR-2, PLAC), else its accession number (IPC-1 / OBR-18,
ACSN), else the DICOM Study Instance UID (IPC-3). ORC-1 (order control) drives it:

| ORC-1 | ServiceRequest |
| --- | --- |
| NW new order | created (`active`), or updated if already known |
| XO change order, SC status changed | updated; SC takes ORC-5 (CM completed, IP/SC active, HD on-hold, CA/DC revoked) |
| CA cancel, DC discontinue, OC / OD cancelled / discontinued | `revoked` |

An OMI^O23 carries the imaging study (IPC): accession number, requested procedure, Study Instance
UID, modality; a cancelled or changed study (DRIM-M exam W) revokes or updates its ServiceRequest.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from mappings.hl7v2.ack import ERR_REQUIRED_FIELD_MISSING, ERR_UNSUPPORTED_EVENT, HL7Reject, Processed
from mappings.hl7v2.identifiers import DICOM_UID, Identifiers, token
from mappings.hl7v2.patients import PatientMapping, resolve
from mappings.hl7v2.segments import Message, Segment, is_oid
from mappings.hl7v2.writes import Batch, body_of

if TYPE_CHECKING:
    from fhir_server.config import Settings
    from fhir_server.context import ServerContext

TRIGGERS = {"ORM": "O01", "OMG": "O19", "OMI": "O23"}
CONTROL_STATUS = {"NW": "active", "XO": None, "SC": None, "CA": "revoked", "DC": "revoked", "OC": "revoked"}
CONTROL_STATUS["OD"] = "revoked"
ORDER_STATUS = {"CM": "completed", "IP": "active", "SC": "active", "A": "active", "HD": "on-hold"}
ORDER_STATUS |= {"CA": "revoked", "DC": "revoked", "ER": "entered-in-error"}
PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "urgent", "T": "urgent"}
LOINC = "http://loinc.org"


async def process(ctx: ServerContext, msg: Message, settings: Settings) -> Processed:
    expected = TRIGGERS[msg.message_type]
    if msg.trigger != expected:
        raise HL7Reject(
            "AE", ERR_UNSUPPORTED_EVENT, f"unsupported event {msg.trigger or '(none)'} for {msg.message_type}"
        )
    orc = msg.first("ORC")
    if orc is None:
        raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "ORC segment missing")
    control = orc.text(1).upper()
    if control not in CONTROL_STATUS:
        raise HL7Reject("AE", ERR_UNSUPPORTED_EVENT, f"unsupported order control {control or '(none)'} (ORC-1)")
    ids = Identifiers(msg.enc, settings.hl7v2_identifier_systems)
    async with AsyncExitStack() as stack:
        batch = Batch(ctx)
        patient_id = await resolve(ctx, batch, stack, PatientMapping(msg, ids), update=False)
        order = Order(msg, ids, orc, msg.first("OBR"))
        keys = order.keys()
        if not keys:
            raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "no order number (ORC-2 / ORC-3) nor accession number")
        current = await find_order(ctx, keys)
        body = body_of(current) if current is not None else {"resourceType": "ServiceRequest", "intent": "order"}
        order.fill(body, {"reference": f"Patient/{patient_id}"})
        status = CONTROL_STATUS[control]
        if control == "SC":
            status = ORDER_STATUS.get(orc.text(5).upper())
        body["status"] = status or body.get("status") or "active"
        if current is None:
            rid = batch.create(body)
        else:
            rid = current["_id"]
            if body != current["res"]:
                batch.update(current, body)
        written = await batch.commit()
    return Processed(f"ServiceRequest/{rid} {body['status']}", written, f"Patient/{patient_id}")


class Order:
    def __init__(self, msg: Message, ids: Identifiers, orc: Segment | None, obr: Segment | None) -> None:
        self.msg, self.ids, self.orc, self.obr = msg, ids, orc, obr
        self.ipc = msg.first("IPC")

    def _first(self, *places: tuple[Segment | None, int]) -> str:
        for seg, n in places:
            if seg is not None and seg.reps(n) and seg.comp(n, 1):
                return seg.reps(n)[0]
        return ""

    def keys(self) -> list[dict[str, Any]]:
        """Identifiers, best key first: filler, placer, accession, study."""
        out = []
        filler = self._first((self.orc, 3), (self.obr, 3))
        placer = self._first((self.orc, 2), (self.obr, 2))
        if filler:
            out.append(self.ids.ei(filler, "FILL"))
        if placer:
            out.append(self.ids.ei(placer, "PLAC"))
        accession = self._first((self.ipc, 1), (self.obr, 18))
        if accession:
            out.append(self.ids.ei(accession, "ACSN"))
        study = self.ipc.comp(3, 1) if self.ipc is not None else ""
        if is_oid(study):
            out.append({"system": DICOM_UID, "value": f"urn:oid:{study}"})
        return [i for i in out if i]

    def fill(self, body: dict[str, Any], patient: dict[str, Any]) -> None:
        msg, orc, obr = self.msg, self.orc, self.obr
        identifiers = body.get("identifier", [])
        for ident in self.keys():
            if not any(i.get("system") == ident["system"] and i.get("value") == ident["value"] for i in identifiers):
                identifiers.append(ident)
        body["identifier"] = identifiers
        body["subject"] = patient
        if obr is not None and obr.comp(4, 1):
            system = obr.comp(4, 3).upper()
            coding = {"code": obr.comp(4, 1)}
            if system in ("LN", "LOINC"):
                coding["system"] = LOINC
            if obr.comp(4, 2):
                coding["display"] = obr.comp(4, 2)
            body["code"] = {"coding": [coding]}
        authored = msg.datetime(orc.text(9), "ORC-9") if orc is not None else None
        if authored:
            body["authoredOn"] = authored
        requester = self._first((orc, 12), (obr, 16))
        who = self.ids.xcn(requester) if requester else None
        if who:
            body["requester"] = who
        tq1 = msg.first("TQ1")
        if tq1 is not None:
            start = msg.datetime(tq1.text(7), "TQ1-7")
            if start:
                body["occurrenceDateTime"] = start
            priority = PRIORITY.get(tq1.comp(9, 1).upper())
            if priority:
                body["priority"] = priority
        if self.ipc is not None and self.ipc.comp(5, 1):
            modality = self.ipc.comp(5, 1)
            body["orderDetail"] = [
                {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}]}
            ]
        texts = ("ST", "TX", "FT")
        notes = [o.comp(5, 1) or o.comp(3, 2) or o.comp(3, 1) for o in msg.all("OBX") if o.text(2).upper() in texts]
        notes = [n for n in notes if n]
        if notes:
            body["note"] = [{"text": n} for n in notes]
        pv1 = msg.first("PV1")
        if pv1 is not None and pv1.reps(19) and "encounter" not in body:
            visit = self.ids.cx(pv1.reps(19)[0])
            if visit:
                body["encounter"] = {"identifier": visit}


async def find_order(ctx: ServerContext, keys: list[dict[str, Any]]) -> dict[str, Any] | None:
    from fhir_server.search.engine import find_current

    for key in keys:
        found = await find_current(ctx, "ServiceRequest", [("identifier", token(key))], limit=1, strict=True)
        if found:
            return found[0]
    return None


async def link_service_request(
    ctx: ServerContext,
    batch: Batch,
    msg: Message,
    ids: Identifiers,
    patient: dict[str, Any],
    encounter: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The ServiceRequest a result or document message answers: found by its order numbers, else
    created (`completed`) from ORC/OBR; None when the message carries no order number."""
    order = Order(msg, ids, msg.first("ORC"), msg.first("OBR"))
    keys = order.keys()
    if not keys:
        return None
    current = await find_order(ctx, keys)
    if current is not None:
        return {"reference": f"ServiceRequest/{current['_id']}"}
    body: dict[str, Any] = {"resourceType": "ServiceRequest", "intent": "order", "status": "completed"}
    order.fill(body, patient)
    if encounter:
        body["encounter"] = encounter
    if "code" not in body:
        body["code"] = {"text": "order"}
    return {"reference": f"ServiceRequest/{batch.create(body)}"}
