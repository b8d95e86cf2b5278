"""systemd's notify protocol: a real unix datagram socket hears what a real `presence-bridge run` process says."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from bridge.sdnotify import SystemdNotifier

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="the notify socket is a unix socket")


class NotifySocket:
    """What systemd listens on: an abstract-namespace datagram socket (no path-length limit, nothing left behind)."""

    def __init__(self) -> None:
        self.name = f"@presence-bridge-test-{uuid.uuid4().hex}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + self.name[1:])
        self._socket.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def until(self, key: str, value: str | None = None, *, within: float = 30) -> dict[str, str]:
        """The first message (since the last one returned) that sets `key` (to `value`)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            while True:
                message = _fields(await loop.sock_recv(self._socket, 4096))
                self.messages.append(message)
                if key in message and value in (None, message[key]):
                    return message

    def close(self) -> None:
        self._socket.close()


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def test_nothing_is_sent_outside_systemd() -> None:
    assert SystemdNotifier.from_environment({}) is None


def test_the_watchdog_pings_at_half_its_timeout() -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"})
    assert notifier is not None
    assert notifier.heartbeat_interval == 15.0


def test_a_watchdog_meant_for_another_process_is_not_answered() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    notifier = SystemdNotifier.from_environment(environ)
    assert notifier is not None
    assert notifier.heartbeat_interval is None


async def test_a_socket_path_receives_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "n"
    if len(str(path)) >= 100:
        pytest.skip("the temporary folder's path is too long for a unix socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        notifier = SystemdNotifier(str(path))
        notifier.ready("listening on http://127.0.0.1:1")
        notifier.stopped(None)
        assert _fields(listener.recv(4096)) == {"READY": "1", "STATUS": "listening on http://127.0.0.1:1"}


def test_a_missing_socket_does_not_stop_the_bridge(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier(f"@presence-bridge-nobody-{uuid.uuid4().hex}")
    notifier.heartbeat()
    notifier.heartbeat()
    notifier.stopped(None)
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


async def _run(config_path: Path, notify: NotifySocket, **environ: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "--config", str(config_path),
        env={**os.environ, "NOTIFY_SOCKET": notify.name, **environ},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_ready_once_the_database_is_migrated_and_the_listener_is_up(
    config_path: Path, notify_socket: NotifySocket
) -> None:
    bridge = await _run(config_path, notify_socket)
    try:
        starting = await notify_socket.until("STATUS")
        ready = await notify_socket.until("READY", "1")
        # Nothing is waited for after READY=1: the listener answers and the schema is there at that moment.
        url = ready["STATUS"].split("listening on ", 1)[1].split()[0]
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as answer:
            assert answer.status == 200
        engine = sa.create_engine(f"sqlite:///{config_path.parent / 'bridge.db'}")
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        engine.dispose()
    finally:
        bridge.send_signal(signal.SIGTERM)
        code = await bridge.wait()
    assert starting["STATUS"].startswith("starting")
    assert code == 0


async def test_sigterm_says_stopping_before_the_process_ends(config_path: Path, notify_socket: NotifySocket) -> None:
    bridge = await _run(config_path, notify_socket)
    await notify_socket.until("READY", "1")

    bridge.send_signal(signal.SIGTERM)
    stopping = await notify_socket.until("STOPPING", "1")
    code = await bridge.wait()

    assert stopping["STATUS"].startswith("stopping")
    assert code == 0


async def test_the_event_loop_pings_the_watchdog(config_path: Path, notify_socket: NotifySocket) -> None:
    bridge = await _run(config_path, notify_socket, WATCHDOG_USEC="400000")  # a ping every 0.2 s
    try:
        await notify_socket.until("READY", "1")
        await notify_socket.until("WATCHDOG", "1")
        started = time.monotonic()
        for _ in range(5):
            await notify_socket.until("WATCHDOG", "1", within=2)
        elapsed = time.monotonic() - started
    finally:
        bridge.send_signal(signal.SIGTERM)
        await bridge.wait()
    assert 0.6 < elapsed < 3.0  # five pings 0.2 s apart, with room for a loaded machine
