"""PID (+ PAM France ZFD) → FR Core Patient, and finding the Patient a message is about.

Identity (FR Core 2.2): INS identifiers by their root OID (INS-NIR / INS-NIA / test / demo, use
official), the IPP (PI, use usual) with its assigning authority, names L (nom de naissance, use
official, with the birth list of given names) and D (nom utilisé, use usual), the birth place from the
BDL address (INSEE code), and the identity reliability extension: PID-32 status, ZFD-5 way the
identity was obtained, ZFD-6 INSi call date, ZFD-7 identity document type.

A message's Patient is looked up by its IPP, then its INS, then any other PID-3 identifier, under the
criteria lease of the first key (two messages about a new patient create it once).
"""

from __future__ import annotations

import copy
import re
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from mappings.hl7v2.ack import ERR_REQUIRED_FIELD_MISSING, ERR_SEGMENT_SEQUENCE, HL7Reject
from mappings.hl7v2.identifiers import FR_CORE, INS_OIDS, Identifiers, token, type_code
from mappings.hl7v2.segments import Message, Segment
from mappings.hl7v2.writes import Batch

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

ERR_UNKNOWN_KEY = "204"  # HL7 table 0357: unknown key identifier
ERR_DUPLICATE_KEY = "205"

IDENTITY_RELIABILITY_URL = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"
FR_0445 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0445"
METHOD_COLLECTION = f"{FR_CORE}/CodeSystem/fr-core-cs-method-collection"
VALIDATION_MODE = f"{FR_CORE}/CodeSystem/fr-core-cs-mode-validation-identity"
BIRTH_LIST_GIVEN_URL = f"{FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
INSEE_CODE_URL = f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code"
INSEE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
BIRTH_PLACE_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
STATUS_DISPLAY = {
    "VIDE": "Identité non encore qualifiée",
    "PROV": "Identité provisoire",
    "VALI": "Identité validée",
    "DOUB": "Doublon",
    "DESA": "Identité désactivée",
    "DPOT": "Doublon potentiel",
    "DOUA": "Doublon avéré",
    "COLP": "Collision potentielle",
    "COLV": "Collision avérée",
    "FILI": "Filiation",
    "CACH": "Identité cachée",
    "ANOM": "Anonyme",
    "IDVER": "Identité vérifiée par le patient",
    "RECD": "Identité reçue d'un autre domaine",
    "IDRA": "Identité rapprochée dans un autre domaine",
    "USUR": "Identité usurpée",
    "HOMD": "Homonyme détecté",
    "HOMA": "Homonyme avéré",
    "INVA": "Identité invalidée",
    "FICT": "Identité fictive (Attribut d’identité « fictive »)",
    "DOUT": "Identité douteuse (Attribut d’identité « douteuse »)",
}
METHOD_DISPLAY = {"SM": "Saisie manuelle", "CV": "Carte vitale", "INSI": "Téléservice INSI", "CB": "Code à barre"}
# FR Core restricts gender to male | female | unknown.
GENDER = {"M": "male", "F": "female", "U": "unknown", "O": "unknown", "A": "unknown", "N": "unknown"}
NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous", "S": "anonymous"}
ADDRESS_USE = {"H": "home", "O": "work", "C": "temp", "BA": "old"}
TELECOM_USE = {"PRN": "home", "WPN": "work", "ORN": "home", "VHN": "home", "EMR": "home", "NET": "home"}
# Elements an update carries from the message; the others (link, active, generalPractitioner...) stay.
MAPPED_ELEMENTS = ("name", "gender", "birthDate", "address", "telecom", "deceasedBoolean", "deceasedDateTime")


