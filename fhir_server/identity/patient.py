"""A patient's identity in FR Core 2.2 terms: INS identifier, strict traits, identity reliability (RNIV status).

- INS identifier: `use` official, `type` FR Core `fr-core-cs-v2-0203` (INS-NIR, INS-NIA, INS-NIR-TEST,
  INS-NIR-DEMO by OID), `system` `urn:oid:<root>`, `value` the 15-character matricule.
- Strict traits: the birth name is the `official` name (`family`; `given` holds the first given name and FR
  Core's `fr-core-patient-birth-list-given-name` the whole list, as FR Core asks for identities from INSi),
  `gender`, `birthDate` (an INSi date with `00` for an unknown day or month becomes a partial FHIR date), the
  birthplace in `patient-birthPlace` whose address carries FR Core's `fr-core-address-insee-code`.
- Reliability: FR Core's `fr-core-identity-reliability` with `identityStatus` (system `fr-core-cs-v2-0445`),
  `methodCollection` (SM saisie manuelle, CV carte Vitale, INSI téléservice) and `dateCollection` (date of the
  INSi call). The four RNIV statuses are PROV (provisoire), RECUP (récupérée: INS from INSi, no identity document
  checked), VALI (validée), QUAL (qualifiée). FR Core 2.2.0's CodeSystem stops at VALI: RECUP and QUAL come from
  FR Core's work in progress (ValueSet `fr-core-vs-identity-reliability-ins-status`, RNIV EXI SI 07), which puts
  them in the same CodeSystem; the profiles bind that element `extensible`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from fhir_server.identity.insi import INS_OIDS, INSIdentity, Traits

FR_CORE = "https://hl7.fr/ig/fhir/core"
FR_0203 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203"
FR_0445 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0445"
METHOD_COLLECTION = f"{FR_CORE}/CodeSystem/fr-core-cs-method-collection"
IDENTITY_RELIABILITY_URL = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"
BIRTH_LIST_GIVEN_URL = f"{FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
INSEE_CODE_URL = f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code"
INSEE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
BIRTH_PLACE_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"

STATUS_DISPLAY = {
    "PROV": "Identité provisoire",
    "RECUP": "Identité récupérée",
    "VALI": "Identité validée",
    "QUAL": "Identité qualifiée",
}
METHOD_DISPLAY = {
    "SM": "Saisie manuelle",
    "CV": "Carte vitale",
    "INSI": "Téléservice INSI",
    "CB": "Code à barre",
    "RFID": "Puce RFID",
}
GENDER_OF_SEX = {"M": "male", "F": "female"}
SEX_OF_GENDER = {"male": "M", "female": "F"}
_FULL_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class TypedTraits:
    """The strict traits a Patient holds (any of them may be missing)."""

    birth_name: str | None
    given_names: tuple[str, ...]
    gender: str | None
    birth_date: str | None
    birthplace: str | None

    def missing(self) -> list[str]:
        """The strict traits an identity created from traits cannot do without (the birthplace can wait)."""
        out = []
        if not self.birth_name:
            out.append("nom de naissance (name.family)")
        if not self.given_names:
            out.append("prénom (name.given)")
        if not self.gender:
            out.append("sexe (gender)")
        if not self.birth_date:
            out.append("date de naissance (birthDate)")
        return out

    def for_search(self) -> Traits | str:
        """The traits of an INSi search, or why INSi cannot be asked with them."""
        missing = self.missing()
        if missing:
            return "missing " + ", ".join(missing)
        sex = SEX_OF_GENDER.get(self.gender or "")
        if sex is None:
            return f"INSi searches a sex M or F, the patient's gender is {self.gender}"
        if not _FULL_DATE.match(self.birth_date or ""):
            return f"INSi searches a full birth date, the patient's is {self.birth_date}"
        return Traits(self.birth_name or "", self.given_names, sex, self.birth_date or "", self.birthplace)


# ---- reading a Patient -------------------------------------------------------------------------------------


def ins_root(identifier: Any) -> str | None:
    """The INS OID of an identifier (`urn:oid:1.2.250.1.213.1.4.8`…), else None."""
    if not isinstance(identifier, dict) or not isinstance(identifier.get("system"), str):
        return None
    root = identifier["system"].removeprefix("urn:oid:")
    return root if root in INS_OIDS else None


def ins_identifiers(patient: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in patient.get("identifier") or [] if ins_root(i)]


def birth_name_index(patient: dict[str, Any]) -> int | None:
    """Which `name` is the birth name: the official one, else the only (or first) name without a use."""
    names = [n if isinstance(n, dict) else {} for n in patient.get("name") or []]
    for i, name in enumerate(names):
        if name.get("use") == "official":
            return i
    unnamed = [i for i, n in enumerate(names) if not n.get("use")]
    return unnamed[0] if unnamed else None


def typed_traits(patient: dict[str, Any]) -> TypedTraits:
    index = birth_name_index(patient)
    name = patient["name"][index] if index is not None else {}
    birth_list = _extension(name, BIRTH_LIST_GIVEN_URL)
    given: tuple[str, ...] = tuple(str(g).strip() for g in name.get("given") or [] if str(g).strip())
    if birth_list and isinstance(birth_list.get("valueString"), str) and birth_list["valueString"].split():
        given = tuple(birth_list["valueString"].split())
    family = name.get("family") if isinstance(name.get("family"), str) else None
    return TypedTraits(
        (family or "").strip() or None,
        given,
        patient.get("gender") if isinstance(patient.get("gender"), str) else None,
        patient.get("birthDate") if isinstance(patient.get("birthDate"), str) else None,
        birthplace_code(patient),
    )


def birthplace_code(patient: dict[str, Any]) -> str | None:
    place = _extension(patient, BIRTH_PLACE_URL)
    address = (place or {}).get("valueAddress") if isinstance(place, dict) else None
    if not isinstance(address, dict):
        return None
    insee = _extension(address, INSEE_CODE_URL)
    coding = (insee or {}).get("valueCoding") if isinstance(insee, dict) else None
    code = coding.get("code") if isinstance(coding, dict) else None
    return code if isinstance(code, str) and code else None


# ---- writing one ------------------------------------------------------------------------------------------


def ins_identifier(matricule: str, oid: str) -> dict[str, Any]:
    code, display = INS_OIDS[oid]
    return {
        "use": "official",
        "type": {"coding": [{"system": FR_0203, "code": code, "display": display}]},
        "system": f"urn:oid:{oid}",
        "value": matricule,
    }


def reliability(
    status: str, *, method: str | None = None, collected: str | None = None, checked: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """FR Core's identity reliability extension: RNIV status, how the identity was collected, INSi call date, and
    the identity document check (`checked`: validationMode / validationDate sub-extensions)."""
    subs: list[dict[str, Any]] = [
        {"url": "identityStatus", "valueCoding": {"system": FR_0445, "code": status, "display": STATUS_DISPLAY[status]}}
    ]
    if method:
        coding = {"system": METHOD_COLLECTION, "code": method, "display": METHOD_DISPLAY[method]}
        subs.append({"url": "methodCollection", "valueCoding": coding})
    if collected:
        subs.append({"url": "dateCollection", "valueDate": collected})
    subs += checked or []
    return {"url": IDENTITY_RELIABILITY_URL, "extension": subs}


def identity_status(patient: dict[str, Any]) -> str | None:
    """The RNIV status in a Patient's identity reliability extension."""
    coding = _reliability_parts(patient).get("identityStatus", {}).get("valueCoding")
    return coding.get("code") if isinstance(coding, dict) else None


