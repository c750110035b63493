"""Decoding of inbound HL7 v2 bytes, the raw MSH header and the ACK we answer with.

Everything here works on the raw text, without hl7apy, so that even a message hl7apy cannot parse
still gets an ACK (AR) addressed to its sender.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

# MSH-18 values (HL7 table 0211) and the Python codec for each.
CHARSETS = {
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "ASCII": "ascii",
}

# HL7 table 0357 (message error condition codes) used in ERR-3.
ERR_SEGMENT_SEQUENCE = "100"
ERR_REQUIRED_FIELD_MISSING = "101"
ERR_DATA_TYPE = "102"
ERR_UNSUPPORTED_MESSAGE_TYPE = "200"
ERR_UNSUPPORTED_EVENT = "201"
ERR_APPLICATION_INTERNAL = "207"
ERR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "207": "Application internal error",
}


class HL7Reject(Exception):
    """A message we answer with an error ACK: `code` is MSA-1 (AE or AR), `err` an HL7 0357 code."""

    def __init__(self, code: str, err: str, text: str) -> None:
        super().__init__(text)
        self.code, self.err, self.text = code, err, text


@dataclass
class Processed:
    """What processing a message did: MSA-3 text and the resources written (`Type/id`), for the audit."""

    text: str
    resources: list[str] = field(default_factory=list)
    patient: str | None = None


@dataclass
class Header:
    """The raw MSH of an inbound message (field n of MSH is `field(n)`)."""

    fields: list[str]
    charset: str  # the Python codec used to decode the message

    def field(self, n: int) -> str:
        # fields[0] is "MSH", fields[1] the encoding characters (MSH-2); MSH-1 is the separator itself.
        return self.fields[n - 1] if 0 < n - 1 < len(self.fields) else ""

    def component(self, n: int, c: int) -> str:
        parts = self.field(n).split(self.fields[1][:1] or "^")
        return parts[c - 1] if c - 1 < len(parts) else ""

    @property
    def sender(self) -> str:
        return self.field(3)

    @property
    def control_id(self) -> str:
        return self.field(10)


def _msh_line(raw: bytes) -> bytes:
    start = raw.find(b"MSH")
    if start < 0:
        raise HL7Reject("AR", ERR_SEGMENT_SEQUENCE, "no MSH segment")
    end = len(raw)
    for sep in (b"\r", b"\n"):
        pos = raw.find(sep, start)
        if pos >= 0:
            end = min(end, pos)
    return raw[start:end]


def decode(raw: bytes) -> tuple[str, Header]:
    """Decode the message per MSH-18 (UTF-8 when absent) and split its MSH.

    Segment terminators are normalised to CR: the ANS examples end segments with LF.
    """
    msh = _msh_line(raw)
    if len(msh) < 8:
        raise HL7Reject("AR", ERR_SEGMENT_SEQUENCE, "truncated MSH segment")
    fields = msh.decode("latin-1").split(chr(msh[3]))
    declared = fields[17].split(fields[1][:1] or "^")[0].strip().upper() if len(fields) > 17 else ""
    codec = CHARSETS.get(declared, "utf-8")
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        codec = "latin-1"  # declared UTF-8 (or nothing) but sent in ISO-8859-1: read it rather than reject
        text = raw.decode(codec)
    text = text[text.find("MSH") :]
    lines = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s.strip()]
    separator = lines[0][3]
    segments: list[str] = []
    for line in lines:
        # A line that does not start a segment is the rest of the previous one, cut by a stray line
        # break inside a field (the DRIMbox proof of concept's ORU has one in an OBX label).
        # (Only lines that do not even look like "XXX|..." are joined: a bad segment name is refused.)
        looks_like_segment = len(line) >= 3 and separator not in line[:3] and line[3:4] in ("", separator)
        if segments and not looks_like_segment:
            segments[-1] += line
        else:
            segments.append(line)
    text = "\r".join(segments)
    header_fields = segments[0].split(separator)
    return text, Header(header_fields, codec)


def hl7_timestamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")


def _escape(text: str) -> str:
    """Escape text for the ACK, which always uses the standard separators |^~\\&."""
    out = text.replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("~", "R"), ("&", "T")):
        out = out.replace(char, f"\\{code}\\")
    return out.replace("\r", " ").replace("\n", " ")


def build_ack(header: Header | None, code: str, text: str = "", err: str | None = None) -> str:
    """An ACK (HL7 2.5 layout) for the message whose MSH is `header`, MSA-1 = `code` (AA/AE/AR)."""
    h = header or Header(["MSH", "^~\\&"], "utf-8")
    trigger = h.component(9, 2)
    msg_type = f"ACK^{trigger}^ACK" if trigger else "ACK"
    version = h.field(12) or "2.5"
    charset = h.field(18)
    msh = [
        "MSH",
        "^~\\&",
        h.field(5) or "FHIR-SERVER",
        h.field(6),
        h.field(3),
        h.field(4),
        hl7_timestamp(),
        "",
        msg_type,
        uuid.uuid4().hex[:20],
        h.field(11) or "P",
        version,
        "",
        "",
        "",
        "",
        h.field(17),
        charset,
    ]
    segments = ["|".join(msh).rstrip("|"), "|".join(["MSA", code, h.control_id, _escape(text)]).rstrip("|")]
    if err:
        severity = "E"
        err_fields = ["ERR", "", "", f"{err}^{ERR_TEXT.get(err, '')}^HL70357", severity, "", "", "", _escape(text)]
        segments.append("|".join(err_fields))
    return "\r".join(segments) + "\r"
