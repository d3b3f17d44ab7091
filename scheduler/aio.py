"""Small asyncio helpers shared by the service and the link."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait for ``event`` at most ``timeout_s``; True if it was set.

    Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation that
    arrives as the event is set, and a cancelled link would then run on.
    """
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await event.wait()
    except TimeoutError:
        return False
    return True
