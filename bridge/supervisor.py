"""The service's long-running tasks: each kept running until the stop, each told how it stops and how long it may take.

A task either watches the stop event and returns once its running work has committed (`Stops.ON_EVENT`), or only
sleeps between polls and holds no work, so it is cancelled at once (`Stops.BY_CANCEL`). Either way it gets
`within_s`: one stopping on the event that has not ended by then is named in the log and cancelled; one that does
not end even when cancelled is named and left behind, so that the process still exits. Whatever a task was doing is
in the database and is picked up again at the next start (DESIGN §3.4).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# A task that does not end even when cancelled (it swallows the cancellation) is left behind after this long: the
# process must still exit within the service manager's patience.
_CANCELLED_WITHIN_S = 1.0


class Stops(enum.Enum):
    ON_EVENT = "on the stop event"
    BY_CANCEL = "by cancellation"


@dataclass(frozen=True)
class SupervisedTask:
    name: str
    work: Callable[[], Coroutine[Any, Any, None]]
    stops: Stops
    within_s: float


class Supervisor:
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._running: list[tuple[SupervisedTask, asyncio.Task[None]]] = []

    def start(self, task: SupervisedTask) -> None:
        """Run `task.work` until the stop; if it ever ends early with an error, log it and start it again."""

        async def keep_running() -> None:
            delay = 1.0
            while not self._stop.is_set():
                try:
                    await task.work()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("task %s failed; restarting in %.0f s", task.name, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)

        self._running.append((task, asyncio.create_task(keep_running(), name=task.name)))

    async def stop(self) -> None:
        """Stop every task, each within its bound, all at once; returns when each has ended or been left behind."""
        self._stop.set()
        await asyncio.gather(*(_end(task, running) for task, running in self._running))


async def _end(task: SupervisedTask, running: asyncio.Task[None]) -> None:
    within_s = task.within_s
    if task.stops is Stops.ON_EVENT:
        if await _ended(running, within_s):
            return
        log.warning("task %s did not stop within %g s: cancelled", task.name, within_s)
        within_s = _CANCELLED_WITHIN_S
    running.cancel()
    if not await _ended(running, within_s):
        log.error("task %s did not end when cancelled: left running", task.name)


async def _ended(running: asyncio.Task[None], within_s: float) -> bool:
    done, _ = await asyncio.wait({running}, timeout=within_s)
    return bool(done)
