"""Content negotiation for WADO-RS (PS3.18 8.7): q-valued Accept lists, media types, transfer syntaxes.

Accept lists are read as inter-DRIMbox requests write them, e.g.
`multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.70;q=0.9;boundary=**,…,`
(parameters after `q` are accept-extensions and ignored; a trailing comma is tolerated). For each
instance the best acceptable choice wins: its stored transfer syntax when accepted (or `*`), else a
lossless conversion pydicom can do (decoding to Explicit/Implicit VR Little Endian); nothing
acceptable answers 406. Without a transfer-syntax parameter, application/dicom means Explicit VR
Little Endian (PS3.18 Table 8.7.3-2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE = frozenset({EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED})
# What we can produce from another transfer syntax without loss.
TRANSCODE_TARGETS = frozenset({EXPLICIT_LE, IMPLICIT_LE})

# Media type of compressed pixel data (frames) per transfer syntax (PS3.18 Table 8.7.3-5).
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.100": "video/mpeg2",
    "1.2.840.10008.1.2.4.101": "video/mpeg2",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
MEDIA_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}


class NotAcceptable(Exception):
    pass


@dataclass
class MediaRange:
    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0
    order: int = 0

    @property
    def part_type(self) -> str:
        """For multipart/related: the type of its parts ("" when not given)."""
        return MEDIA_ALIASES.get(self.params.get("type", "").lower(), self.params.get("type", "").lower())

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes."""
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges sorted by preference (q descending, then order of appearance); q=0 dropped."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges: list[MediaRange] = []
    for order, item in enumerate(_split(header, ",")):
        pieces = [p.strip() for p in _split(item, ";")]
        if not pieces or not pieces[0]:
            continue
        media = MEDIA_ALIASES.get(pieces[0].lower(), pieces[0].lower())
        rng = MediaRange(media, order=order)
        seen_q = False
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if seen_q:
                continue  # accept-extension (e.g. boundary=**)
            if name == "q":
                seen_q = True
                try:
                    rng.q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    rng.q = 1.0
            elif name:
                rng.params[name] = value
        if rng.q > 0:
            ranges.append(rng)
    ranges.sort(key=lambda r: (-r.q, r.order))
    return ranges


@cache
def can_decode(ts: str) -> bool:
    if ts in NATIVE:
        return True
    try:
        from pydicom.pixels import get_decoder

        return get_decoder(ts).is_available  # type: ignore[no-any-return]
    except (NotImplementedError, ValueError, KeyError):
        return False


def can_produce(stored: str, wanted: str) -> bool:
    return wanted == stored or (wanted in TRANSCODE_TARGETS and can_decode(stored))


def dicom_choices(ranges: list[MediaRange]) -> list[str]:
    """The acceptable transfer syntaxes (or "*") for application/dicom parts, best first."""
    out: list[str] = []
    for r in ranges:
        if r.type == "multipart/related":
            if r.part_type not in ("", "application/dicom", "application/*", "*/*"):
                continue
        elif r.type not in ("application/dicom", "*/*", "multipart/*", "application/*"):
            continue
        ts = r.transfer_syntax or EXPLICIT_LE
        if ts not in out:
            out.append(ts)
    return out


def choose_syntax(stored: str, choices: list[str]) -> str | None:
    for ts in choices:
        if ts == "*":
            return stored
        if can_produce(stored, ts):
            return ts
    return None


def wants_multipart_dicom(ranges: list[MediaRange]) -> bool:
    return bool(dicom_choices(ranges))


UID_RE = re.compile(r"^[0-9.]+$")


@dataclass(frozen=True)
class FrameChoice:
    """How to send frames: `raw` (uncompressed little endian, application/octet-stream) or as stored."""

    raw: bool
    media_type: str
    transfer_syntax: str


def frame_choice(stored: str, ranges: list[MediaRange]) -> FrameChoice:
    """Choose the frame encoding for an instance stored in `stored`; NotAcceptable when none fits."""
    stored_media = "application/octet-stream" if stored in NATIVE else FRAME_MEDIA_TYPES.get(stored, "")
    for r in ranges:
        media = r.part_type if r.type == "multipart/related" else r.type
        if media in ("", "*/*", "multipart/*", "image/*", "video/*") or r.type == "*/*":
            if media in ("image/*",) and not stored_media.startswith("image/"):
                continue
            if media in ("video/*",) and not stored_media.startswith("video/"):
                continue
            if stored in NATIVE:
                return FrameChoice(True, "application/octet-stream", EXPLICIT_LE)
            return FrameChoice(False, stored_media, stored)
        ts = r.transfer_syntax
        if media == "application/octet-stream":
            if ts in (None, EXPLICIT_LE) and can_decode(stored):
                return FrameChoice(True, media, EXPLICIT_LE)
            if ts == "*":
                if stored in NATIVE:
                    return FrameChoice(True, media, EXPLICIT_LE)
                return FrameChoice(False, stored_media, stored)
            continue
        if media == stored_media and stored not in NATIVE and ts in (None, "*", stored):
            return FrameChoice(False, stored_media, stored)
    raise NotAcceptable(f"the frames are stored as {stored} and cannot be sent in an acceptable media type")


def rendered_choice(ranges: list[MediaRange]) -> str:
    for r in ranges:
        media = r.part_type if r.type == "multipart/related" else r.type
        if media in ("image/jpeg", "image/png"):
            return media
        if media in ("*/*", "image/*", ""):
            return "image/jpeg"
    raise NotAcceptable("rendered images are available as image/jpeg or image/png")
