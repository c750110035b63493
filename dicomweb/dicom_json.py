"""The DICOM JSON model (PS3.18 F.2) as we store and serve it: tags, levels and small value helpers.

Metadata is kept as DICOM JSON dicts keyed by 8-hex-digit tags ("0010 0020" → "00100020"), exactly
what QIDO-RS and WADO-RS metadata return, so serving is a projection, never a conversion.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import orjson
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

JSON = dict[str, Any]


def tag_of(name: str) -> str | None:
    """ "PatientID" or "00100020" (or "0010,0020") -> "00100020"; None when unknown."""
    name = name.strip()
    hexed = name.replace(",", "").replace("(", "").replace(")", "")
    if len(hexed) == 8:
        try:
            int(hexed, 16)
            return hexed.upper()
        except ValueError:
            pass
    tag = tag_for_keyword(name)
    return None if tag is None else f"{tag:08X}"


def keyword_of(tag: str) -> str:
    return keyword_for_tag(int(tag, 16)) or tag


def vr_of(tag: str) -> str:
    try:
        return dictionary_VR(int(tag, 16)).split(" or ")[0]
    except KeyError:
        return "UN"


def tags(*keywords: str) -> tuple[str, ...]:
    out = []
    for k in keywords:
        t = tag_of(k)
        assert t is not None, k
        out.append(t)
    return tuple(out)


# Patient, Patient Study and General Study modules: what a study document keeps of its first instance.
STUDY_LEVEL = frozenset(
    tags(
        "SpecificCharacterSet",
        "TimezoneOffsetFromUTC",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
        "TypeOfPatientID",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "EthnicGroup",
        "PatientComments",
        "PatientIdentityRemoved",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "ReferringPhysicianIdentificationSequence",
        "StudyID",
        "AccessionNumber",
        "IssuerOfAccessionNumberSequence",
        "StudyDescription",
        "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy",
        "RequestingPhysician",
        "RequestingService",
        "ProcedureCodeSequence",
        "ReferencedStudySequence",
        "AdmittingDiagnosesDescription",
        "AdmissionID",
        "ReasonForPerformedProcedureCodeSequence",
    )
)
# General Series, General Equipment and Frame of Reference modules: what a series document keeps.
SERIES_LEVEL = frozenset(
    tags(
        "SpecificCharacterSet",
        "TimezoneOffsetFromUTC",
        "Modality",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "Laterality",
        "BodyPartExamined",
        "ProtocolName",
        "PerformingPhysicianName",
        "OperatorsName",
        "PatientPosition",
        "PerformedProcedureStepID",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepDescription",
        "RequestAttributesSequence",
        "Manufacturer",
        "ManufacturerModelName",
        "InstitutionName",
        "StationName",
        "FrameOfReferenceUID",
    )
)

# What each QIDO-RS level returns by default (PS3.18 Table 6.7.1-2, -2a, -2b).
STUDY_DEFAULT = tags(
    "SpecificCharacterSet",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "TimezoneOffsetFromUTC",
    "RetrieveURL",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "StudyDescription",
)
SERIES_DEFAULT = tags(
    "SpecificCharacterSet",
    "Modality",
    "TimezoneOffsetFromUTC",
    "SeriesDescription",
    "SeriesInstanceUID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "RequestAttributesSequence",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
    "RetrieveURL",
)
INSTANCE_DEFAULT = tags(
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "TimezoneOffsetFromUTC",
    "RetrieveURL",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
)

# What an instance document keeps besides its (compressed) full metadata: the default QIDO instance
# attributes and a few more that instance queries match on.
INSTANCE_LEVEL = frozenset(
    (
        *INSTANCE_DEFAULT,
        *tags(
            "ImageType",
            "AcquisitionNumber",
            "AcquisitionDate",
            "AcquisitionTime",
            "ContentDate",
            "ContentTime",
            "PhotometricInterpretation",
            "SamplesPerPixel",
            "BitsStored",
            "ImageComments",
            "ConceptNameCodeSequence",
        ),
    )
)
# Attributes a level can match on beyond its indexed keys (matching.py): those kept as plain DICOM JSON
# (`attrs`) in study and series documents. Instance documents keep theirs packed: none.
LEVEL_KEPT: dict[str, frozenset[str]] = {"STUDY": STUDY_LEVEL, "SERIES": SERIES_LEVEL, "IMAGE": frozenset()}


def encode_meta(meta: JSON) -> bytes:
    """The full metadata as stored: compressed JSON, one opaque value (documents with hundreds of nested
    fields cost FerretDB, and any MongoDB, far more to store and load than one binary)."""
    return zlib.compress(orjson.dumps(meta), 1)


def decode_meta(value: Any) -> JSON:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return orjson.loads(zlib.decompress(bytes(value)))  # type: ignore[no-any-return]


T = {
    k: tag_of(k)
    for k in (
        "PatientID",
        "PatientName",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDescription",
        "Modality",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "NumberOfSeriesRelatedInstances",
        "RetrieveURL",
        "InstanceAvailability",
        "AvailableTransferSyntaxUID",
        "BodyPartExamined",
        "IssuerOfPatientIDQualifiersSequence",
        "UniversalEntityID",
        "UniversalEntityIDType",
    )
}


def first(meta: JSON, tag: str | None) -> Any:
    """The first value of an attribute, or None."""
    if tag is None:
        return None
    values = (meta.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def text(meta: JSON, tag: str | None) -> str:
    value = first(meta, tag)
    if value is None:
        return ""
    if isinstance(value, dict):  # PN
        return str(value.get("Alphabetic", ""))
    return str(value).strip()


def integer(meta: JSON, tag: str | None) -> int | None:
    value = first(meta, tag)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def element(tag: str, values: Iterable[Any] | None, vr: str | None = None) -> JSON:
    vals = list(values) if values is not None else []
    out: JSON = {"vr": vr or vr_of(tag)}
    if vals:
        out["Value"] = vals
    return out


def pick(meta: JSON, wanted: Iterable[str]) -> JSON:
    return {t: meta[t] for t in wanted if t in meta}


def normalize_time(value: str) -> str:
    """DICOM TM "HHMMSS.FFFFFF" (or "HH:MM:SS", shorter forms) -> a string that orders like the time."""
    value = value.replace(":", "").strip()
    whole, _, frac = value.partition(".")
    return (whole + "000000")[:6] + "." + (frac + "000000")[:6]
