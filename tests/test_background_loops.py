"""Background loops (outboxes, job queue, audit trail) wait on an asyncio.Event between rounds; a shutdown
that cancels them just as the event is set must still stop them (a loop that swallows the cancellation
hangs the server's shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from fhir_server.aio import wait_event


async def _old_wait(event: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def _stops_when_cancelled_as_woken(wait: Callable[[asyncio.Event, float], Awaitable[bool]]) -> bool:
    """Run a loop like ours, wake it and cancel it at every interleaving; True if it always stopped."""
    for ticks in range(4):
        event = asyncio.Event()

        async def loop(event: asyncio.Event = event) -> None:
            while True:
                await wait(event, 5.0)
                event.clear()

        task = asyncio.create_task(loop())
        await asyncio.sleep(0.01)
        event.set()
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
    return True


async def test_a_loop_woken_and_cancelled_at_once_stops() -> None:
    assert await _stops_when_cancelled_as_woken(wait_event)


async def test_wait_event_reports_set_or_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 5.0) is True


@pytest.mark.skipif(
    __import__("sys").version_info >= (3, 12), reason="the wait_for race is CPython 3.11's (fixed in 3.12)"
)
async def test_the_race_wait_event_avoids_is_real_on_this_python() -> None:
    """Why fhir_server.aio exists: the plain wait_for pattern loses the cancellation here."""
    assert not await _stops_when_cancelled_as_woken(_old_wait)
