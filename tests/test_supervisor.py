"""The service's tasks stop each its own way, within its bound; one that does not is named and cancelled."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from bridge.supervisor import Stops, SupervisedTask, Supervisor


def sleeping(cancelled: asyncio.Event) -> Callable[[], Coroutine[Any, Any, None]]:
    """A task that pays no heed to the stop event: it sleeps until it is cancelled, and notes that it was."""

    async def sleep() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return sleep


@pytest.fixture
def warned(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What the supervisor has warned of so far."""
    caplog.set_level(logging.WARNING, logger="bridge.supervisor")
    return lambda: [record.getMessage() for record in caplog.records if record.name == "bridge.supervisor"]


async def test_a_task_that_ignores_the_stop_is_cancelled_after_its_bound_and_named_once(
    warned: Callable[[], list[str]],
) -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop)
    cancelled = asyncio.Event()

    async def heeding() -> None:
        await stop.wait()

    supervisor.start(SupervisedTask("deaf", sleeping(cancelled), Stops.ON_EVENT, within_s=0.3))
    supervisor.start(SupervisedTask("heeding", heeding, Stops.ON_EVENT, within_s=0.3))
    await asyncio.sleep(0)
    asked = time.monotonic()
    await supervisor.stop()
    assert cancelled.is_set()
    assert time.monotonic() - asked >= 0.3  # it had its bound before it was cancelled
    assert warned() == ["task deaf did not stop within 0.3 s: cancelled"]


async def test_a_task_stopped_by_cancellation_is_cancelled_at_once_without_a_warning(
    warned: Callable[[], list[str]],
) -> None:
    supervisor = Supervisor(asyncio.Event())
    cancelled = asyncio.Event()
    # Were it waited for, the stop would take its whole bound: the test would not finish in its time.
    supervisor.start(SupervisedTask("polling", sleeping(cancelled), Stops.BY_CANCEL, within_s=3600))
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(), timeout=10)
    assert cancelled.is_set()
    assert warned() == []


async def test_a_task_that_swallows_its_cancellation_is_left_behind_and_named(warned: Callable[[], list[str]]) -> None:
    supervisor = Supervisor(asyncio.Event())
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue

    supervisor.start(SupervisedTask("stubborn", stubborn, Stops.BY_CANCEL, within_s=0.1))
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(), timeout=10)  # the stop still ends
    assert warned() == ["task stubborn did not end when cancelled: left running"]
    released.set()
