"""date parameters.

Every date, dateTime, instant, Period and Timing is indexed as the UTC range it denotes:
`i.<p>` = {"lo": [..], "hi": [..], "eq": [..]} where lo/hi are fixed-width strings
`YYYY-MM-DDTHH:MM:SS.ffffffZ` (so string order is time order) and `eq` holds calendar-unit keys: for each
unit Y, M, D, h, m, s in which lo and hi fall in the same unit, "<unit><truncated value>" ("Y2000",
"M2000-01", "D2000-01-01", "h2000-01-01T10", "m2000-01-01T10:05", "s2000-01-01T10:05:07").
Values without a time zone are taken as UTC; an open Period end is 9999-12-31T23:59:59.999999Z, an open
start 0001-01-01T00:00:00.000000Z; Timing contributes each event and repeat.boundsPeriod.

Query value q (prefix + date), [qlo, qhi] its own range, key its eq-key at its precision (an offset is
converted to UTC; fractional seconds are searched at second precision):
  eq {"i.p.eq": key}                          ne {"i.p.eq": {"$ne": key}}
  gt {"i.p.hi": {"$gt": qhi}}                 lt {"i.p.lo": {"$lt": qlo}}
  ge {"$or": [{"i.p.hi": {"$gt": qhi}}, {"i.p.eq": key}]}
  le {"$or": [{"i.p.lo": {"$lt": qlo}}, {"i.p.eq": key}]}
  sa {"i.p.lo": {"$gt": qhi}}                 eb {"i.p.hi": {"$lt": qlo}}
  ap {"$and": [{"i.p.lo": {"$lte": whi}}, {"i.p.hi": {"$gte": wlo}}]}: [qlo, qhi] widened on both sides by
     10% of |now - qlo|, at least one day.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from fhir_server.search.common import (
    IndexContext,
    Item,
    QueryContext,
    any_of,
    check_modifier,
    split_prefix,
    unescape,
    unique,
)
from fhir_server.search.errors import SearchError
from fhir_server.search.registry import SearchParam

MODIFIERS: frozenset[str] = frozenset()

# Ranges are naive datetimes in UTC: aware ones cost twice as much to build and format, on every write.
MIN = datetime(1, 1, 1)
MAX = datetime(9999, 12, 31, 23, 59, 59, 999999)
MIN_TS = "0001-01-01T00:00:00.000000Z"
MAX_TS = "9999-12-31T23:59:59.999999Z"
# Unit letter -> length of the timestamp prefix it keeps.
UNITS = (("Y", 4), ("M", 7), ("D", 10), ("h", 13), ("m", 16), ("s", 19))
_UNIT_LEN = dict(UNITS)

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class DateRange(NamedTuple):
    lo: datetime  # naive, UTC
    hi: datetime
    unit: str  # precision: Y M D h m s, or "f" for fractional seconds


def ts(value: datetime) -> str:
    """Fixed-width timestamp of a naive UTC datetime (isoformat zero-pads years before 1000)."""
    return value.isoformat(timespec="microseconds") + "Z"


def _shift(value: datetime, offset: timedelta) -> datetime:
    """value - offset, clamped to the representable years (0001-01-01+02:00 would underflow)."""
    try:
        return value - offset
    except OverflowError:
        return MIN if offset > timedelta(0) else MAX


def _end_of(lo: datetime, unit: str, frac_digits: int) -> datetime:
    """The last microsecond of the `unit` starting at `lo` (constructors: `replace` is slow)."""
    y, mo, d, h, mi, s = lo.year, lo.month, lo.day, lo.hour, lo.minute, lo.second
    if unit == "s":
        return datetime(y, mo, d, h, mi, s, 999999)
    if unit == "f":
        return lo + timedelta(microseconds=10 ** max(0, 6 - frac_digits) - 1)
    if unit == "m":
        return datetime(y, mo, d, h, mi, 59, 999999)
    if unit == "h":
        return datetime(y, mo, d, h, 59, 59, 999999)
    if unit == "D":
        return datetime(y, mo, d, 23, 59, 59, 999999)
    if unit == "M":
        return datetime(y, mo, calendar.monthrange(y, mo)[1], 23, 59, 59, 999999)
    return datetime(y, 12, 31, 23, 59, 59, 999999)


def parse_date(text: str) -> DateRange | None:
    """The UTC range denoted by a FHIR date/dateTime/instant (also hour/minute precision), or None."""
    m = _DATE.match(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, f, tz = m.groups()
    # Precision: the most precise part present.
    unit = "f" if f else "s" if s else "m" if mi else "h" if h else "D" if d else "M" if mo else "Y"
    try:
        micro = int((f + "00000")[:6]) if f else 0
        lo = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), micro)
    except ValueError:
        return None
    hi = _end_of(lo, unit, len(f) if f else 0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        lo, hi = _shift(lo, offset), _shift(hi, offset)
    return DateRange(lo, hi, unit)


def eq_keys(lo: str, hi: str) -> list[str]:
    keys = []
    for unit, n in UNITS:
        if lo[:n] != hi[:n]:  # units are nested: no finer one can match either
            break
        keys.append(unit + lo[:n])
    return keys


# ---------------------------------------------------------------------------------------------------
# Index


def _ranges(item: Item) -> list[tuple[str, str]]:
    value = item.value
    if isinstance(value, str):
        if item.type == "string":  # performedString "last spring": free text, not a date
            return []
        rng = parse_date(value)
        return [(ts(rng.lo), ts(rng.hi))] if rng else []
    if not isinstance(value, dict):
        return []
    if item.type == "Timing" or "event" in value or "repeat" in value:
        out = [r for event in value.get("event") or () for r in _ranges(Item(event, "dateTime"))]
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if isinstance(bounds, dict):
            out.extend(_ranges(Item(bounds, "Period")))
        return out
    if "start" in value or "end" in value:  # Period
        start = parse_date(value["start"]) if isinstance(value.get("start"), str) else None
        end = parse_date(value["end"]) if isinstance(value.get("end"), str) else None
        if start is None and end is None:
            return []
        return [(ts(start.lo) if start else MIN_TS, ts(end.hi) if end else MAX_TS)]
    return []


def index(items: list[Item], param: SearchParam, ctx: IndexContext) -> dict[str, list[str]]:
    lo: list[str] = []
    hi: list[str] = []
    eq: list[str] = []
    for item in items:
        for low, high in _ranges(item):
            lo.append(low)
            hi.append(high)
            eq.extend(eq_keys(low, high))
    if not lo:
        return {}
    out = {"lo": unique(lo), "hi": unique(hi)}
    if eq:
        out["eq"] = unique(eq)
    return out


# ---------------------------------------------------------------------------------------------------
# Query

# A `+` in an unencoded query string arrives as a space: "2020-01-01T10:00:00 02:00".
_SPACE_OFFSET = re.compile(r" (\d{2}:\d{2})$")


def parse_query_date(text: str) -> DateRange:
    text = _SPACE_OFFSET.sub(r"+\1", text)
    rng = parse_date(text)
    if rng is None:
        raise SearchError(f"invalid date {text!r} (expected YYYY[-MM[-DD[Thh:mm[:ss][Z|+hh:mm]]]])")
    if rng.unit == "f":  # searched at second precision
        lo = rng.lo.replace(microsecond=0)
        rng = DateRange(lo, _end_of(lo, "s", 0), "s")
    return rng


def _approximate(rng: DateRange, now: datetime) -> tuple[str, str]:
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    margin = max(abs(now - rng.lo) * 0.1, timedelta(days=1))
    low = MIN if rng.lo - MIN < margin else rng.lo - margin
    high = MAX if MAX - rng.hi < margin else rng.hi + margin
    return ts(low), ts(high)


def predicate(field: str, raw: str, ctx: QueryContext) -> dict[str, Any]:
    prefix, text = split_prefix(unescape(raw))
    rng = parse_query_date(text)
    qlo, qhi = ts(rng.lo), ts(rng.hi)
    key = f"{rng.unit}{qlo[: _UNIT_LEN[rng.unit]]}"
    lo, hi, eq = f"{field}.lo", f"{field}.hi", f"{field}.eq"
    if prefix == "eq":
        return {eq: key}
    if prefix == "ne":
        return {eq: {"$ne": key}}
    if prefix == "gt":
        return {hi: {"$gt": qhi}}
    if prefix == "lt":
        return {lo: {"$lt": qlo}}
    if prefix == "ge":
        return {"$or": [{hi: {"$gt": qhi}}, {eq: key}]}
    if prefix == "le":
        return {"$or": [{lo: {"$lt": qlo}}, {eq: key}]}
    if prefix == "sa":
        return {lo: {"$gt": qhi}}
    if prefix == "eb":
        return {hi: {"$lt": qlo}}
    wlo, whi = _approximate(rng, ctx.now)  # ap
    return {"$and": [{lo: {"$lte": whi}}, {hi: {"$gte": wlo}}]}


def build(
    field: str, param: SearchParam, modifier: str | None, alternatives: list[str], ctx: QueryContext
) -> dict[str, Any]:
    check_modifier(modifier, MODIFIERS, "date")
    return any_of([predicate(field, raw, ctx) for raw in alternatives])
