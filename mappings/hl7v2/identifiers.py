"""HL7 v2 identifiers (CX, EI, XCN, XON, HD) as FHIR Identifiers and logical References.

The FHIR system of an HL7 assigning authority is, in this order: the configured system for its
universal id or namespace (FHIR_HL7V2_IDENTIFIER_SYSTEMS), `urn:oid:<universal id>` when that is an
OID, else a stable local URI built from the namespace (`urn:fhir-server:hl7v2:assigning-authority:X`).
Type codes follow FR Core 2.x: INS-NIR / INS-NIA / INS-NIR-TEST / INS-NIR-DEMO from the INS roots,
PI for the IPP, IDNPS/RPPS for professionals, FINEG/FINEJ for organisations.
"""

from __future__ import annotations

import re
from typing import Any

from mappings.hl7v2.segments import Encoding, is_oid

FR_CORE = "https://hl7.fr/ig/fhir/core"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FR_0203 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203"
FR_IDENTIFIER_TYPE = f"{FR_CORE}/CodeSystem/fr-core-cs-identifier-type"  # VN, MN (Encounter identifiers)
LOCAL_AUTHORITY = "urn:fhir-server:hl7v2:assigning-authority:"
RFC3986 = "urn:ietf:rfc:3986"
DICOM_UID = "urn:dicom:uid"

# INS roots (FR Core 2.2 `fr-core-patient-ins` slices): production NIR / NIA, test and demo NIR.
INS_OIDS = {
    "1.2.250.1.213.1.4.8": ("INS-NIR", "NIR définitif"),
    "1.2.250.1.213.1.4.9": ("INS-NIA", "NIR temporaire"),
    "1.2.250.1.213.1.4.10": ("INS-NIR-TEST", "NIR TEST"),
    "1.2.250.1.213.1.4.11": ("INS-NIR-DEMO", "NIR DEMO"),
}
RPPS_OID = "1.2.250.1.71.4.2.1"  # national professional identifiers (IDNPS, RPPS)
STRUCTURE_OID = "1.2.250.1.71.4.2.2"  # national structure identifiers (FINESS, SIRET...)
V2_TYPE_DISPLAY = {
    "PI": "Patient internal identifier",
    "VN": "Visit number",
    "AN": "Account number",
    "PLAC": "Placer Identifier",
    "FILL": "Filler Identifier",
    "ACSN": "Accession ID",
    "NH": "National Health Plan Identifier",
}
FR_TYPE_DISPLAY = {
    "IDNPS": "Identifiant National de Professionnel de Santé",
    "RPPS": "N° RPPS",
    "ADELI": "N° ADELI",
    "FINEG": "FINESS d'entité géographique",
    "FINEJ": "FINESS d'entité juridique",
    "SIRET": "Identification de l'organisation au SIRET",
}


