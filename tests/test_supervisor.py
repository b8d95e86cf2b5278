"""The service's tasks stop each its own way, within its bound; one that does not is named and cancelled."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bridge.supervisor import Stops, SupervisedTask, Supervisor


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "bridge.supervisor"]


async def test_a_task_that_ignores_the_stop_is_cancelled_after_its_bound_and_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.supervisor")
    stop = asyncio.Event()
    supervisor = Supervisor(stop)
    cancelled = asyncio.Event()

    async def deaf() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def heeding() -> None:
        await stop.wait()

    supervisor.start(SupervisedTask("deaf", deaf, Stops.ON_EVENT, within_s=0.3))
    supervisor.start(SupervisedTask("heeding", heeding, Stops.ON_EVENT, within_s=0.3))
    await asyncio.sleep(0)
    asked = time.monotonic()
    await supervisor.stop()
    assert cancelled.is_set()
    assert time.monotonic() - asked >= 0.3  # it had its bound before it was cancelled
    assert logged(caplog) == ["task deaf did not stop within 0.3 s: cancelled"]


async def test_a_task_stopped_by_cancellation_is_cancelled_at_once_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.supervisor")
    supervisor = Supervisor(asyncio.Event())
    cancelled = asyncio.Event()

    async def polling() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    # Were it waited for, the stop would take its whole bound: the test would not finish in its time.
    supervisor.start(SupervisedTask("polling", polling, Stops.BY_CANCEL, within_s=3600))
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(), timeout=10)
    assert cancelled.is_set()
    assert logged(caplog) == []


async def test_a_task_that_swallows_its_cancellation_is_left_behind_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.supervisor")
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
    assert logged(caplog) == ["task stubborn did not end when cancelled: left running"]
    released.set()