class PatientMapping:
    def __init__(self, msg: Message, ids: Identifiers, pid: Segment | None = None) -> None:
        self.msg, self.ids = msg, ids
        self.pid = pid or msg.first("PID")
        if self.pid is None:
            raise HL7Reject("AR", ERR_SEGMENT_SEQUENCE, "PID segment missing")

    def identifiers(self) -> list[dict[str, Any]]:
        return [i for i in (self.ids.cx(cx) for cx in self.pid.reps(3)) if i]

    def keys(self) -> list[dict[str, Any]]:
        """The identifiers to find the Patient by, best first: IPP, INS, the others."""
        identifiers = self.identifiers()
        if not identifiers:
            raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "PID-3 (patient identifier list) missing")

        def rank(i: dict[str, Any]) -> int:
            code = type_code(i)
            return 0 if code == "PI" else 1 if code.startswith("INS") else 2

        return sorted(identifiers, key=rank)

    def patient(self) -> dict[str, Any]:
        pid, msg = self.pid, self.msg
        patient: dict[str, Any] = {"resourceType": "Patient", "identifier": self.identifiers()}
        names = [n for n in (self.name(x) for x in pid.reps(5)) if n]
        if names:
            patient["name"] = names
        gender = GENDER.get(pid.text(8).upper())
        if gender:
            patient["gender"] = gender
        birth = msg.date(pid.text(7), "PID-7")
        if birth:
            patient["birthDate"] = birth
        addresses, birth_place = [], None
        for xad in pid.reps(11):
            address, kind = self.address(xad)
            if kind == "BDL":
                birth_place = address
            elif address:
                addresses.append(address)
        if addresses:
            patient["address"] = addresses
        telecom = [t for t in (self.telecom(x) for x in [*pid.reps(13), *pid.reps(14)]) if t]
        if telecom:
            patient["telecom"] = telecom
        death = msg.datetime(pid.text(29), "PID-29")
        if death:
            patient["deceasedDateTime"] = death
        elif pid.text(30).upper() in ("Y", "N"):
            patient["deceasedBoolean"] = pid.text(30).upper() == "Y"
        extensions = []
        if birth_place:
            extensions.append({"url": BIRTH_PLACE_URL, "valueAddress": birth_place})
        reliability = self.reliability()
        if reliability:
            extensions.append(reliability)
        if extensions:
            patient["extension"] = extensions
        return patient

    def name(self, xpn: str) -> dict[str, Any] | None:
        enc = self.msg.enc
        family, given1, given_more, suffix, prefix, _degree, kind = (xpn.split(enc.comp) + [""] * 7)[:7]
        family = enc.unescape(family.split(enc.sub)[0]).strip()
        first = enc.unescape(given1).strip()
        birth_list = enc.unescape(given_more).strip()
        given: list[str] = []
        for g in [first, *birth_list.replace(",", " ").split()]:
            if g and g not in given:
                given.append(g)
        name: dict[str, Any] = {}
        use = NAME_USE.get(kind.strip().upper())
        if use:
            name["use"] = use
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        if prefix.strip():
            name["prefix"] = [enc.unescape(prefix).strip()]
        if suffix.strip():
            name["suffix"] = [enc.unescape(suffix).strip()]
        if use == "official" and birth_list:
            # PAM France: PID-5.3 of the L name is the list of birth given names (INS trait).
            name["extension"] = [{"url": BIRTH_LIST_GIVEN_URL, "valueString": birth_list.replace(",", " ")}]
        return name if ("family" in name or "given" in name) else None

    def address(self, xad: str) -> tuple[dict[str, Any] | None, str]:
        enc = self.msg.enc
        parts = xad.split(enc.comp) + [""] * 9
        street, other, city, _state, postal, country, kind, _geo, county = (
            enc.unescape(p.split(enc.sub)[0]).strip() for p in parts[:9]
        )
        address: dict[str, Any] = {}
        if county and re.match(r"^[0-9][0-9AB][0-9]{3}$", county):
            # PAM France: XAD-9 is the INSEE code of the commune (of birth, for the BDL address).
            address["extension"] = [{"url": INSEE_CODE_URL, "valueCoding": {"system": INSEE_SYSTEM, "code": county}}]
        lines = [x for x in (street, other) if x]
        if lines:
            address["line"] = lines
        for key, value in (("city", city), ("postalCode", postal), ("country", country)):
            if value:
                address[key] = value
        if county and "extension" not in address:
            address["district"] = county
        if kind.upper() in ADDRESS_USE:
            address["use"] = ADDRESS_USE[kind.upper()]
        meaningful = {k for k in address if k != "use"}
        return (address if meaningful else None), kind.upper()

    def telecom(self, xtn: str) -> dict[str, Any] | None:
        enc = self.msg.enc
        parts = [enc.unescape(p).strip() for p in xtn.split(enc.comp)] + [""] * 12
        use_code, equipment, email, number = parts[1].upper(), parts[2].upper(), parts[3], parts[11] or parts[0]
        if email or use_code == "NET" or equipment in ("INTERNET", "X.400"):
            value = email or number
            return {"system": "email", "value": value} if value else None
        if not number:
            return None
        point: dict[str, Any] = {"system": "fax" if equipment == "FX" else "phone", "value": number}
        if equipment == "CP":
            point["use"] = "mobile"
        elif use_code in TELECOM_USE:
            point["use"] = TELECOM_USE[use_code]
        return point

    def reliability(self) -> dict[str, Any] | None:
        """FR Core identity reliability: PID-32 status plus the ZFD identity-collection fields."""
        subs: list[dict[str, Any]] = []
        status = self.pid.comp(32, 1).upper()
        if status:
            coding = {"system": FR_0445, "code": status}
            if status in STATUS_DISPLAY:
                coding["display"] = STATUS_DISPLAY[status]
            subs.append({"url": "identityStatus", "valueCoding": coding})
        zfd = self.msg.first("ZFD")
        if zfd is not None:
            method = zfd.comp(5, 1).upper()
            if method:
                coding = {"system": METHOD_COLLECTION, "code": method}
                if method in METHOD_DISPLAY:
                    coding["display"] = METHOD_DISPLAY[method]
                subs.append({"url": "methodCollection", "valueCoding": coding})
            collected = self.msg.date(zfd.text(6), "ZFD-6")
            if collected:
                subs.append({"url": "dateCollection", "valueDate": collected})
            mode = zfd.comp(7, 1).upper()
            if mode:
                subs.append({"url": "validationMode", "valueCoding": {"system": VALIDATION_MODE, "code": mode}})
        return {"url": IDENTITY_RELIABILITY_URL, "extension": subs} if subs else None


