"""One run of the bridge as a service manager sees it: heartbeats from the event loop, a stop from any thread."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path

import aiohttp

from bridge.config import load_config
from bridge.lifecycle import BridgeRun


class RecordingReporter:
    """A service manager that writes down what it hears, and when."""

    heartbeat_interval = 0.05

    def __init__(self) -> None:
        self.heard: list[tuple[float, str, str]] = []
        self.is_ready = asyncio.Event()

    def status(self, text: str) -> None:
        self.heard.append((time.monotonic(), "status", text))

    def ready(self, text: str) -> None:
        self.heard.append((time.monotonic(), "ready", text))
        self.is_ready.set()

    def heartbeat(self) -> None:
        self.heard.append((time.monotonic(), "heartbeat", ""))

    def stopping(self, text: str) -> None:
        self.heard.append((time.monotonic(), "stopping", text))

    def stopped(self, failure: str | None) -> None:
        self.heard.append((time.monotonic(), "stopped", failure or ""))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in itertools.groupby(kind for _, kind, _ in self.heard)]

    def heartbeats(self) -> list[float]:
        return [at for at, kind, _ in self.heard if kind == "heartbeat"]


async def test_a_stalled_event_loop_stops_the_heartbeats(config_path: Path) -> None:
    reporter = RecordingReporter()
    run = BridgeRun(load_config(config_path), reporter)
    serving = asyncio.create_task(run.serve())
    await reporter.is_ready.wait()
    await asyncio.sleep(0.2)

    stalled = time.monotonic()
    time.sleep(0.6)  # noqa: ASYNC251 - the point: a blocking call on the loop, so the watchdog hears nothing
    await asyncio.sleep(0.2)
    run.request_stop()
    await serving

    beats = reporter.heartbeats()
    assert max(later - earlier for earlier, later in itertools.pairwise(beats)) >= 0.6
    assert not [at for at in beats if stalled < at < stalled + 0.6]
    assert [at for at in beats if at > stalled + 0.6]  # and they resume when the loop does


async def test_a_stop_from_another_thread_is_the_graceful_stop(config_path: Path) -> None:
    reporter = RecordingReporter()
    run = BridgeRun(load_config(config_path), reporter)
    serving = asyncio.create_task(run.serve())
    await reporter.is_ready.wait()
    url = next(text for _, kind, text in reporter.heard if kind == "ready").split()[2]
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as answer:
        assert answer.status == 200

    threading.Thread(target=run.request_stop).start()
    async with asyncio.timeout(15):
        await serving

    kinds = [kind for kind in reporter.kinds() if kind != "heartbeat"]
    assert kinds == ["status", "ready", "stopping", "stopped"]
    assert reporter.heard[-1][1:] == ("stopped", "")  # no failure


async def test_a_stop_asked_while_starting_stops_once_started(config_path: Path) -> None:
    reporter = RecordingReporter()
    run = BridgeRun(load_config(config_path), reporter)
    run.request_stop()

    async with asyncio.timeout(30):
        await run.serve()

    assert [kind for kind in reporter.kinds() if kind != "heartbeat"] == ["status", "ready", "stopping", "stopped"]
