"""QIDO-RS / C-FIND matching (PS3.4 C.2.2.2, PS3.18 8.3.4) as MongoDB filters on the index documents.

Every matching key is one predicate on one field of the level's own collection: study keys are copied
into series and instance documents at ingest, so a query never joins. The only exception,
ModalitiesInStudy below the study level, is resolved on the studies collection first (`study_filter`).

- single value: equality; universal matching ("" or "*"): no predicate;
- wildcards `*` and `?`: an anchored regex (a leading literal prefix keeps it an index range scan);
- lists (`\\`-separated, or comma-separated for UIDs and modalities): `$in`;
- dates and times: ranges "A-B", "A-", "-B" (string order of YYYYMMDD and normalised HHMMSS.FFFFFF);
- PatientName and other PN: case-insensitive, matched on an upper-cased copy (fuzzy matching off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from dicomweb.dicom_json import LEVEL_KEPT, keyword_of, normalize_time, tag_of

Level = Literal["STUDY", "SERIES", "IMAGE"]


class QueryError(ValueError):
    """A malformed matching value (400)."""


# keyword -> (field in the index documents, kind); study keys exist at every level.
STUDY_FIELDS: dict[str, tuple[str, str]] = {
    "PatientID": ("pid", "str"),
    "PatientName": ("pnu", "pn"),
    "IssuerOfPatientID": ("issuer", "str"),
    "PatientBirthDate": ("birth", "date"),
    "PatientSex": ("sex", "str"),
    "StudyDate": ("date", "date"),
    "StudyTime": ("time", "time"),
    "AccessionNumber": ("acc", "str"),
    "StudyID": ("sid", "str"),
    "StudyDescription": ("desc", "str"),
    "ReferringPhysicianName": ("refu", "pn"),
}
SERIES_FIELDS: dict[str, tuple[str, str]] = {
    "Modality": ("mod", "list"),
    "SeriesDescription": ("sdesc", "str"),
    "BodyPartExamined": ("body", "str"),
}
LIST_SEP = re.compile(r"[\\,]")


@dataclass
class Compiled:
    flt: dict[str, Any]
    # Conditions on the studies collection whose matching study UIDs restrict this level.
    study_filter: dict[str, Any] = field(default_factory=dict)
    # Matching keys this level does not keep: ignored (QIDO-RS says so in a Warning header).
    ignored: list[str] = field(default_factory=list)


def compile_match(level: Level, match: dict[str, str]) -> Compiled:
    clauses: list[dict[str, Any]] = []
    study_clauses: list[dict[str, Any]] = []
    ignored: list[str] = []
    for name, raw in match.items():
        value = raw if isinstance(raw, str) else str(raw)
        tag = tag_of(name)
        if tag is None:
            raise QueryError(f"{name!r} is not a DICOM attribute keyword or tag")
        keyword = keyword_of(tag)
        clause = _clause(level, keyword, tag, value, study_clauses, ignored)
        if clause:
            clauses.append(clause)
    flt: dict[str, Any] = {}
    if len(clauses) == 1:
        flt = clauses[0]
    elif clauses:
        flt = {"$and": clauses}
    sflt: dict[str, Any] = {}
    if len(study_clauses) == 1:
        sflt = study_clauses[0]
    elif study_clauses:
        sflt = {"$and": study_clauses}
    return Compiled(flt, sflt, ignored)


def _clause(
    level: Level, keyword: str, tag: str, value: str, study_clauses: list[dict[str, Any]], ignored: list[str]
) -> dict[str, Any]:
    if keyword == "StudyInstanceUID":
        return _uids("_id" if level == "STUDY" else "study", value)
    if keyword == "SeriesInstanceUID":
        if level == "STUDY":
            raise QueryError("SeriesInstanceUID is not a study-level matching key")
        return _uids("_id" if level == "SERIES" else "series", value)
    if keyword == "SOPInstanceUID":
        if level != "IMAGE":
            raise QueryError("SOPInstanceUID is an instance-level matching key")
        return _uids("_id", value)
    if keyword == "SOPClassUID":
        if level != "IMAGE":
            raise QueryError("SOPClassUID is an instance-level matching key")
        return _uids("cls", value)
    if keyword == "ModalitiesInStudy":
        values = [v for v in (x.strip() for x in LIST_SEP.split(value)) if v and v != "*"]
        if not values:
            return {}
        clause = _strings("mods", values)
        if level == "STUDY":
            return clause
        study_clauses.append(clause)
        return {}
    if keyword == "SeriesNumber" and level != "STUDY":
        return _number("num" if level == "SERIES" else "snum", value)
    if keyword == "InstanceNumber" and level == "IMAGE":
        return _number("num", value)
    if keyword in STUDY_FIELDS:
        fieldname, kind = STUDY_FIELDS[keyword]
        return _typed(fieldname, kind, value)
    if keyword in SERIES_FIELDS and level != "STUDY":
        fieldname, kind = SERIES_FIELDS[keyword]
        return _typed(fieldname, kind, value)
    # Another attribute the level keeps: equality (or wildcard) on its DICOM JSON value (not indexed).
    if value in ("", "*"):
        return {}
    if tag not in LEVEL_KEPT[level]:
        ignored.append(keyword)
        return {}
    return _typed(f"attrs.{tag}.Value", "str", value)


def _typed(fieldname: str, kind: str, value: str) -> dict[str, Any]:
    if kind == "date":
        return _range(fieldname, value, _date_bound)
    if kind == "time":
        return _range(fieldname, value, _time_bound)
    if kind == "list":
        values = [v.strip() for v in LIST_SEP.split(value)]
        return _strings(fieldname, values)
    values = value.split("\\")
    if kind == "pn":
        values = [v.upper() for v in values]
    return _strings(fieldname, values)


def _strings(fieldname: str, values: list[str]) -> dict[str, Any]:
    values = [v for v in values if v != ""]
    if not values or "*" in values:
        return {}
    plain = [v for v in values if "*" not in v and "?" not in v]
    patterns = [_wildcard(v) for v in values if "*" in v or "?" in v]
    options: list[dict[str, Any]] = []
    if len(plain) == 1:
        options.append({fieldname: plain[0]})
    elif plain:
        options.append({fieldname: {"$in": plain}})
    options += [{fieldname: {"$regex": p}} for p in patterns]
    return options[0] if len(options) == 1 else {"$or": options}


def _wildcard(value: str) -> str:
    out = ["^"]
    for ch in value:
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    out.append("$")
    return "".join(out)


def _uids(fieldname: str, value: str) -> dict[str, Any]:
    uids = [u.strip() for u in LIST_SEP.split(value) if u.strip()]
    if not uids or uids == ["*"]:
        return {}
    for uid in uids:
        if not re.fullmatch(r"[0-9.]{1,64}", uid):
            raise QueryError(f"{uid[:80]!r} is not a UID")
    return {fieldname: uids[0]} if len(uids) == 1 else {fieldname: {"$in": uids}}


def _number(fieldname: str, value: str) -> dict[str, Any]:
    if value in ("", "*"):
        return {}
    try:
        nums = [int(v) for v in LIST_SEP.split(value)]
    except ValueError:
        raise QueryError(f"{value[:40]!r} is not an integer") from None
    return {fieldname: nums[0]} if len(nums) == 1 else {fieldname: {"$in": nums}}


def _date_bound(value: str, upper: bool) -> str:
    value = value.replace(".", "").replace("-", "")
    if not re.fullmatch(r"\d{4}(\d{2}(\d{2})?)?", value):
        raise QueryError(f"{value[:40]!r} is not a DICOM date (YYYYMMDD)")
    return value + ("9999" if upper else "0000")[: 8 - len(value)] if len(value) < 8 else value


def _time_bound(value: str, upper: bool) -> str:
    if not re.fullmatch(r"\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?", value):
        raise QueryError(f"{value[:40]!r} is not a DICOM time (HHMMSS.FFFFFF)")
    if not upper:
        return normalize_time(value)
    digits = value.replace(":", "")
    whole, _, frac = digits.partition(".")
    # An upper bound covers the whole unit it names: "12" means up to 12:59:59.999999.
    return (whole + "995959"[len(whole) :])[:6] + "." + (frac + "999999")[:6]


def _range(fieldname: str, value: str, bound: Any) -> dict[str, Any]:
    value = value.strip()
    if value in ("", "*"):
        return {}
    if "\\" in value:
        return {"$or": [_range(fieldname, v, bound) for v in value.split("\\") if v]}
    if "-" in value and not _is_plain_date(value):
        if value.count("-") != 1:
            raise QueryError(f"{value[:40]!r} is not a range (A-B, A-, -B)")
        low, _, high = value.partition("-")
        cond: dict[str, Any] = {}
        if low:
            cond["$gte"] = bound(low, False)
        if high:
            cond["$lte"] = bound(high, True)
        if not cond:
            return {}
        return {fieldname: cond}
    low, high = bound(value, False), bound(value, True)
    return {fieldname: low} if low == high else {fieldname: {"$gte": low, "$lte": high}}


def _is_plain_date(value: str) -> bool:
    # ISO-looking "2024-01-02" is not a DICOM range: refuse it explicitly rather than misread it.
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise QueryError(f"{value!r}: DICOM dates are YYYYMMDD (ranges are YYYYMMDD-YYYYMMDD)")
    return False
