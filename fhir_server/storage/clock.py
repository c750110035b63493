"""Timestamps as stored: UTC, millisecond precision (what BSON dates keep)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_ms() -> datetime:
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def fhir_instant(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