class Identifiers:
    def __init__(self, enc: Encoding, systems: dict[str, str]) -> None:
        self.enc = enc
        self.systems = systems

    def subs(self, value: str, n: int) -> list[str]:
        parts = value.split(self.enc.sub)
        return [(self.enc.unescape(parts[i]).strip() if i < len(parts) else "") for i in range(n)]

    def system(self, authority: str) -> str:
        """The FHIR system of an HD `namespace&universal id&type` (raw, sub-components)."""
        namespace, uid, _uid_type = self.subs(authority, 3)
        for key in (uid, namespace):
            if key and key in self.systems:
                return self.systems[key]
        if is_oid(uid):
            return f"urn:oid:{uid}"
        if is_oid(namespace):
            return f"urn:oid:{namespace}"
        local = re.sub(r"[^A-Za-z0-9._-]", "-", namespace or uid or "unknown")
        return LOCAL_AUTHORITY + local

    def cx(self, raw: str) -> dict[str, Any] | None:
        """A CX (PID-3, MRG-1, PV1-19...) as a FHIR Identifier with FR Core type and use."""
        parts = raw.split(self.enc.comp) + [""] * 5
        value = self.enc.unescape(parts[0]).strip()
        if not value:
            return None
        authority, type_code = parts[3], self.enc.unescape(parts[4]).strip().upper()
        namespace, uid, _ = self.subs(authority, 3)
        ident: dict[str, Any] = {"system": self.system(authority), "value": value}
        if uid in INS_OIDS:
            code, display = INS_OIDS[uid]
            ident = {
                "use": "official",
                "type": {"coding": [{"system": FR_0203, "code": code, "display": display}]},
                **ident,
            }
        elif type_code == "PI":
            ident = {"use": "usual", "type": _v2_type("PI"), **ident}
        elif type_code in ("VN", "MN"):
            ident = {
                "type": {"coding": [{"system": FR_IDENTIFIER_TYPE, "code": type_code}]},
                **ident,
            }
        elif type_code:
            ident = {"type": _v2_type(type_code), **ident}
        if namespace and not is_oid(namespace) and uid not in INS_OIDS:
            ident["assigner"] = {"display": namespace}
        return ident

    def ei(self, raw: str, type_code: str | None = None) -> dict[str, Any] | None:
        """An EI (order numbers, document ids, movement ids) `id^namespace^universal id^type`."""
        parts = raw.split(self.enc.comp) + [""] * 4
        value = self.enc.unescape(parts[0]).strip()
        if not value:
            return None
        namespace = self.enc.unescape(parts[1]).strip()
        uid = self.enc.unescape(parts[2]).strip()
        authority = self.enc.sub.join([namespace, uid, parts[3]])
        ident: dict[str, Any] = {"system": self.system(authority), "value": value}
        if type_code:
            ident = {"type": _v2_type(type_code), **ident}
        return ident

    def xcn(self, raw: str) -> dict[str, Any] | None:
        """An XCN (a professional) as a logical Reference: identifier (RPPS/IDNPS) and name."""
        parts = raw.split(self.enc.comp) + [""] * 13
        value = self.enc.unescape(parts[0]).strip()
        family = self.subs(parts[1], 1)[0]
        given = self.enc.unescape(parts[2]).strip()
        prefix = self.enc.unescape(parts[5]).strip()
        display = " ".join(x for x in (prefix, given, family) if x)
        ref: dict[str, Any] = {"type": "Practitioner"}
        if value:
            authority = parts[8]
            _ns, uid, _ = self.subs(authority, 3)
            type_code = self.enc.unescape(parts[12]).strip().upper()
            system = self.system(authority) if authority else None
            ident: dict[str, Any] = {"value": value}
            if system:
                ident["system"] = system
            if type_code in FR_TYPE_DISPLAY:
                ident["type"] = {"coding": [{"system": FR_0203, "code": type_code}]}
            elif uid == RPPS_OID:
                ident["type"] = {"coding": [{"system": FR_0203, "code": "IDNPS"}]}
            ref["identifier"] = ident
        if display:
            ref["display"] = display
        return ref if (value or display) else None

    def xon(self, raw: str) -> dict[str, Any] | None:
        """An XON (an organisation or a unit) as a logical Reference: identifier (XON-10) and name."""
        parts = raw.split(self.enc.comp) + [""] * 10
        name = self.enc.unescape(parts[0]).strip()
        value = self.enc.unescape(parts[9]).strip() or self.enc.unescape(parts[2]).strip()
        ref: dict[str, Any] = {"type": "Organization"}
        if value:
            ident: dict[str, Any] = {"value": value}
            if parts[5]:
                ident["system"] = self.system(parts[5])
            type_code = self.enc.unescape(parts[6]).strip().upper()
            if type_code in FR_TYPE_DISPLAY:
                ident["type"] = {"coding": [{"system": FR_0203, "code": type_code}]}
            ref["identifier"] = ident
        if name:
            ref["display"] = name
        return ref if (value or name) else None


def _v2_type(code: str) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": V2_0203, "code": code}
    if code in V2_TYPE_DISPLAY:
        coding["display"] = V2_TYPE_DISPLAY[code]
    return {"coding": [coding]}


def type_code(identifier: dict[str, Any]) -> str:
    codings = identifier.get("type", {}).get("coding") or [{}]
    return codings[0].get("code", "")


def token(identifier: dict[str, Any]) -> str:
    """The `identifier` search value `system|value`."""
    return f"{identifier.get('system', '')}|{identifier['value']}"


def document_identifier(value: str) -> dict[str, Any]:
    """A document unique id (TXA-12, CDA id) as the XDS uniqueId the CDA parser also produces
    (`mappings/cda/parse.py` master_identifier): `urn:oid:root` or `urn:oid:root^extension`."""
    value = value.strip()
    root, sep, extension = value.partition("^")
    if is_oid(root):
        root = f"urn:oid:{root}"
    elif re.match(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", root):
        root = f"urn:uuid:{root.lower()}"
    return {"system": RFC3986, "value": f"{root}^{extension}" if sep and extension else root}
