"""IHE PAM France ADT messages (HL7 v2.5) → FHIR R4 Patient and Encounter.

A01/A04/A08/A28/A31 upsert the Patient found by its IPP (PID-3 repetition of type PI), with
conditional-update semantics: search `identifier=<system>|<value>` under the criteria lease, then
create or write a new version. A01/A04 also upsert an Encounter found by its visit number (PV1-19).
French Z-segments (ZBE, ZFA, ZFD, ...) are kept by the tolerant parser and ignored here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from mappings.hl7v2.ack import (
    ERR_DATA_TYPE,
    ERR_REQUIRED_FIELD_MISSING,
    ERR_UNSUPPORTED_EVENT,
    ERR_UNSUPPORTED_MESSAGE_TYPE,
    HL7Reject,
)

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

PATIENT_EVENTS = {"A01", "A04", "A08", "A28", "A31"}
ENCOUNTER_EVENTS = {"A01", "A04"}

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FR_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
# INS roots: production NIR / NIA, and the test roots used by the ANS examples.
INS_OIDS = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR-TEST",
    "1.2.250.1.213.1.4.11": "INS-NIA-TEST",
}
IDENTITY_RELIABILITY_URL = "urn:fhir-server:hl7v2:identity-reliability"  # PID-32 (PAM-FR: VIDE/PROV/VALI/...)
BIRTH_PLACE_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
GENDER = {"M": "male", "F": "female", "U": "unknown", "O": "other", "A": "other", "N": "unknown"}
NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous", "S": "anonymous"}
ADDRESS_USE = {"H": "home", "O": "work", "C": "temp", "BA": "old"}
ENCOUNTER_CLASS = {
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "R": ("AMB", "ambulatory"),
    "E": ("EMER", "emergency"),
    "P": ("PRENC", "pre-admission"),
}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


class Fields:
    """Splits raw ER7 fields with the message's own encoding characters, and unescapes values."""

    def __init__(self, encoding: str) -> None:
        self.comp, self.rep, self.esc, self.sub = (encoding + "^~\\&"[len(encoding) :])[:4]

    def unescape(self, value: str) -> str:
        e = self.esc
        for code, char in (("F", "|"), ("S", self.comp), ("R", self.rep), ("T", self.sub), ("E", e)):
            value = value.replace(f"{e}{code}{e}", char)
        return value

    def reps(self, value: str) -> list[str]:
        return [r for r in value.split(self.rep) if r.strip()] if value else []

    def comps(self, value: str, n: int) -> list[str]:
        parts = value.split(self.comp)
        return [(parts[i] if i < len(parts) else "") for i in range(n)]

    def subs(self, value: str, n: int) -> list[str]:
        parts = value.split(self.sub)
        return [(self.unescape(parts[i]) if i < len(parts) else "") for i in range(n)]


def parse(text: str) -> Any:
    """hl7apy in tolerant mode, without group discovery: Z-segments and unknown fields do not break it."""
    try:
        return parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    except Exception as exc:
        raise HL7Reject("AR", ERR_DATA_TYPE, f"message cannot be parsed: {exc}") from None


def _segment(msg: Any, name: str) -> Any | None:
    for child in msg.children:
        if child.name == name:
            return child
    return None


def _field(segment: Any | None, n: int) -> str:
    """Raw ER7 of field n (all repetitions joined), '' when absent."""
    if segment is None:
        return ""
    try:
        fields = segment.to_er7().split(segment.to_er7()[3:4] if segment.name == "MSH" else "|")
    except Exception:
        return ""
    if segment.name == "MSH":
        return fields[n - 1] if 0 < n - 1 < len(fields) else ""
    return fields[n] if n < len(fields) else ""


# ---- value helpers -----------------------------------------------------------------------------------


def fhir_date(value: str) -> str | None:
    digits = re.match(r"^\d{4,8}", value or "")
    if not digits:
        return None
    d = digits.group(0)
    return "-".join(x for x in (d[:4], d[4:6], d[6:8]) if x)


