"""DocumentReference / DiagnosticReport → MDM^T02 (HL7 2.6) or ORU^R01 (HL7 2.5), built with hl7apy.

The message follows the CI-SIS volet "Transmission de document(s) CDA en HL7v2" (profile
`2.1^CISIS_CDA_HL7_V2`): PID with the IPP and the INS (and the identity status in PID-32), PV1 with
the visit number, ORC/OBR with the order numbers and the document type, TXA (MDM) with the document
unique id (TXA-12) and the replaced one (TXA-13), and one OBX of type ED per document carrying the
bytes (CDA or PDF) in base64. A DocumentReference that replaces another is sent as MDM^T10 (OBX-11 C,
ORC RO), one entered in error as MDM^T04 (OBX-11 D, ORC CA); ORU^R01 says the same with OBX-11.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as HL7Message

from mappings.hl7v2.identifiers import INS_OIDS, LOCAL_AUTHORITY, RFC3986, type_code
from mappings.hl7v2.segments import Encoding

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

PROFILE = "2.1^CISIS_CDA_HL7_V2"
ENC = Encoding()
GENDER = {"male": "M", "female": "F", "unknown": "U", "other": "U"}
CLASS = {"IMP": "I", "AMB": "O", "EMER": "E", "PRENC": "P", "ACUTE": "I", "NONAC": "I", "SS": "O"}
DOC_ACTION = {"new": ("NW", "F", "T02"), "replace": ("RO", "C", "T10"), "delete": ("CA", "D", "T04")}


class OutboundError(Exception):
    """The resource cannot be sent (no patient, no content...): a 422 for the client."""


@dataclass
class Peer:
    """A configured receiver (FHIR_HL7_PEERS entry)."""

    name: str
    host: str
    port: int
    message: str = "MDM"  # MDM (MDM^T02 2.6) or ORU (ORU^R01 2.5)
    receiving_application: str = ""
    receiving_facility: str = ""
    sending_application: str = "FHIR-SERVER"
    sending_facility: str = ""
    timeout: float = 30.0
    max_attempts: int = 0  # 0: retry until acknowledged

    @classmethod
    def from_setting(cls, name: str, value: dict[str, Any]) -> Peer:
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__ and k != "name"}
        peer = cls(name=name, **known)
        peer.message = peer.message.upper()
        if peer.message not in ("MDM", "ORU"):
            raise ValueError(f"HL7 peer {name}: message must be MDM or ORU, not {peer.message}")
        return peer


def peers(settings: Any) -> dict[str, Peer]:
    return {name: Peer.from_setting(name, value) for name, value in (settings.hl7_peers or {}).items()}


@dataclass
class Built:
    text: str  # ER7, segments separated by CR
    control_id: str
    event: str  # e.g. MDM^T02


async def build(ctx: ServerContext, resource: dict[str, Any], peer: Peer) -> Built:
    """The message for a stored DocumentReference or DiagnosticReport, with its patient and content."""
    rtype = resource["resourceType"]
    subject = resource.get("subject", {}).get("reference", "")
    if not subject.startswith("Patient/"):
        raise OutboundError(f"{rtype}/{resource.get('id')} has no Patient subject: an HL7 message needs one")
    patient = await _read(ctx, subject)
    if patient is None:
        raise OutboundError(f"{subject} is not known")
    encounter = None
    enc_ref = (resource.get("context", {}).get("encounter") or [{}])[0].get("reference") or resource.get(
        "encounter", {}
    ).get("reference")
    if enc_ref and enc_ref.startswith("Encounter/"):
        encounter = await _read(ctx, enc_ref)
    attachments = (
        [c.get("attachment", {}) for c in resource.get("content", [])]
        if rtype == "DocumentReference"
        else resource.get("presentedForm", [])
    )
    contents = [(a, await _bytes(ctx, a)) for a in attachments]
    contents = [(a, data) for a, data in contents if data]
    action = _action(resource)
    if not contents and action != "delete":
        raise OutboundError(f"{rtype}/{resource.get('id')} has no content to send")
    control_id = uuid.uuid4().hex[:20]
    if peer.message == "ORU":
        text, event = _oru(resource, patient, encounter, contents, action, control_id, peer)
    else:
        text, event = _mdm(resource, patient, encounter, contents, action, control_id, peer)
    return Built(text, control_id, event)


def _action(resource: dict[str, Any]) -> str:
    if resource.get("status") == "entered-in-error":
        return "delete"
    if any(r.get("code") == "replaces" for r in resource.get("relatesTo", [])):
        return "replace"
    return "new"


async def _read(ctx: ServerContext, reference: str) -> dict[str, Any] | None:
    rtype, _, rid = reference.partition("/")
    doc = await ctx.store.current(rtype, rid)
    return None if doc is None or doc.get("gone") else doc["res"]


async def _bytes(ctx: ServerContext, attachment: dict[str, Any]) -> bytes:
    if attachment.get("data"):
        return base64.b64decode(attachment["data"])
    url = attachment.get("url", "")
    if "Binary/" in url:
        binary = await _read(ctx, "Binary/" + url.split("Binary/", 1)[1].split("/_history")[0])
        if binary is not None:
            if binary.get("data"):
                return base64.b64decode(binary["data"])
            return await _blob(ctx, binary)
    return b""


async def _blob(ctx: ServerContext, binary: dict[str, Any]) -> bytes:
    """A Binary whose bytes live in the blob store (large Binary support), if that is in place."""
    key = next(
        (e.get("valueString") for e in binary.get("extension", []) if e.get("url", "").endswith("blob-key")), None
    )
    if key and ctx.blobs is not None:
        return await ctx.blobs.read_bytes(key)
    return b""


# ---- segments ---------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")


def _ts(value: str | None) -> str:
    """A FHIR date/dateTime/instant as an HL7 DTM (offset kept)."""
    if not value:
        return ""
    if len(value) <= 10:
        return value.replace("-", "")
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return stamp.strftime("%Y%m%d%H%M%S%z") if stamp.tzinfo else stamp.strftime("%Y%m%d%H%M%S")


def _e(text: Any) -> str:
    return ENC.escape(str(text)) if text is not None else ""


def _authority(system: str, label: str = "") -> str:
    if system.startswith("urn:oid:"):
        return f"{_e(label)}&{system[8:]}&ISO"
    if system.startswith(LOCAL_AUTHORITY):
        return _e(system[len(LOCAL_AUTHORITY) :])
    return _e(system)


def pid_fields(patient: dict[str, Any]) -> dict[int, list[str]]:
    """PID field number → repetitions (ER7)."""
    out: dict[int, list[str]] = {1: ["1"]}
    ids: list[str] = []
    for ident in patient.get("identifier", []):
        system, value, code = ident.get("system", ""), ident.get("value", ""), type_code(ident)
        if not value or ident.get("use") == "old":
            continue
        oid = system.removeprefix("urn:oid:")
        if oid in INS_OIDS:
            label = "ASIP-SANTE-INS-NIR" if INS_OIDS[oid][0] != "INS-NIA" else "ASIP-SANTE-INS-NIA"
            ids.append(f"{_e(value)}^^^{_authority(system, label)}^INS")
        elif code == "PI":
            label = ident.get("assigner", {}).get("display", "")
            ids.append(f"{_e(value)}^^^{_authority(system, label)}^PI")
    out[3] = ids
    names = []
    for name in patient.get("name", []):
        kind = {"official": "L", "usual": "D", "maiden": "M", "nickname": "N"}.get(name.get("use", ""), "L")
        given = name.get("given", [])
        birth_list = next((e.get("valueString") for e in name.get("extension", []) if "given-name" in e["url"]), "")
        rest = birth_list or " ".join(given[1:])
        names.append(f"{_e(name.get('family', ''))}^{_e(given[0] if given else '')}^{_e(rest)}^^^^{kind}")
    out[5] = names
    out[7] = [_ts(patient.get("birthDate"))]
    out[8] = [GENDER.get(patient.get("gender", ""), "")]
    addresses = []
    for address in patient.get("address", []):
        line = address.get("line", [""])
        kind = {"home": "H", "work": "O", "temp": "C", "old": "BA"}.get(address.get("use", ""), "H")
        addresses.append(
            f"{_e(line[0] if line else '')}^{_e(line[1] if len(line) > 1 else '')}^{_e(address.get('city', ''))}"
            f"^^{_e(address.get('postalCode', ''))}^{_e(address.get('country', ''))}^{kind}"
        )
    for ext in patient.get("extension", []):
        if ext["url"].endswith("patient-birthPlace"):
            place = ext.get("valueAddress", {})
            insee = next(
                (e["valueCoding"]["code"] for e in place.get("extension", []) if "insee" in e["url"]),
                place.get("district", ""),
            )
            addresses.append(f"^^{_e(place.get('city', ''))}^^{_e(place.get('postalCode', ''))}^^BDL^^{_e(insee)}")
        if ext["url"].endswith("fr-core-identity-reliability"):
            status = next(
                (e["valueCoding"]["code"] for e in ext.get("extension", []) if e["url"] == "identityStatus"), ""
            )
            out[32] = [_e(status)]
    out[11] = addresses
    return {n: [v for v in reps if v] for n, reps in out.items()}


def pv1_fields(encounter: dict[str, Any] | None) -> dict[int, list[str]]:
    if encounter is None:
        return {1: ["1"], 2: ["N"]}
    out = {1: ["1"], 2: [CLASS.get(encounter.get("class", {}).get("code", ""), "O")]}
    for ident in encounter.get("identifier", []):
        if type_code(ident) == "VN" and ident.get("value"):
            label = ident.get("assigner", {}).get("display", "")
            out[19] = [f"{_e(ident['value'])}^^^{_authority(ident.get('system', ''), label)}^VN"]
            break
    return out


def _ed(attachment: dict[str, Any], data: bytes) -> str:
    ctype = attachment.get("contentType", "")
    kind = "^text^XML" if "xml" in ctype else "^application^PDF" if "pdf" in ctype else "^application^octet-stream"
    return f"{kind}^Base64^{base64.b64encode(data).decode('ascii')}"


def _code(resource: dict[str, Any]) -> str:
    concept = resource.get("type") or resource.get("code") or {}
    coding = next((c for c in concept.get("coding", []) if c.get("system") == "http://loinc.org"), None)
    if coding is None:
        coding = (concept.get("coding") or [{}])[0]
    code, display = coding.get("code", ""), coding.get("display", concept.get("text", ""))
    system = "LN" if coding.get("system") == "http://loinc.org" else ""
    return f"{_e(code)}^{_e(display)}^{system}" if code else ""


def _doc_id(resource: dict[str, Any]) -> str:
    """TXA-12: the document's uniqueId (`urn:oid:root[^extension]`) as an EI, else its id here."""
    ident = resource.get("masterIdentifier") or {}
    value = ident.get("value", "")
    if ident.get("system") == RFC3986 and value.startswith("urn:oid:"):
        root, _, extension = value[8:].partition("^")
        return f"{_e(extension)}^^{_e(root)}^ISO" if extension else _e(root)
    if value:
        return _e(value)
    return f"{_e(resource['id'])}^FHIR-SERVER"


