"""How the long-running workers sleep: until one of their events is set, or a poll interval has passed."""

from __future__ import annotations

import asyncio


async def first_of(*events: asyncio.Event, within: float) -> None:
    """Return when one of `events` is set, or after `within` seconds, whichever comes first."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