def document_check(patient: dict[str, Any]) -> list[dict[str, Any]]:
    """The identity document check a Patient states (validationMode, validationDate), when it says its identity
    was validated (VALI or QUAL) and names the document; else nothing."""
    parts = _reliability_parts(patient)
    if identity_status(patient) not in ("VALI", "QUAL") or "validationMode" not in parts:
        return []
    return [parts[k] for k in ("validationMode", "validationDate") if k in parts]


def birth_place(code: str) -> dict[str, Any]:
    insee = {"url": INSEE_CODE_URL, "valueCoding": {"system": INSEE_SYSTEM, "code": code}}
    return {"url": BIRTH_PLACE_URL, "valueAddress": {"extension": [insee]}}


def fhir_date(insi_date: str) -> str:
    """An INSi date as a FHIR date: `1950-00-00` (day and month unknown) → `1950`, `1950-03-00` → `1950-03`."""
    year, month, day = insi_date.split("-")
    if month == "00":
        return year
    return f"{year}-{month}" if day == "00" else insi_date


def recovered(patient: dict[str, Any], identity: INSIdentity, *, today: str) -> dict[str, Any]:
    """The Patient with the INS and the 5 strict traits INSi gave: RNIV « identité récupérée » (RECUP), or
    « qualifiée » (QUAL) when the Patient states an identity document check (VALI with its validationMode).

    INSi's traits replace the typed ones (its spelling, all given names); the other elements of the Patient
    (usual names, IPP, address, telecom…) are kept.
    """
    checked = document_check(patient)
    out = copy.deepcopy(patient)
    traits = identity.traits
    out["identifier"] = [ins_identifier(identity.matricule, identity.oid), *_without_ins(out)]
    official = {
        "extension": [{"url": BIRTH_LIST_GIVEN_URL, "valueString": " ".join(traits.given_names)}],
        "use": "official",
        "family": traits.birth_name,
        "given": list(traits.given_names[:1]),
    }
    index = birth_name_index(out)
    others = [n for i, n in enumerate(out.get("name") or []) if i != index]
    out["name"] = [official, *others]
    out["gender"] = GENDER_OF_SEX.get(traits.sex, "unknown")
    out["birthDate"] = fhir_date(traits.birth_date)
    if traits.birthplace:
        _set_extension(out, birth_place(traits.birthplace))
    status = "QUAL" if checked else "RECUP"
    _set_extension(out, reliability(status, method="INSI", collected=today, checked=checked))
    return out


