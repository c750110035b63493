"""The HL7 v2 data types XDS metadata values are written in (CX, XCN, XON, CE, XTN), ↔ FHIR.

XDS slots carry HL7 v2 encoded strings with fixed delimiters (`^` components, `&` sub-components,
escape `\\`): `patientId` is a CX (`value^^^&oid&ISO^NH`), `authorPerson` and `legalAuthenticator` an XCN
(`id^family^given^^^^^^&oid&ISO^D^^^IDNPS`), `authorInstitution` an XON (`name^^^^^&oid&ISO^IDNST^^^id`),
`authorSpecialty`/`authorRole` a CE-like `code^display^codingScheme`.
"""

from __future__ import annotations

from typing import Any

from mappings.cda.systems import FR_CORE_0203, V2_0203, oid_for_system, system_for_oid

_ESCAPES = [("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")]
# Identifier type codes FR Core knows (fr-core-cs-v2-0203); the others are HL7 table 0203 codes.
FR_TYPES = {"INS-NIR", "INS-NIA", "INS-NIR-TEST", "INS-NIR-DEMO", "IDNPS", "IDNST", "RPPS", "ADELI"}


def escape(value: str) -> str:
    for raw, esc in _ESCAPES:
        value = value.replace(raw, esc)
    return value


def unescape(value: str) -> str:
    for raw, esc in reversed(_ESCAPES):
        value = value.replace(esc, raw)
    return value


def components(value: str, count: int) -> list[str]:
    parts = value.split("^")
    return [unescape(p) for p in parts] + [""] * (count - len(parts))


def join(parts: list[str]) -> str:
    while parts and not parts[-1]:
        parts = parts[:-1]
    return "^".join(parts)


def authority(hd: str) -> str | None:
    """The universal id (OID) of an HD written `namespace&oid&ISO` (or a bare OID)."""
    subs = hd.split("&")
    if len(subs) >= 2 and subs[1]:
        return subs[1]
    return subs[0] or None


def identifier_system(oid: str) -> str:
    """Identifier.system of an assigning authority: always `urn:oid:` (a code system URL would be wrong)."""
    return oid if oid.startswith("urn:") else f"urn:oid:{oid}"


def _hd(oid: str | None) -> str:
    return f"&{oid}&ISO" if oid else ""


def _type(code: str | None) -> dict[str, Any] | None:
    if not code:
        return None
    return {"coding": [{"system": FR_CORE_0203 if code in FR_TYPES else V2_0203, "code": code}]}


# --- CX: identifiers (patientId, sourcePatientId) ---------------------------------------------------


def cx_to_identifier(value: str) -> dict[str, Any]:
    ident_value, _, _, hd, type_code, *_ = components(value, 5)
    out: dict[str, Any] = {}
    kind = _type(type_code)
    if kind:
        out["type"] = kind
    oid = authority(hd)
    if oid:
        out["system"] = identifier_system(oid)
    out["value"] = ident_value
    return out


def identifier_to_cx(ident: dict[str, Any], type_code: str | None = None) -> str | None:
    oid = oid_for_system(ident.get("system"))
    if not ident.get("value") or not oid:
        return None
    code = type_code or next((c.get("code") for c in (ident.get("type") or {}).get("coding") or []), None)
    return join([escape(ident["value"]), "", "", _hd(oid), code or ""])


# --- XCN: persons (authorPerson, legalAuthenticator) -------------------------------------------------


