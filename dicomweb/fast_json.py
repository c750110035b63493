"""DICOM JSON (PS3.18 F.2) straight from pydicom's raw data elements, for ingest.

pydicom's `Dataset.to_json_dict` converts every raw element into a DataElement first (value
conversion, validation), which costs tens of microseconds per element: most of the parsing time of a
typical instance. Here the raw bytes of the common VRs go to JSON values directly; anything unusual
(ambiguous implicit VRs, big endian data sets, values that do not parse, elements already converted)
falls back to pydicom for that element, so the output is pydicom's wherever this module is not sure.
tests/test_dicomweb_store.py checks both agree on pydicom's bundled files.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

JSON = dict[str, Any]
Handler = Callable[[DataElement], str]

ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
SIZES = {"H": 2, "h": 2, "I": 4, "i": 4, "f": 4, "d": 8, "Q": 8, "q": 8}
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Character sets Python decodes without ISO 2022 escape handling.
SIMPLE_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


class _Fallback(Exception):
    pass


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)  # type: ignore[no-any-return]
    except KeyError:
        return None


def dataset_json(ds: Dataset, threshold: int, handler: Handler, charsets: list[str] | None = None) -> JSON:
    """The DICOM JSON of `ds` (binary values over `threshold` get `handler`'s BulkDataURI)."""
    if not getattr(ds, "is_little_endian", True) and ds.is_little_endian is not None:
        return ds.to_json_dict(threshold, handler, suppress_invalid_tags=True)
    if charsets is None or 0x00080005 in ds._dict:
        charsets = _charsets(ds)
    out: JSON = {}
    for tag, raw in ds._dict.items():
        key = f"{int(tag):08X}"
        if int(tag) & 0xFFFF == 0 or (int(tag) >> 16) in (0x0000, 0x0002):
            continue  # group lengths and command/meta groups are not part of the data set's JSON
        try:
            if not isinstance(raw, RawDataElement):
                raise _Fallback
            element = _raw(ds, raw, threshold, handler, charsets)
        except (_Fallback, ValueError, UnicodeDecodeError, struct.error, TypeError):
            element = _pydicom(ds, int(tag), threshold, handler, charsets)
        if element is not None:
            out[key] = element
    return out


def _pydicom(ds: Dataset, tag: int, threshold: int, handler: Handler, charsets: list[str]) -> JSON | None:
    try:
        elem = ds[tag]
        if elem.VR == "SQ":
            # Items inherit the data set's character set unless they name their own.
            items = [dataset_json(item, threshold, handler, charsets) for item in elem.value or []]
            return {"vr": "SQ", "Value": items}
        return elem.to_json_dict(  # type: ignore[no-any-return]
            bulk_data_element_handler=handler, bulk_data_threshold=threshold
        )
    except Exception:
        return None  # as to_json_dict(suppress_invalid_tags=True): an element that cannot be rendered is left out


def _charsets(ds: Dataset) -> list[str]:
    raw = ds._dict.get(0x00080005)
    if raw is None:
        return [""]
    value = raw.value if isinstance(raw, RawDataElement) else None
    if value is None:
        elem = ds[0x00080005]
        values = [elem.value] if isinstance(elem.value, str) else list(elem.value or [])
        return [str(v).strip() for v in values] or [""]
    text = value.decode("latin-1").strip(" \x00")
    return [v.strip() for v in text.split("\\")] or [""]


def _vr(raw: RawDataElement) -> str:
    if raw.VR == "UN":
        raise _Fallback  # pydicom may know the real VR (private creators, dictionary)
    if raw.VR:
        return str(raw.VR)
    vr = _dictionary_vr(int(raw.tag))
    if vr is None or " or " in vr:
        raise _Fallback  # private or ambiguous (US or SS, OB or OW...): pydicom resolves it
    return vr


def _raw(ds: Dataset, raw: RawDataElement, threshold: int, handler: Handler, charsets: list[str]) -> JSON:
    vr = _vr(raw)
    value: bytes | None = raw.value
    if vr == "SQ":
        raise _Fallback  # pydicom parses the items; their elements come back here (dataset_json)
    if value is None:
        raise _Fallback
    if not value:
        return {"vr": vr}
    if vr in ASCII_VRS or vr in CHARSET_VRS:
        text = _decode(value, vr, charsets)
        parts = [text] if vr in SINGLE_VALUED else text.split("\\")
        # Padding goes (trailing for texts, both sides otherwise): values match as sent without it.
        if vr in ("LT", "ST", "UT"):
            parts = [p.rstrip(" \x00") for p in parts]
        else:
            parts = [p.strip(" \x00") for p in parts]
        if not any(parts):
            return {"vr": vr}
        if vr == "PN":
            return {"vr": vr, "Value": [_person_name(p) for p in parts]}
        # Empty values of a multi-valued attribute are null (PS3.18 F.2.5).
        return {"vr": vr, "Value": [p if p != "" else None for p in parts]}
    if vr == "IS":
        parts = value.decode("ascii").split("\\")
        return {"vr": vr, "Value": [_is(p) for p in parts]}
    if vr == "DS":
        parts = value.decode("ascii").split("\\")
        return {"vr": vr, "Value": [_ds(p) for p in parts]}
    if vr in BINARY:
        fmt = BINARY[vr]
        size = SIZES[fmt]
        if len(value) % size:
            raise _Fallback
        return {"vr": vr, "Value": list(struct.unpack(f"<{len(value) // size}{fmt}", value))}
    if vr == "AT":
        if len(value) % 4:
            raise _Fallback
        words = struct.unpack(f"<{len(value) // 2}H", value)
        return {"vr": vr, "Value": [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]}
    if vr in BULK_VRS:
        encoded = base64.b64encode(value).decode("ascii")
        if len(encoded) > threshold:  # as pydicom: the threshold applies to the encoded length
            raise _Fallback  # the handler needs the DataElement
        return {"vr": vr, "InlineBinary": encoded}
    raise _Fallback


def _decode(value: bytes, vr: str, charsets: list[str]) -> str:
    if vr in ASCII_VRS:
        return value.decode("latin-1")
    if len(charsets) == 1 and charsets[0] in SIMPLE_CHARSETS:
        return value.decode(SIMPLE_CHARSETS[charsets[0]])
    delimiters = {0x5C, 0x3D, 0x5E} if vr == "PN" else {0x5C}
    return str(decode_bytes(value, _python_encodings(tuple(charsets)), delimiters))


@lru_cache(maxsize=64)
def _python_encodings(charsets: tuple[str, ...]) -> list[str]:
    return convert_encodings(list(charsets))  # type: ignore[no-any-return]


def _person_name(text: str) -> JSON | None:
    if not text:
        return None
    groups = text.split("=")
    out: JSON = {}
    for name, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        if group:
            out[name] = group
    return out or None


def _is(text: str) -> int | float | None:
    text = text.strip(" \x00")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "1.0" is read as an IS by pydicom too
        if not number.is_integer():
            raise
        return int(number)


def _ds(text: str) -> float | int | None:
    text = text.strip(" \x00")
    if not text:
        return None
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("DS is not finite")
    return number
