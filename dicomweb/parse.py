"""Reading one DICOM Part-10 instance once, at ingest: keys, metadata and the byte map of its bulk data.

The metadata (DICOM JSON, PS3.18 F.2) goes to MongoDB; large binary values (pixel data, waveforms,
encapsulated documents) stay only in the blob and are listed with their byte offsets, so WADO-RS
frames and bulk data are served as byte ranges of the stored file, without parsing it again. Large
top-level values are not even read at ingest (pydicom's deferred reading), so an instance's pixel
data is never in memory here.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomweb.fast_json import dataset_json

# Binary values at least this long are bulk data: BulkDataURI in the metadata, bytes in the blob only.
BULK_THRESHOLD = 1024
# Top-level values this long are not read at ingest (deferred): binary ones become bulk data with their
# byte range, text ones are read on their own.
DEFER_SIZE = BULK_THRESHOLD
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
PIXEL_DATA = 0x7FE00010
EXTENDED_OFFSET_TABLE = 0x7FE00001
ITEM, SEQ_DELIM = 0xFFFEE000, 0xFFFEE0DD


class InvalidInstance(Exception):
    """The bytes are not a storable DICOM instance; `reason` says why (returned to the sender)."""

    def __init__(self, reason: str, failure_code: int = 0xC000) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure_code = failure_code  # DICOM Failure Reason (0008,1197) for STOW-RS / C-STORE


@dataclass
class ParsedInstance:
    sop_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    dataset: Dataset  # without the deferred bulk values
    meta: dict[str, Any]  # DICOM JSON; bulk values carry a relative BulkDataURI "bulkdata/<path>"
    bulk: dict[str, list[int] | None]  # bulk data path ("7FE00010", "54000100/0/54001010") -> [offset, length]
    bulk_vr: dict[str, str] = field(default_factory=dict)  # top-level bulk tag -> VR
    pixels: dict[str, Any] | None = None  # see pixel_map()
    frames: int = 1
    warnings: list[str] = field(default_factory=list)


def _uid(ds: Dataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "").strip().rstrip("\x00")
    if not value:
        raise InvalidInstance(f"{keyword} is missing", 0xA900)
    if len(value) > 64 or not UID_RE.match(value):
        raise InvalidInstance(f"{keyword} {value[:80]!r} is not a valid UID", 0xA900)
    return value


def parse(fp: BinaryIO) -> ParsedInstance:
    """Parse a Part-10 stream (positioned at its start). Raises InvalidInstance."""
    try:
        ds = dcmread(fp, defer_size=DEFER_SIZE)
    except (InvalidDicomError, EOFError, struct.error, ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise InvalidInstance(f"not a readable DICOM Part-10 file: {exc}") from None
    meta_ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    if not meta_ts:
        raise InvalidInstance("the file meta information has no TransferSyntaxUID")
    sop_uid = _uid(ds, "SOPInstanceUID")
    parsed = ParsedInstance(
        sop_uid=sop_uid,
        sop_class_uid=_uid(ds, "SOPClassUID"),
        study_uid=_uid(ds, "StudyInstanceUID"),
        series_uid=_uid(ds, "SeriesInstanceUID"),
        transfer_syntax_uid=meta_ts,
        dataset=ds,
        meta={},
        bulk={},
    )
    media_sop = str(ds.file_meta.get("MediaStorageSOPInstanceUID", "") or "").strip()
    if media_sop and media_sop != sop_uid:
        parsed.warnings.append("MediaStorageSOPInstanceUID differs from SOPInstanceUID")
    deflated = meta_ts == DeflatedExplicitVRLittleEndian
    try:
        parsed.frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        parsed.frames = 1
    # Deferred top-level values: binary ones are bulk data (kept as byte ranges), text ones are read now.
    for tag in list(ds._dict):
        raw = ds._dict[tag]
        if not isinstance(raw, RawDataElement) or raw.length == 0:
            continue
        vr = raw.VR or _implicit_vr(ds, tag)
        if tag == PIXEL_DATA and not raw.VR:  # implicit VR: OW for words, OB for bytes (PS3.5 A.1)
            vr = "OW" if int(ds.get("BitsAllocated", 8) or 8) > 8 else "OB"
        is_bulk = tag == PIXEL_DATA or (vr in BINARY_VRS and raw.length >= BULK_THRESHOLD)
        if not is_bulk and raw.value is not None:
            continue
        if is_bulk:
            key = f"{int(tag):08X}"
            defined = raw.length != 0xFFFFFFFF
            parsed.bulk[key] = None if deflated else [raw.value_tell, raw.length if defined else -1]
            if tag == PIXEL_DATA and not deflated:
                parsed.pixels = pixel_map(fp, ds, raw.value_tell, raw.length, parsed.frames, meta_ts)
            del ds[tag]
            parsed.bulk_vr[key] = vr
        else:
            fp.seek(raw.value_tell)
            ds._dict[tag] = raw._replace(value=fp.read(raw.length))
    parsed.meta = to_json(ds, parsed)
    for key, vr in parsed.bulk_vr.items():
        parsed.meta[key] = {"vr": vr, "BulkDataURI": f"bulkdata/{key}"}
    return parsed


def _implicit_vr(ds: Dataset, tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def to_json(ds: Dataset, parsed: ParsedInstance) -> dict[str, Any]:
    """DICOM JSON of the dataset; binary values over BULK_THRESHOLD inside sequences get a BulkDataURI
    with their path (served by parsing the instance, a rare case), top-level ones were removed before."""
    paths: dict[int, str] = {}
    _collect_nested_bulk(ds, "", paths, top=True)

    def handler(elem: DataElement) -> str:
        path = paths.get(id(elem))
        if path is None:  # not expected; keep the URI resolvable anyway
            path = f"{int(elem.tag):08X}"
        parsed.bulk.setdefault(path, None)
        return f"bulkdata/{path}"

    try:
        return dataset_json(ds, BULK_THRESHOLD, handler)
    except Exception as exc:  # a value pydicom cannot render even with suppression
        raise InvalidInstance(f"the dataset cannot be converted to DICOM JSON: {exc}") from None


def _collect_nested_bulk(ds: Dataset, prefix: str, paths: dict[int, str], *, top: bool) -> None:
    """Paths of the binary values inside sequences (top-level bulk values were taken out before).

    Only sequences are walked: looking at the raw VR first avoids converting every element twice
    (to_json_dict converts them anyway), which halves the ingest parsing time.
    """
    for tag, raw in list(ds._dict.items()):
        vr = raw.VR
        if vr is None:
            vr = _implicit_vr(ds, int(tag))
        if vr == "SQ":
            elem = ds[tag]
            key = f"{prefix}{int(tag):08X}"
            for i, item in enumerate(elem.value or []):
                _collect_nested_bulk(item, f"{key}/{i}/", paths, top=False)
        elif vr in BINARY_VRS:
            elem = ds[tag]
            paths[id(elem)] = f"{prefix}{int(tag):08X}"


# ---- pixel data byte map --------------------------------------------------------------------------


def pixel_map(fp: BinaryIO, ds: Dataset, offset: int, length: int, frames: int, ts: str) -> dict[str, Any] | None:
    """Where each frame's bytes are in the file.

    Native: `{"enc": False, "off", "len", "fsize"}` (frame i at off + i*fsize). Encapsulated:
    `{"enc": True, "off", "frames": [{"o": [fragment offsets], "n": [lengths]}, ...]}`, or frames None when the
    fragments cannot be attributed to frames (then frames are served by decoding with pydicom).
    """
    if length != 0xFFFFFFFF:
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
            bits, spp = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            return {"enc": False, "off": offset, "len": length, "fsize": None}
        fsize = rows * cols * spp * bits // 8 if bits % 8 == 0 else None
        if fsize is not None and fsize * frames > length:
            fsize = None
        # Big endian words would need swapping: frames of those are decoded by pydicom.
        if ts == "1.2.840.10008.1.2.2":
            fsize = None
        return {"enc": False, "off": offset, "len": length, "fsize": fsize}
    try:
        items = _items(fp, offset)
    except (struct.error, ValueError):
        return {"enc": True, "off": offset, "frames": None}
    if not items:
        return {"enc": True, "off": offset, "frames": None}
    bot_off, bot_len = items[0]
    frags = items[1:]
    mapped = _frames_of(fp, ds, frags, bot_off, bot_len, frames)
    # FerretDB v1 stores no arrays directly inside arrays: one {o: offsets, n: lengths} per frame.
    encoded = None if mapped is None else [{"o": [f[0] for f in fr], "n": [f[1] for f in fr]} for fr in mapped]
    return {"enc": True, "off": offset, "frames": encoded}


def _items(fp: BinaryIO, offset: int) -> list[tuple[int, int]]:
    """(data offset, length) of each item of an encapsulated value, basic offset table first."""
    fp.seek(offset)
    out: list[tuple[int, int]] = []
    while True:
        head = fp.read(8)
        if len(head) < 8:
            raise ValueError("truncated encapsulated pixel data")
        group, elem, ln = struct.unpack("<HHI", head)
        tag = (group << 16) | elem
        if tag == SEQ_DELIM:
            return out
        if tag != ITEM or ln == 0xFFFFFFFF:
            raise ValueError("bad item in encapsulated pixel data")
        out.append((fp.tell(), ln))
        fp.seek(ln, 1)


def _frames_of(
    fp: BinaryIO, ds: Dataset, frags: list[tuple[int, int]], bot_off: int, bot_len: int, frames: int
) -> list[list[list[int]]] | None:
    if not frags:
        return None
    pairs = [[o, n] for o, n in frags]
    if frames == 1:
        return [pairs]
    first_item = frags[0][0] - 8  # offsets in the tables count from the first fragment's item tag
    starts: list[int] | None = None
    if bot_len >= 4 * frames:
        fp.seek(bot_off)
        starts = list(struct.unpack(f"<{bot_len // 4}I", fp.read(bot_len)))
    elif EXTENDED_OFFSET_TABLE in ds:
        raw = ds[EXTENDED_OFFSET_TABLE].value
        starts = list(struct.unpack(f"<{len(raw) // 8}Q", raw))
    if starts and len(starts) == frames:
        out: list[list[list[int]]] = [[] for _ in range(frames)]
        bounds = [*starts[1:], None]
        f = 0
        for off, n in frags:
            rel = off - 8 - first_item
            while bounds[f] is not None and rel >= bounds[f]:  # type: ignore[operator]
                f += 1
            out[f].append([off, n])
        return out if all(out) else None
    if len(frags) == frames:
        return [[p] for p in pairs]
    # No table: a new frame starts at each fragment that starts with a codestream marker.
    out2: list[list[list[int]]] = []
    for off, n in frags:
        fp.seek(off)
        head = fp.read(12)
        if head[:2] == b"\xff\xd8" or head[:4] == b"\xff\x4f\xff\x51" or head[4:8] == b"jP  " or not out2:
            out2.append([])
        out2[-1].append([off, n])
    return out2 if len(out2) == frames else None


def is_implicit(ts: str) -> bool:
    return ts == ImplicitVRLittleEndian