def _set(parent: Any, name: str, fields: dict[int, list[str]]) -> Any:
    """Add segment `name` to `parent` (the message or a group) with its fields' repetitions (ER7)."""
    segment = parent.add_segment(name)
    for n in sorted(fields):
        for value in fields[n]:
            segment.add_field(f"{name}_{n}").value = value
    return segment


def _msh(msg: Any, peer: Peer, event: str, control_id: str, version: str) -> None:
    msh = msg.msh
    msh.msh_3 = _e(peer.sending_application)
    msh.msh_4 = _e(peer.sending_facility)
    msh.msh_5 = _e(peer.receiving_application)
    msh.msh_6 = _e(peer.receiving_facility)
    msh.msh_7 = _now()
    msh.msh_9 = event
    msh.msh_10 = control_id
    msh.msh_11 = "P"
    msh.msh_12 = version
    msh.msh_17 = "FRA"
    msh.msh_18 = "UNICODE UTF-8"
    msh.msh_21 = PROFILE


def _mdm(
    resource: dict[str, Any],
    patient: dict[str, Any],
    encounter: dict[str, Any] | None,
    contents: list[tuple[dict[str, Any], bytes]],
    action: str,
    control_id: str,
    peer: Peer,
) -> tuple[str, str]:
    order_control, result_status, trigger = DOC_ACTION[action]
    msg = HL7Message("MDM_T02", version="2.6", validation_level=VALIDATION_LEVEL.TOLERANT)
    event = f"MDM^{trigger}^MDM_T02"
    _msh(msg, peer, event, control_id, "2.6")
    _set(msg, "EVN", {2: [_now()]})
    _set(msg, "PID", pid_fields(patient))
    _set(msg, "PV1", pv1_fields(encounter))
    order = msg.add_group("MDM_T02_COMMON_ORDER")
    code = _code(resource)
    _set(order, "ORC", {1: [order_control]})
    _set(order, "OBR", {1: ["1"], 4: [code] if code else []})
    txa = {1: ["1"], 2: [code.split("^")[0]], 3: ["TEXT"], 4: [_ts(resource.get("date"))], 12: [_doc_id(resource)]}
    parent = next((r for r in resource.get("relatesTo", []) if r.get("code") == "replaces"), None)
    if parent is not None:
        target = parent.get("target", {})
        txa[13] = [_e(target.get("identifier", {}).get("value", "")) or _e(target.get("reference", ""))]
    txa[17] = ["AU"]
    _set(msg, "TXA", {n: [v for v in reps if v] for n, reps in txa.items()})
    for i, (attachment, data) in enumerate(contents, start=1):
        observation = msg.add_group("MDM_T02_OBSERVATION")
        _set(observation, "OBX", {1: [str(i)], 2: ["ED"], 3: [code], 5: [_ed(attachment, data)], 11: [result_status]})
    return msg.to_er7(), event


