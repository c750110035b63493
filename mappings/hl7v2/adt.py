"""IHE PAM France ADT messages (HL7 v2.5) → FR Core Patient and Encounter.

Every event updates the Patient found by its IPP (else INS) from PID/ZFD (`patients.py`); the visit
events also update the Encounter found by its visit number (PV1-19), under that number's lease:

| event | Encounter |
| --- | --- |
| A01 admit, A04 register, A05 pre-admit | created or updated: in-progress (A05: planned), a movement added |
| A02 transfer | a movement added, the previous one completed |
| A03 discharge | finished, `period.end`, the open movements completed |
| A06 / A07 | class becomes inpatient / outpatient, a movement added |
| A21 / A22 leave of absence / return | onleave / in-progress, a movement added |
| A11 / A38 cancel admit / pre-admit | cancelled |
| A12 cancel transfer, A52 / A53 cancel leave / return | the cancelled movement removed, the previous one active again |
| A13 cancel discharge | in-progress again, `period.end` removed, the last movement active again |
| A08 update, A54 / A55 attending doctor | details updated (an unknown visit is not created) |
| Z99 movement update | the movement with the ZBE-1 id updated |
| A28 / A31 | the Patient only |
| A40 merge | `merge.py` |

Movements are the French ZBE segment: each is an `Encounter.location` entry carrying its movement id
(ZBE-1, FR Core identifier type MN) in an extension, the unit of care (ZBE-8 UF de soins, else the
PV1-3 point of care) as a logical location, and the start (ZBE-2). ZBE-4 INSERT / UPDATE / CANCEL is
honoured; ZBE-7 (UF de responsabilité médicale) becomes `serviceProvider`. ZFA (DMP status and
consent), ZFM (PMSI modes), ZFP, ZFV are tolerated and not mapped (they belong to Consent and PMSI
resources, out of this mapping); ZFD maps to the identity reliability extension (`patients.py`).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from mappings.hl7v2.ack import ERR_REQUIRED_FIELD_MISSING, ERR_UNSUPPORTED_EVENT, HL7Reject, Processed
from mappings.hl7v2.identifiers import FR_IDENTIFIER_TYPE, Identifiers, token
from mappings.hl7v2.patients import ERR_UNKNOWN_KEY, PatientMapping, resolve
from mappings.hl7v2.segments import Message, Segment
from mappings.hl7v2.writes import Batch, body_of

if TYPE_CHECKING:
    from fhir_server.config import Settings
    from fhir_server.context import ServerContext

PATIENT_EVENTS = {"A28", "A31"}
# Visit events: (Encounter status to set or None to keep, what happens to the movements, may create)
VISIT_EVENTS: dict[str, tuple[str | None, str, bool]] = {
    "A01": ("in-progress", "insert", True),
    "A04": ("in-progress", "insert", True),
    "A05": ("planned", "insert", True),
    "A02": ("in-progress", "insert", True),
    "A06": ("in-progress", "insert", True),
    "A07": ("in-progress", "insert", True),
    "A21": ("onleave", "insert", True),
    "A22": ("in-progress", "insert", True),
    "A03": ("finished", "close", True),
    "A08": (None, "update", False),
    "A54": (None, "update", False),
    "A55": (None, "update", False),
    "Z99": (None, "update", False),
    "A11": ("cancelled", "none", False),
    "A38": ("cancelled", "none", False),
    "A12": (None, "cancel", False),
    "A52": ("in-progress", "cancel", False),
    "A53": ("onleave", "cancel", False),
    "A13": ("in-progress", "reopen", False),
}
SUPPORTED = PATIENT_EVENTS | set(VISIT_EVENTS) | {"A40"}
CLASS_OF_EVENT = {"A06": "I", "A07": "O"}
ENCOUNTER_CLASS = {
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "R": ("AMB", "ambulatory"),
    "E": ("EMER", "emergency"),
    "P": ("PRENC", "pre-admission"),
    "N": ("AMB", "ambulatory"),
}
DEFAULT_CLASS = {"A01": "I", "A05": "P"}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
MOVEMENT_URL = "urn:fhir-server:hl7v2:movement-id"
ZBE_ACTIONS = ("INSERT", "UPDATE", "CANCEL")


async def process(ctx: ServerContext, msg: Message, settings: Settings) -> Processed:
    trigger = msg.trigger
    if trigger not in SUPPORTED:
        raise HL7Reject("AE", ERR_UNSUPPORTED_EVENT, f"unsupported event {trigger or '(none)'} for ADT")
    ids = Identifiers(msg.enc, settings.hl7v2_identifier_systems)
    if trigger == "A40":
        from mappings.hl7v2 import merge

        return await merge.process(ctx, msg, ids)
    async with AsyncExitStack() as stack:
        batch = Batch(ctx)
        patient_id = await resolve(ctx, batch, stack, PatientMapping(msg, ids), update=True)
        encounter_id = None
        pv1 = msg.first("PV1")
        if trigger in VISIT_EVENTS and pv1 is not None:
            encounter_id = await Visit(ctx, msg, ids, pv1, trigger).apply(batch, stack, patient_id)
        written = await batch.commit()
    text = f"Patient/{patient_id}" + (f" Encounter/{encounter_id}" if encounter_id else "")
    return Processed(text, written, f"Patient/{patient_id}")


class Visit:
    def __init__(self, ctx: ServerContext, msg: Message, ids: Identifiers, pv1: Segment, trigger: str) -> None:
        self.ctx, self.msg, self.ids, self.pv1, self.trigger = ctx, msg, ids, pv1, trigger
        self.zbe = msg.first("ZBE")
        self.evn = msg.first("EVN")

    def visit_number(self) -> dict[str, Any] | None:
        reps = self.pv1.reps(19)
        ident = self.ids.cx(reps[0]) if reps else None
        if ident and "type" not in ident:
            ident = {"type": {"coding": [{"system": FR_IDENTIFIER_TYPE, "code": "VN"}]}, **ident}
        return ident

    async def apply(self, batch: Batch, stack: AsyncExitStack, patient_id: str) -> str | None:
        from fhir_server.interactions.conditional import criteria_lease
        from fhir_server.search.engine import find_current

        status, movement, may_create = VISIT_EVENTS[self.trigger]
        visit = self.visit_number()
        current = None
        if visit is not None:
            criteria = [("identifier", token(visit))]
            await stack.enter_async_context(criteria_lease(self.ctx, "Encounter", criteria))
            found = await find_current(self.ctx, "Encounter", criteria, limit=2, strict=True)
            if len(found) > 1:
                raise HL7Reject("AE", "205", f"several Encounter resources have visit number {visit['value']}")
            current = found[0] if found else None
        elif not may_create:
            raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, f"PV1-19 (visit number) is required for {self.trigger}")
        if current is None:
            if self.trigger == "A08" or self.trigger in ("A54", "A55", "Z99"):
                return None  # an update of a visit we never heard of: the Patient is updated, nothing else
            if not may_create:
                raise HL7Reject("AE", ERR_UNKNOWN_KEY, f"unknown visit {visit['value'] if visit else ''}")
            encounter: dict[str, Any] = {"resourceType": "Encounter", "status": status or "in-progress"}
        else:
            encounter = body_of(current)
        self.fill(encounter, patient_id, visit, status)
        self.move(encounter, movement)
        if current is None:
            return batch.create(encounter)
        if encounter != current["res"]:
            batch.update(current, encounter)
        return current["_id"]

    # ---- the Encounter's own elements ------------------------------------------------------------

    def fill(self, enc: dict[str, Any], patient_id: str, visit: dict[str, Any] | None, status: str | None) -> None:
        msg, pv1 = self.msg, self.pv1
        if status:
            enc["status"] = status
        patient_class = CLASS_OF_EVENT.get(self.trigger) or pv1.text(2).upper() or DEFAULT_CLASS.get(self.trigger)
        if patient_class or "class" not in enc:
            code, display = ENCOUNTER_CLASS.get(patient_class or "O", ("AMB", "ambulatory"))
            enc["class"] = {"system": ACT_CODE, "code": code, "display": display}
        enc["subject"] = {"reference": f"Patient/{patient_id}"}
        if visit and not any(i.get("value") == visit["value"] for i in enc.get("identifier", [])):
            enc.setdefault("identifier", []).append(visit)
        period = enc.setdefault("period", {})
        start = msg.datetime(pv1.text(44), "PV1-44")
        if start:
            period["start"] = start
        elif "start" not in period and self.trigger in ("A01", "A04", "A05", "A02", "A06", "A07", "A03"):
            moment = self.moment()
            if moment:
                period["start"] = moment
        end = msg.datetime(pv1.text(45), "PV1-45")
        if self.trigger == "A03":
            period["end"] = end or self.moment() or period.get("start")
        elif self.trigger == "A13":
            period.pop("end", None)
        elif end:
            period["end"] = end
        if not period:
            enc.pop("period")
        pre = self.ids.cx(pv1.reps(5)[0]) if pv1.reps(5) else None
        if pre:
            enc.setdefault("hospitalization", {})["preAdmissionIdentifier"] = pre
        participants = []
        for n, code in ((7, "ATND"), (8, "REF"), (17, "ADM")):
            for xcn in pv1.reps(n):
                who = self.ids.xcn(xcn)
                if who:
                    participants.append(
                        {"type": [{"coding": [{"system": PARTICIPATION, "code": code}]}], "individual": who}
                    )
        if participants:
            enc["participant"] = participants
        if self.zbe is not None and self.zbe.reps(7):
            provider = self.ids.xon(self.zbe.reps(7)[0])
            if provider:
                enc["serviceProvider"] = provider

    def moment(self) -> str | None:
        """When the event happened: ZBE-2 (movement), else EVN-6 (occurred), else EVN-2 (recorded)."""
        for seg, n, where in ((self.zbe, 2, "ZBE-2"), (self.evn, 6, "EVN-6"), (self.evn, 2, "EVN-2")):
            if seg is not None and seg.text(n):
                return self.msg.datetime(seg.text(n), where)
        return None

    # ---- movements (ZBE) -------------------------------------------------------------------------

    def zbe_action(self) -> str:
        if self.zbe is None:
            return ""
        # ZBE-4; the ANS discharge example shifts it to ZBE-5, so look at both.
        for n in (4, 5):
            value = self.zbe.text(n).upper()
            if value in ZBE_ACTIONS:
                return value
        return ""

    def movement_id(self) -> dict[str, Any] | None:
        if self.zbe is None or not self.zbe.reps(1):
            return None
        ident = self.ids.ei(self.zbe.reps(1)[0])
        if ident:
            ident = {"type": {"coding": [{"system": FR_IDENTIFIER_TYPE, "code": "MN"}]}, **ident}
        return ident

    def unit(self) -> dict[str, Any] | None:
        """The unit the patient is in: the ZBE-8 UF de soins, else the PV1-3 point of care / room / bed."""
        pl = [self.msg.enc.unescape(p).strip() for p in self.pv1.comps(3, 3)[:3]]
        place = " ".join(p for p in pl if p)
        uf = self.ids.xon(self.zbe.reps(8)[0]) if self.zbe is not None and self.zbe.reps(8) else None
        ref: dict[str, Any] = {}
        if uf and "identifier" in uf:
            ref["identifier"] = uf["identifier"]
        elif pl[0]:
            ref["identifier"] = {"value": pl[0]}
        display = place or (uf or {}).get("display")
        if display:
            ref["display"] = display
        return ref or None

    def move(self, enc: dict[str, Any], kind: str) -> None:
        action = self.zbe_action()
        mid = self.movement_id()
        locations: list[dict[str, Any]] = enc.get("location", [])
        at = self.moment()
        index = _find_movement(locations, mid) if mid else None
        if kind == "none":
            pass  # a cancelled admission keeps its movements as they were
        elif action == "CANCEL" or kind in ("cancel", "reopen"):
            if kind == "cancel" and index is not None:
                locations.pop(index)
            if locations and kind in ("cancel", "reopen"):
                last = locations[-1]
                last["status"] = "active"
                last.get("period", {}).pop("end", None)
        elif action == "UPDATE" or kind == "update":
            if index is not None:
                self._set_place(locations[index], at)
        elif kind == "insert":
            if index is not None:
                self._set_place(locations[index], at)  # the same movement again: idempotent
            else:
                for loc in locations:
                    if loc.get("status") in ("active", "planned"):
                        loc["status"] = "completed"
                        if at:
                            loc.setdefault("period", {})["end"] = at
                entry: dict[str, Any] = {"status": "planned" if self.trigger == "A05" else "active"}
                if mid:
                    entry["extension"] = [{"url": MOVEMENT_URL, "valueIdentifier": mid}]
                if self._set_place(entry, at):
                    locations.append(entry)
        elif kind == "close":
            for loc in locations:
                if loc.get("status") in ("active", "planned"):
                    loc["status"] = "completed"
                    end = enc.get("period", {}).get("end") or at
                    if end:
                        loc.setdefault("period", {})["end"] = end
        for loc in locations:
            if not loc.get("period"):
                loc.pop("period", None)
        if locations:
            enc["location"] = locations
        else:
            enc.pop("location", None)

    def _set_place(self, entry: dict[str, Any], at: str | None) -> bool:
        unit = self.unit()
        if unit is None and "location" not in entry:
            return False
        if unit is not None:
            entry["location"] = unit
        if at:
            entry.setdefault("period", {})["start"] = at
        return True


def _find_movement(locations: list[dict[str, Any]], mid: dict[str, Any]) -> int | None:
    for i, loc in enumerate(locations):
        for ext in loc.get("extension", []):
            value = ext.get("valueIdentifier", {})
            if ext.get("url") == MOVEMENT_URL and value.get("value") == mid["value"]:
                return i
    return None
