"""One run of the bridge, from start to a graceful stop, told to the service manager that runs it.

`presence-bridge run` (under systemd or in a console) and the Windows service run the same `Service` through
`BridgeRun`, so a stop from SIGTERM, Ctrl-C or the Windows service control manager is one and the same stop:
running work commits, and the rest is picked up on the next start (bridge/service.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Protocol

from bridge.config import Config
from bridge.service import Service


class Reporter(Protocol):
    """The service manager's view of a run: systemd's notify socket (bridge/sdnotify.py) or the Windows SCM."""

    @property
    def heartbeat_interval(self) -> float | None:
        """Seconds between `heartbeat` calls from the event loop; None: the manager wants none."""

    def status(self, text: str) -> None: ...

    def ready(self, text: str) -> None:
        """The database is migrated and the listener is up."""

    def heartbeat(self) -> None:
        """The event loop is turning (a stalled loop stops calling it, so the manager can restart the bridge)."""

    def stopping(self, text: str) -> None: ...

    def stopped(self, failure: str | None) -> None:
        """The run is over; `failure` says why when it ended by an error."""


class SilentReporter:
    """For a run no service manager watches (a console)."""

    heartbeat_interval: float | None = None

    def status(self, text: str) -> None:
        pass

    def ready(self, text: str) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def stopping(self, text: str) -> None:
        pass

    def stopped(self, failure: str | None) -> None:
        pass


class BridgeRun:
    def __init__(self, config: Config, reporter: Reporter | None = None) -> None:
        self._config = config
        self._reporter = reporter or SilentReporter()
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._service: Service | None = None

    def request_stop(self) -> None:
        """Ask for the graceful stop; safe from any thread (the Windows SCM calls it from its own)."""
        self._stop_requested.set()
        loop, service = self._loop, self._service
        if loop is not None and service is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed: the run is over anyway
                loop.call_soon_threadsafe(service.request_stop)

    async def serve(self, *, signals: bool = False) -> None:
        """Start the bridge, run it until a stop is requested, stop it; with `signals`, SIGTERM and Ctrl-C ask."""
        self._loop = asyncio.get_running_loop()
        if signals:
            self._handle_signals()
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        failure: str | None = None
        try:
            self._reporter.status("starting: migrating the database, registering sources and mailboxes")
            self._service = service = Service(self._config)
            try:
                await service.start()
                if self._stop_requested.is_set():  # asked while it started
                    service.request_stop()
                self._reporter.ready(f"listening on {service.url} (instance {service.owner})")
                await service.wait_stopped()
                self._reporter.stopping("stopping: letting in-flight work commit")
            finally:
                await service.stop()
        except Exception as exc:
            failure = f"failed: {exc!r}"
            raise
        finally:
            heartbeat.cancel()
            self._reporter.stopped(failure)

    async def _heartbeat(self) -> None:
        interval = self._reporter.heartbeat_interval
        if interval is None:
            return
        while True:
            self._reporter.heartbeat()
            await asyncio.sleep(interval)

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        stops = [signal.SIGTERM, signal.SIGINT, *([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])]
        for signum in stops:
            try:
                loop.add_signal_handler(signum, self.request_stop)
            except NotImplementedError:
                # Windows' event loop has no signal handlers: a plain one wakes the loop through request_stop.
                signal.signal(signum, lambda _signum, _frame: self.request_stop())
