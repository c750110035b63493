"""Code systems, identifier roots and timestamps shared by the CDA and XDS mappings.

CDA and XDS name code systems and identifier authorities by OID; FHIR by URI. `system_for_oid` and
`oid_for_system` convert between them: the French NOS terminologies have canonical URLs
(https://mos.esante.gouv.fr/NOS/...), international ones their HL7 URL, and every other OID becomes
`urn:oid:<oid>` so that the conversion is always reversible.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

LOINC_OID = "2.16.840.1.113883.6.1"
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
GENDER_OID = "2.16.840.1.113883.5.1"
IHE_FORMAT_OID = "1.3.6.1.4.1.19376.1.2.3"

# Identifier roots (ANS): INS (FR Core Patient INS slices), RPPS/ADELI-based IDNPS, structures (FINESS, SIRET…).
INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
INS_NIR_DEMO_OID = "1.2.250.1.213.1.4.11"
INS_OIDS = {
    INS_NIR_OID: "INS-NIR",
    INS_NIA_OID: "INS-NIA",
    INS_NIR_TEST_OID: "INS-NIR-TEST",
    INS_NIR_DEMO_OID: "INS-NIR-DEMO",
}
IDNPS_OID = "1.2.250.1.71.4.2.1"  # national health-professional id (RPPS prefixed with 8, ADELI with 0)
IDNST_OID = "1.2.250.1.71.4.2.2"  # national structure id (FINESS prefixed with 1, SIRET with 3, …)
FR_CORE_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

NOS = "https://mos.esante.gouv.fr/NOS"
CLASS_CODE_OID = "1.2.250.1.213.1.1.4.1"  # TRE_A03-ClasseDocument (XDS classCode)
PRACTICE_SETTING_OID = "1.2.250.1.213.1.1.4.9"  # TRE_A01-CadreExercice (XDS practiceSettingCode)
FACILITY_TYPE_OID = "1.2.250.1.71.4.2.4"  # TRE_R02-SecteurActivite (XDS healthcareFacilityTypeCode)
VISIBILITY_OID = "1.2.250.1.213.1.1.4.13"  # TRE_A07-StatusVisibiliteDocument (masking codes)
TYPE_DOC_COMPL_OID = "1.2.250.1.213.1.1.4.12"  # TRE_A05-TypeDocComplementaire (non-LOINC typeCodes)
SUBMISSION_CONTENT_TYPE_OID = "1.2.250.1.213.2.2"  # TRE_A04-TypeActivite (SubmissionSet contentTypeCode)

_OID_TO_SYSTEM: dict[str, str] = {
    LOINC_OID: "http://loinc.org",
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    CONFIDENTIALITY_OID: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    GENDER_OID: "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
    "1.2.840.10008.2.16.4": "http://dicom.nema.org/resources/ontology/DCM",
    "2.16.840.1.113883.6.8": "http://unitsofmeasure.org",
    CLASS_CODE_OID: f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
    PRACTICE_SETTING_OID: f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice",
    FACILITY_TYPE_OID: f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite",
    VISIBILITY_OID: f"{NOS}/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument",
    TYPE_DOC_COMPL_OID: f"{NOS}/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
    IHE_FORMAT_OID: f"{NOS}/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode",
    SUBMISSION_CONTENT_TYPE_OID: f"{NOS}/TRE_A04-TypeActivite/FHIR/TRE-A04-TypeActivite",
}
# The reverse table; where two OIDs share a URL, the first listed (the CI-SIS one) wins.
_SYSTEM_TO_OID: dict[str, str] = {}
for _oid, _system in _OID_TO_SYSTEM.items():
    _SYSTEM_TO_OID.setdefault(_system, _oid)
# Old/alternate spellings met in the wild.
_SYSTEM_TO_OID.update(
    {"urn:oid:" + LOINC_OID: LOINC_OID, "http://hl7.org/fhir/v3/Confidentiality": CONFIDENTIALITY_OID}
)

OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def system_for_oid(oid: str | None) -> str | None:
    """FHIR Coding/Identifier system for a CDA/XDS OID (NOS canonical URL when known, else urn:oid:)."""
    if not oid:
        return None
    if oid in _OID_TO_SYSTEM:
        return _OID_TO_SYSTEM[oid]
    if OID_RE.match(oid):
        return f"urn:oid:{oid}"
    if UUID_RE.match(oid):
        return f"urn:uuid:{oid.lower()}"
    return oid  # already a URI (e.g. "URN" coding schemes of XDS are handled by the caller)


def oid_for_system(system: str | None) -> str | None:
    """The OID (CDA codeSystem / XDS codingScheme / II root) for a FHIR system, or None when it has none."""
    if not system:
        return None
    if system in _SYSTEM_TO_OID:
        return _SYSTEM_TO_OID[system]
    if system.startswith("urn:oid:"):
        return system[8:]
    if OID_RE.match(system):
        return system
    return None


# --- timestamps ---------------------------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")
_TS_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4}|Z)?$")


def ts_to_fhir(value: str | None, *, instant: bool = False) -> str | None:
    """HL7 v3 TS (`YYYYMMDDHHMMSS.ffff+ZZZZ`, any precision) → FHIR dateTime (or instant).

    FHIR needs seconds and a zone as soon as there is a time: missing seconds become `:00`, a missing
    zone is taken as Europe/Paris (the CI-SIS documents are French). An instant needs a time: a date
    alone becomes midnight Paris time.
    """
    if not value:
        return None
    m = _TS_RE.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    if hour is None and not instant:
        return "-".join(p for p in (year, month, day) if p)
    if hour is None and instant and (month is None or day is None):
        month, day = month or "01", day or "01"
    naive = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    if tz is None:
        aware = naive.replace(tzinfo=PARIS)
    elif tz == "Z":
        aware = naive.replace(tzinfo=UTC)
    else:
        sign = 1 if tz[0] == "+" else -1
        aware = naive.replace(tzinfo=timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))))
    text = aware.isoformat()
    if frac:
        text = text[:19] + frac[:4] + text[19:]
    return text.replace("+00:00", "Z") if tz == "Z" else text


_FHIR_DT_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def fhir_to_ts(value: str | None, *, with_zone: bool = True) -> str | None:
    """FHIR date/dateTime/instant → HL7 v3 TS (`YYYYMMDDHHMMSS+ZZZZ`, or the date's own precision)."""
    if not value:
        return None
    m = _FHIR_DT_RE.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, _frac, tz = m.groups()
    if hour is None:
        return "".join(p for p in (year, month, day) if p)
    text = f"{year}{month}{day}{hour}{minute}{second or '00'}"
    if not with_zone:
        return text
    if tz is None:
        offset = datetime(int(year), int(month), int(day), int(hour), int(minute), tzinfo=PARIS).strftime("%z")
    elif tz == "Z":
        offset = "+0000"
    else:
        offset = tz.replace(":", "")
    return text + offset


def fhir_to_utc_ts(value: str | None) -> str | None:
    """FHIR dateTime → XDS DTM (UTC, `YYYYMMDDHHMMSS` or the date's precision), as XDS metadata wants."""
    if not value:
        return None
    m = _FHIR_DT_RE.match(value.strip())
    if not m:
        return None
    if m.group(4) is None:
        return "".join(p for p in m.groups()[:3] if p)
    text = value.strip().replace("Z", "+00:00")
    if m.group(6) is None:
        text = text[:16] + ":00" + text[16:]
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=PARIS)
    return dt.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def utc_ts_to_fhir(value: str | None) -> str | None:
    """XDS DTM (UTC by definition) → FHIR dateTime in UTC."""
    if not value:
        return None
    v = value.strip()
    if len(v) <= 8:
        return ts_to_fhir(v)
    return ts_to_fhir(v + "Z" if not re.search(r"[+-]\d{4}$|Z$", v) else v)