def _oru(
    resource: dict[str, Any],
    patient: dict[str, Any],
    encounter: dict[str, Any] | None,
    contents: list[tuple[dict[str, Any], bytes]],
    action: str,
    control_id: str,
    peer: Peer,
) -> tuple[str, str]:
    order_control, result_status, _trigger = DOC_ACTION[action]
    msg = HL7Message("ORU_R01", version="2.5", validation_level=VALIDATION_LEVEL.TOLERANT)
    event = "ORU^R01^ORU_R01"
    _msh(msg, peer, event, control_id, "2.5")
    result = msg.add_group("ORU_R01_PATIENT_RESULT")
    who = result.add_group("ORU_R01_PATIENT")
    _set(who, "PID", pid_fields(patient))
    _set(who.add_group("ORU_R01_VISIT"), "PV1", pv1_fields(encounter))
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    placer = filler = ""
    for ident in resource.get("identifier", []):
        code = type_code(ident)
        if code == "PLAC":
            placer = f"{_e(ident['value'])}^{_authority(ident.get('system', ''))}"
        elif code == "FILL":
            filler = f"{_e(ident['value'])}^{_authority(ident.get('system', ''))}"
    if not filler:
        filler = f"{_e(resource['id'])}^FHIR-SERVER"
    _set(order, "ORC", {1: [order_control], 2: [placer] if placer else [], 3: [filler]})
    code = _code(resource)
    status = {"final": "F", "amended": "C", "corrected": "C", "preliminary": "P", "entered-in-error": "X"}
    obr = {1: ["1"], 2: [placer], 3: [filler], 4: [code], 7: [_ts(resource.get("effectiveDateTime"))]}
    obr[22] = [_ts(resource.get("issued") or resource.get("date"))]
    obr[25] = [status.get(resource.get("status", ""), result_status)]
    _set(order, "OBR", {n: [v for v in reps if v] for n, reps in obr.items()})
    for i, (attachment, data) in enumerate(contents, start=1):
        observation = order.add_group("ORU_R01_OBSERVATION")
        _set(observation, "OBX", {1: [str(i)], 2: ["ED"], 3: [code], 5: [_ed(attachment, data)], 11: [result_status]})
    return msg.to_er7(), event
