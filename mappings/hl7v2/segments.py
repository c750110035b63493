"""A fast, tolerant reader of HL7 v2 ER7 text: segments, fields, repetitions, components, escapes.

Why not hl7apy for reading: it rejects the ANS examples this server must accept (PRT segments in 2.5
and 2.6 messages, a U+02DC repetition separator) and builds an object per component, about 40 ms for
a ten-segment ADT message. hl7apy builds the messages we send (`outbound.py`); reading is done here,
on the message's own encoding characters, with HL7 escape sequences undone on the values we map.

Field numbering is HL7's: `seg.field(n)` is SEG-n for every segment, MSH included (MSH-1 is the
field separator, MSH-2 the encoding characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from mappings.hl7v2.ack import ERR_DATA_TYPE, ERR_SEGMENT_SEQUENCE, HL7Reject

SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


@dataclass(frozen=True)
class Encoding:
    field: str = "|"
    comp: str = "^"
    rep: str = "~"
    esc: str = "\\"
    sub: str = "&"

    @classmethod
    def from_msh(cls, msh_line: str) -> Encoding:
        sep = msh_line[3:4] or "|"
        chars = msh_line[4:].split(sep, 1)[0]
        defaults = "^~\\&"
        chars = (chars + defaults[len(chars) :])[:4]
        return cls(sep, chars[0], chars[1], chars[2], chars[3])

    def unescape(self, value: str) -> str:
        """Undo HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\X..\\ \\.br\\); unknown ones are dropped."""
        e = self.esc
        if e not in value:
            return value
        simple = {"F": self.field, "S": self.comp, "T": self.sub, "R": self.rep, "E": e, ".br": "\n"}

        def replace(match: re.Match[str]) -> str:
            code = match.group(1)
            if code in simple:
                return simple[code]
            if code.startswith("X") and len(code) > 1:
                try:
                    return bytes.fromhex(code[1:]).decode("utf-8", errors="replace")
                except ValueError:
                    return ""
            return ""  # highlighting (\H\, \N\) and other formatting escapes carry no text

        return re.sub(re.escape(e) + r"([^" + re.escape(e) + r"]{1,40})" + re.escape(e), replace, value)

    def escape(self, value: str) -> str:
        """Escape free text for one component of a message we build with these separators."""
        out = value.replace(self.esc, f"{self.esc}E{self.esc}")
        for char, code in ((self.field, "F"), (self.comp, "S"), (self.rep, "R"), (self.sub, "T")):
            out = out.replace(char, f"{self.esc}{code}{self.esc}")
        return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{self.esc}.br{self.esc}")


@dataclass
class Segment:
    name: str
    fields: list[str]  # fields[n] is SEG-n (raw ER7); fields[0] is the name
    enc: Encoding

    def field(self, n: int) -> str:
        return self.fields[n] if 0 < n < len(self.fields) else ""

    def reps(self, n: int) -> list[str]:
        """The non-empty repetitions of field n (raw ER7)."""
        raw = self.field(n)
        if not raw or (self.name == "MSH" and n in (1, 2)):
            return [raw] if raw else []
        return [r for r in raw.split(self.enc.rep) if r.strip()]

    def comps(self, n: int, count: int = 0, rep: int = 0) -> list[str]:
        """The raw components of repetition `rep` of field n, padded to `count`."""
        reps = self.reps(n)
        raw = reps[rep] if rep < len(reps) else ""
        parts = raw.split(self.enc.comp) if raw else []
        return parts + [""] * (count - len(parts))

    def comp(self, n: int, c: int = 1, rep: int = 0) -> str:
        """Component c of field n, first sub-component, unescaped and stripped."""
        parts = self.comps(n, c, rep)
        return self.enc.unescape(parts[c - 1].split(self.enc.sub)[0]).strip()

    def text(self, n: int) -> str:
        """Field n as text (first repetition, first component), unescaped."""
        return self.comp(n, 1)


@dataclass
class Message:
    segments: list[Segment]
    enc: Encoding
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))

    @classmethod
    def parse(cls, text: str, tz: str | ZoneInfo = "Europe/Paris") -> Message:
        """`text` is what `ack.decode` returns: segments separated by CR, MSH first."""
        lines = [s for s in text.split("\r") if s.strip()]
        if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
            raise HL7Reject("AR", ERR_SEGMENT_SEQUENCE, "the message does not start with an MSH segment")
        enc = Encoding.from_msh(lines[0])
        segments: list[Segment] = []
        for line in lines:
            name = line[:3]
            if not SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != enc.field):
                raise HL7Reject("AR", ERR_SEGMENT_SEQUENCE, f"invalid segment {line[:20]!r}")
            parts = line.split(enc.field)
            if name == "MSH":
                # MSH-1 is the separator itself: shift so that fields[n] is MSH-n.
                parts = ["MSH", enc.field, *parts[1:]]
            segments.append(Segment(name, parts, enc))
        return cls(segments, enc, tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz))

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    @property
    def message_type(self) -> str:
        return self.msh.comp(9, 1).upper()

    @property
    def trigger(self) -> str:
        return self.msh.comp(9, 2).upper()

    @property
    def control_id(self) -> str:
        return self.msh.text(10)

    @property
    def sender(self) -> str:
        return self.msh.comp(3, 1)

    # ---- typed values ---------------------------------------------------------------------------

    def date(self, value: str, where: str) -> str | None:
        """An HL7 DT/DTM value as a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD); AR when malformed."""
        value = value.strip()
        if not value:
            return None
        m = re.match(r"^(\d{4})(\d{2})?(\d{2})?", value)
        if not m or not _valid_date(*m.groups()):
            raise HL7Reject("AR", ERR_DATA_TYPE, f"{where}: {value!r} is not a date")
        return "-".join(x for x in m.groups() if x)

    def datetime(self, value: str, where: str, *, instant: bool = False) -> str | None:
        """An HL7 DTM as a FHIR dateTime (or instant: seconds and offset always present); AR when malformed.

        Timestamps sent without an offset are read in the configured time zone (FHIR_HL7V2_TIMEZONE).
        """
        value = value.strip()
        if not value:
            return None
        m = re.match(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$", value)
        if not m or not _valid_date(*m.groups()[:3]):
            raise HL7Reject("AR", ERR_DATA_TYPE, f"{where}: {value!r} is not a date/time")
        y, mo, d, h, mi, s, offset = m.groups()
        if h is None and not instant:
            return "-".join(x for x in (y, mo, d) if x)
        try:
            if offset:
                stamp = datetime.strptime(
                    f"{y}{mo or '01'}{d or '01'}{h or '00'}{mi or '00'}{s or '00'}{offset}", "%Y%m%d%H%M%S%z"
                )
            else:
                stamp = datetime(
                    int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), tzinfo=self.tz
                )
        except ValueError:
            raise HL7Reject("AR", ERR_DATA_TYPE, f"{where}: {value!r} is not a date/time") from None
        return stamp.isoformat()


def _valid_date(y: str | None, mo: str | None, d: str | None) -> bool:
    try:
        datetime(int(y or 0), int(mo or 1), int(d or 1))
    except ValueError:
        return False
    return True


def is_oid(value: str) -> bool:
    return bool(OID_RE.match(value or ""))
