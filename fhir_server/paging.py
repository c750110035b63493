"""Opaque, stateless paging cursors and the links of a searchset/history Bundle.

A cursor carries the sort key of the last entry of a page, so the next page is "entries after this
key" (keyset paging): pages stay correct while data changes, and no server state is kept, so any
instance behind a load balancer can serve the next page.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.errors import FHIRError

CURSOR_PARAM = "_cursor"


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(token: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise FHIRError(400, "invalid paging cursor", code="invalid") from None


def page_url(base: str, params: list[tuple[str, str]], cursor: str | None = None) -> str:
    kept = [(k, v) for k, v in params if k != CURSOR_PARAM]
    if cursor is not None:
        kept.append((CURSOR_PARAM, cursor))
    return base + ("?" + urlencode(kept) if kept else "")


def parse_count(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise FHIRError(400, f"_count must be a non-negative integer, not {raw!r}", code="invalid")
    return min(int(raw), maximum)