def provisional(patient: dict[str, Any]) -> dict[str, Any]:
    """The Patient as typed, without INS: a provisional identity (PROV), or validated (VALI) when the Patient
    states an identity document check. The traits were entered by hand (SM) unless the client said how it
    collected them. The name given as traits is the birth name (use official)."""
    out = copy.deepcopy(patient)
    index = birth_name_index(out)
    if index is not None:
        out["name"][index] = {**out["name"][index], "use": "official"}
    checked = document_check(out)
    method = (_reliability_parts(out).get("methodCollection", {}).get("valueCoding") or {}).get("code")
    method = method if method in METHOD_DISPLAY else "SM"
    _set_extension(out, reliability("VALI" if checked else "PROV", method=method, checked=checked))
    return out


def unknown_identity(text: str = "Identité inconnue") -> dict[str, Any]:
    """A Patient without traits (emergency, unconscious patient): a placeholder name, a provisional identity."""
    return {"resourceType": "Patient", "extension": [reliability("PROV")], "name": [{"use": "anonymous", "text": text}]}


def with_typed_ins(patient: dict[str, Any]) -> dict[str, Any]:
    """The Patient with its INS identifiers completed as FR Core types them (use official, type by OID)."""
    out = copy.deepcopy(patient)
    identifiers = []
    for ident in out.get("identifier") or []:
        root = ins_root(ident)
        if root:
            ident = {**ins_identifier(ident.get("value", ""), root), **{k: v for k, v in ident.items() if v}}
        identifiers.append(ident)
    out["identifier"] = identifiers
    return out


def _reliability_parts(patient: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sub-extensions of a Patient's identity reliability extension, by url."""
    current = _extension(patient, IDENTITY_RELIABILITY_URL) or {}
    return {
        s["url"]: s for s in current.get("extension") or [] if isinstance(s, dict) and isinstance(s.get("url"), str)
    }


def _without_ins(patient: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in patient.get("identifier") or [] if not ins_root(i)]


def _extension(element: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next(
        (e for e in element.get("extension") or [] if isinstance(e, dict) and e.get("url") == url),
        None,
    )


def _set_extension(element: dict[str, Any], extension: dict[str, Any]) -> None:
    others = [
        e for e in element.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == extension["url"])
    ]
    element["extension"] = [*others, extension]