def fhir_datetime(value: str, tz: ZoneInfo) -> str | None:
    m = re.match(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$", (value or "").strip())
    if not m:
        return None
    y, mo, d, h, mi, s, offset = m.groups()
    if h is None:
        return fhir_date(value)
    if offset:
        stamp = datetime.strptime(f"{y}{mo}{d}{h}{mi or '00'}{s or '00'}{offset}", "%Y%m%d%H%M%S%z")
    else:
        stamp = datetime(int(y), int(mo), int(d), int(h), int(mi or 0), int(s or 0), tzinfo=tz)
    return stamp.isoformat()


class Mapper:
    def __init__(self, msg: Any, identifier_systems: dict[str, str], tz: ZoneInfo) -> None:
        self.msg = msg
        msh = _segment(msg, "MSH")
        encoding = _field(msh, 2) or "^~\\&"
        self.f = Fields(encoding)
        self.systems = identifier_systems
        self.tz = tz
        self.pid = _segment(msg, "PID")
        self.pv1 = _segment(msg, "PV1")
        self.evn = _segment(msg, "EVN")

    # -- identifiers --

    def system_of(self, authority: str) -> tuple[str, str | None]:
        """(system, INS type code or None) for a CX-4 assigning authority `namespace&universal id&type`."""
        namespace, uid, uid_type = self.f.subs(authority, 3)
        for key in (uid, namespace):
            if key and key in self.systems:
                return self.systems[key], INS_OIDS.get(uid)
        if uid and (uid_type.upper() == "ISO" or OID_RE.match(uid)) and OID_RE.match(uid):
            return f"urn:oid:{uid}", INS_OIDS.get(uid)
        # No OID: a stable local URI from the authority's name (configure FHIR_HL7V2_IDENTIFIER_SYSTEMS).
        local = re.sub(r"[^A-Za-z0-9._-]", "-", namespace or uid or "unknown")
        return f"urn:fhir-server:hl7v2:assigning-authority:{local}", None

    def identifier(self, cx: str) -> dict[str, Any] | None:
        value, _check, _scheme, authority, type_code = self.f.comps(cx, 5)
        value = self.f.unescape(value)
        if not value:
            return None
        system, ins = self.system_of(authority)
        ident: dict[str, Any] = {"system": system, "value": value}
        if ins:
            ident["use"] = "official"
            ident["type"] = {"coding": [{"system": FR_0203, "code": ins}]}
        elif type_code:
            ident["type"] = {"coding": [{"system": V2_0203, "code": self.f.unescape(type_code)}]}
        return ident

    def patient(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The Patient and the identifier to upsert it by (the IPP, else the first PID-3 identifier)."""
        if self.pid is None:
            raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "PID segment missing")
        identifiers = [i for i in (self.identifier(cx) for cx in self.f.reps(_field(self.pid, 3))) if i]
        if not identifiers:
            raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "PID-3 (patient identifier list) missing")
        key = next(
            (i for i in identifiers if i.get("type", {}).get("coding", [{}])[0].get("code") == "PI"), identifiers[0]
        )
        patient: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
        names = [n for n in (self.name(x) for x in self.f.reps(_field(self.pid, 5))) if n]
        if names:
            patient["name"] = names
        gender = GENDER.get(_field(self.pid, 8).strip().upper())
        if gender:
            patient["gender"] = gender
        birth = fhir_date(_field(self.pid, 7))
        if birth:
            patient["birthDate"] = birth
        addresses, birth_place = [], None
        for xad in self.f.reps(_field(self.pid, 11)):
            address, kind = self.address(xad)
            if kind == "BDL":
                birth_place = address
            elif address:
                addresses.append(address)
        if addresses:
            patient["address"] = addresses
        extensions = []
        if birth_place:
            extensions.append({"url": BIRTH_PLACE_URL, "valueAddress": birth_place})
        status = self.f.unescape(self.f.comps(_field(self.pid, 32), 1)[0]).strip()
        if status:
            extensions.append({"url": IDENTITY_RELIABILITY_URL, "valueCode": status})
        if extensions:
            patient["extension"] = extensions
        death = _field(self.pid, 30).strip().upper()
        if death in ("Y", "N"):
            patient["deceasedBoolean"] = death == "Y"
        return patient, key

    def name(self, xpn: str) -> dict[str, Any] | None:
        family, given1, given_more, suffix, prefix, _degree, type_code = self.f.comps(xpn, 7)
        family = self.f.subs(family, 1)[0]
        given: list[str] = []
        for g in [self.f.unescape(given1), *self.f.unescape(given_more).replace(",", " ").split()]:
            if g and g not in given:
                given.append(g)
        name: dict[str, Any] = {}
        if NAME_USE.get(type_code):
            name["use"] = NAME_USE[type_code]
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        if prefix:
            name["prefix"] = [self.f.unescape(prefix)]
        if suffix:
            name["suffix"] = [self.f.unescape(suffix)]
        return name if ("family" in name or "given" in name) else None

    def address(self, xad: str) -> tuple[dict[str, Any] | None, str]:
        street, other, city, _state, postal, country, kind, _other_geo, county = self.f.comps(xad, 9)
        address: dict[str, Any] = {}
        lines = [self.f.subs(x, 1)[0] for x in (street, other) if x]
        if lines:
            address["line"] = lines
        for key, value in (("city", city), ("postalCode", postal), ("country", country)):
            if value:
                address[key] = self.f.unescape(value)
        if county:
            address["district"] = self.f.unescape(county)  # PAM-FR: INSEE code of the commune (BDL)
        if kind in ADDRESS_USE:
            address["use"] = ADDRESS_USE[kind]
        return (address or None), kind

    def encounter(self, patient_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The Encounter of PV1 and the visit-number identifier to upsert it by (None: always create)."""
        pv1 = self.pv1
        code, display = ENCOUNTER_CLASS.get(_field(pv1, 2).strip().upper(), ("AMB", "ambulatory"))
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": ACT_CODE, "code": code, "display": display},
            "subject": {"reference": f"Patient/{patient_id}"},
        }
        visit = self.identifier(self.f.reps(_field(pv1, 19))[0]) if self.f.reps(_field(pv1, 19)) else None
        if visit:
            encounter["identifier"] = [visit]
        start = fhir_datetime(_field(pv1, 44), self.tz) or fhir_datetime(
            self.f.comps(_field(self.evn, 6), 1)[0] or self.f.comps(_field(self.evn, 2), 1)[0], self.tz
        )
        if start:
            encounter["period"] = {"start": start}
        return encounter, visit


async def upsert(ctx: ServerContext, resource_type: str, resource: dict[str, Any], key: dict[str, Any] | None) -> str:
    """Conditional update on `identifier=<system>|<value>`: create, or write a new version. Returns the id."""
    from fhir_server.interactions.conditional import criteria_lease, single_match
    from fhir_server.search.engine import find_current

    if key is None:
        return (await ctx.store.create(resource_type, resource)).id
    criteria = [("identifier", f"{key['system']}|{key['value']}")]
    async with criteria_lease(ctx, resource_type, criteria):
        try:
            existing = single_match(
                await find_current(ctx, resource_type, criteria, limit=2, strict=True), resource_type, criteria
            )
        except Exception as exc:
            raise HL7Reject("AE", "205", f"several {resource_type} resources have identifier {key['value']}") from exc
        if existing is None:
            return (await ctx.store.create(resource_type, resource)).id
        resource = {**resource, "id": existing["_id"]}
        return (await ctx.store.write(resource_type, existing["_id"], resource)).id


async def process(ctx: ServerContext, msg: Any, identifier_systems: dict[str, str], tz: str) -> str:
    """Apply one parsed ADT message; returns a short description for the ACK's MSA-3.

    Raises HL7Reject for messages answered with AE / AR.
    """
    mapper = Mapper(msg, identifier_systems, ZoneInfo(tz))
    msh9 = _field(_segment(msg, "MSH"), 9)
    msg_type, trigger = ([*mapper.f.comps(msh9, 2), "", ""])[:2]
    if msg_type != "ADT":
        raise HL7Reject("AR", ERR_UNSUPPORTED_MESSAGE_TYPE, f"unsupported message type {msg_type or '(none)'}")
    if trigger not in PATIENT_EVENTS:
        raise HL7Reject("AE", ERR_UNSUPPORTED_EVENT, f"unsupported event {trigger or '(none)'} for {msg_type}")
    patient, key = mapper.patient()
    patient_id = await upsert(ctx, "Patient", patient, key)
    done = f"Patient/{patient_id}"
    if trigger in ENCOUNTER_EVENTS and mapper.pv1 is not None:
        encounter, visit = mapper.encounter(patient_id)
        encounter_id = await upsert(ctx, "Encounter", encounter, visit)
        done += f" Encounter/{encounter_id}"
    return done
