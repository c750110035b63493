"""Small asyncio helpers shared by the background loops."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True if it was set.

    Not `asyncio.wait_for(event.wait(), …)`: on Python 3.11 that call swallows a cancellation that arrives
    just as the event is set (CPython gh-86296), and a background loop built on it then never stops, so
    the server's shutdown hangs. `asyncio.timeout` propagates the cancellation."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()
    return event.is_set()