def xcn_to_practitioner(value: str) -> dict[str, Any]:
    parts = components(value, 13)
    ident, family, given, second, suffix, prefix = parts[0:6]
    hd, type_code = parts[8], parts[12]
    practitioner: dict[str, Any] = {"resourceType": "Practitioner"}
    if ident:
        entry: dict[str, Any] = {}
        kind = _type(type_code)
        if kind:
            entry["type"] = kind
        oid = authority(hd)
        if oid:
            entry["system"] = identifier_system(oid)
        entry["value"] = ident
        practitioner["identifier"] = [entry]
    name: dict[str, Any] = {}
    if family:
        name["family"] = family
    givens = [g for g in (given, second) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    if name:
        practitioner["name"] = [name]
    return practitioner


def practitioner_to_xcn(practitioner: dict[str, Any]) -> str | None:
    """XCN of a Practitioner: its national id (IDNPS; RPPS/ADELI converted) when it has one."""
    idnps = None
    other = None
    for ident in practitioner.get("identifier") or []:
        system, value = ident.get("system"), ident.get("value")
        if not value:
            continue
        if system == "urn:oid:1.2.250.1.71.4.2.1":
            idnps = value
        elif system == "https://rpps.esante.gouv.fr":
            idnps = idnps or ("8" + value)
        elif system == "https://adeli.esante.gouv.fr":
            idnps = idnps or ("0" + value)
        elif oid_for_system(system) and other is None:
            other = (oid_for_system(system), value)
    name = next(iter(practitioner.get("name") or []), {})
    family = name.get("family") or (name.get("text") if not name.get("given") else "") or ""
    given = name.get("given") or []
    parts = [""] * 13
    if idnps:
        parts[0], parts[8], parts[9], parts[12] = idnps, _hd("1.2.250.1.71.4.2.1"), "D", "IDNPS"
    elif other:
        parts[0], parts[8] = other[1], _hd(other[0])
    parts[1] = escape(family)
    parts[2] = escape(given[0]) if given else ""
    parts[3] = escape(" ".join(given[1:])) if len(given) > 1 else ""
    parts[4] = escape((name.get("suffix") or [""])[0])
    parts[5] = escape((name.get("prefix") or [""])[0])
    text = join(parts)
    return text or None


# --- XON: organisations (authorInstitution) ----------------------------------------------------------


def xon_to_organization(value: str) -> dict[str, Any]:
    parts = components(value, 10)
    org: dict[str, Any] = {"resourceType": "Organization"}
    ident = parts[9] or (parts[2] if parts[2] else "")
    if ident:
        entry: dict[str, Any] = {}
        kind = _type(parts[6])
        if kind:
            entry["type"] = kind
        oid = authority(parts[5])
        if oid:
            entry["system"] = identifier_system(oid)
        entry["value"] = ident
        org["identifier"] = [entry]
    if parts[0]:
        org["name"] = parts[0]
    return org


def organization_to_xon(org: dict[str, Any]) -> str | None:
    idnst = None
    for ident in org.get("identifier") or []:
        system, value = ident.get("system"), ident.get("value")
        if not value:
            continue
        if system == "urn:oid:1.2.250.1.71.4.2.2":
            idnst = idnst or value
        elif system in ("https://finess.esante.gouv.fr", "http://finess.sante.gouv.fr"):
            idnst = idnst or ("1" + value)
        elif system == "https://sirene.fr" and len(value) == 14:
            idnst = idnst or ("3" + value)
    parts = [""] * 10
    parts[0] = escape(org.get("name") or "")
    if idnst:
        parts[5], parts[6], parts[9] = _hd("1.2.250.1.71.4.2.2"), "IDNST", idnst
    text = join(parts)
    return text or None


# --- CE: coded values in slots (authorSpecialty, authorRole) -----------------------------------------


def ce_to_coding(value: str) -> dict[str, Any]:
    code, display, scheme = components(value, 3)[:3]
    out: dict[str, Any] = {}
    system = system_for_oid(scheme) if scheme else None
    if system:
        out["system"] = system
    out["code"] = code
    if display:
        out["display"] = display
    return out


def coding_to_ce(coding: dict[str, Any]) -> str | None:
    if not coding.get("code"):
        return None
    scheme = oid_for_system(coding.get("system")) or ""
    return join([escape(coding["code"]), escape(coding.get("display") or ""), scheme])


# --- XTN: telecom (authorTelecommunication) ---------------------------------------------------------


def xtn_to_contact(value: str) -> dict[str, Any] | None:
    parts = components(value, 4)
    if parts[2].lower() == "internet" and parts[3]:
        return {"system": "email", "value": parts[3]}
    if parts[0]:
        return {"system": "phone", "value": parts[0]}
    return None


def contact_to_xtn(contact: dict[str, Any]) -> str | None:
    if contact.get("system") == "email" and contact.get("value"):
        return join(["", "NET", "Internet", escape(contact["value"])])
    if contact.get("system") == "phone" and contact.get("value"):
        return escape(contact["value"])
    return None