def merged(existing: dict[str, Any], mapped: dict[str, Any]) -> dict[str, Any]:
    """The next version of a stored Patient given what a message says about it.

    HL7 snapshot semantics: what the message carries replaces; what it leaves empty is kept.
    Identifiers are merged by system (the message's value wins), extensions by URL.
    """
    out = copy.deepcopy(existing)
    new_ids = mapped.get("identifier", [])
    systems = {i.get("system") for i in new_ids}
    out["identifier"] = new_ids + [i for i in existing.get("identifier", []) if i.get("system") not in systems]
    for key in MAPPED_ELEMENTS:
        if key in mapped:
            out[key] = mapped[key]
            if key.startswith("deceased"):
                out.pop("deceasedDateTime" if key == "deceasedBoolean" else "deceasedBoolean", None)
    if "extension" in mapped:
        urls = {e["url"] for e in mapped["extension"]}
        out["extension"] = mapped["extension"] + [e for e in existing.get("extension", []) if e["url"] not in urls]
    return out


async def find_by_keys(ctx: ServerContext, keys: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The one current Patient with the first key that matches; AE when a key matches several.

    A Patient merged into another (`link: replaced-by`, A40) stands for its survivor.
    """
    from fhir_server.search.engine import find_current

    for key in keys:
        found = await find_current(ctx, "Patient", [("identifier", token(key))], limit=3, strict=True)
        resolved: dict[str, dict[str, Any]] = {}
        for doc in found:
            doc = await _survivor(ctx, doc)
            resolved[doc["_id"]] = doc
        if len(resolved) > 1:
            raise HL7Reject("AE", ERR_DUPLICATE_KEY, f"several Patient resources have identifier {key['value']}")
        if resolved:
            return next(iter(resolved.values()))
    return None


async def _survivor(ctx: ServerContext, doc: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    for link in doc["res"].get("link", []):
        ref = link.get("other", {}).get("reference", "")
        if link.get("type") == "replaced-by" and ref.startswith("Patient/") and depth < 5:
            nxt = await ctx.store.current("Patient", ref.split("/", 1)[1])
            if nxt is not None and not nxt.get("gone"):
                return await _survivor(ctx, nxt, depth + 1)
    return doc


async def resolve(
    ctx: ServerContext,
    batch: Batch,
    stack: AsyncExitStack,
    mapping: PatientMapping,
    *,
    update: bool,
) -> str:
    """The id of the message's Patient, creating it (or, with `update`, writing its next version) in
    `batch`; the first key's lease is held by `stack` until the batch is committed."""
    from fhir_server.interactions.conditional import criteria_lease

    keys = mapping.keys()
    await stack.enter_async_context(criteria_lease(ctx, "Patient", [("identifier", token(keys[0]))]))
    found = await find_by_keys(ctx, keys)
    mapped = mapping.patient()
    if found is None:
        if "name" not in mapped:
            raise HL7Reject("AE", ERR_UNKNOWN_KEY, f"unknown patient {keys[0]['value']} and no identity to create it")
        return batch.create(mapped)
    if update:
        nxt = merged(found["res"], mapped)
        if nxt != found["res"]:  # an unchanged identity writes no new version
            batch.update(found, nxt)
    else:
        check_traits(found["res"], mapped, keys)
    return found["_id"]


def check_traits(stored: dict[str, Any], mapped: dict[str, Any], keys: list[dict[str, Any]]) -> None:
    """Identito-vigilance on documents: the sex and birth date the message gives must be the Patient's."""
    for key in ("birthDate", "gender"):
        if key in mapped and key in stored and mapped[key] != stored[key]:
            raise HL7Reject(
                "AE",
                ERR_UNKNOWN_KEY,
                f"identity mismatch for patient {keys[0]['value']}: {key} {mapped[key]} is not {stored[key]}",
            )


def ins_of(patient: dict[str, Any]) -> dict[str, Any] | None:
    for ident in patient.get("identifier", []):
        if ident.get("system", "").removeprefix("urn:oid:") in INS_OIDS:
            return ident
    return None
