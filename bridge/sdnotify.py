"""systemd's readiness protocol (sd_notify(3)): READY, STATUS, WATCHDOG and STOPPING as datagrams to NOTIFY_SOCKET.

The protocol is one `send` of newline-separated `KEY=VALUE` lines on a unix datagram socket, so it is written here
rather than taken as a dependency. Outside systemd (NOTIFY_SOCKET unset) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Tells the service manager what the bridge is doing; `run` reports through it (bridge/lifecycle.py)."""

    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        # A leading "@" names a socket in the abstract namespace, which starts with a NUL byte (sd_notify(3)).
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._watchdog_usec = watchdog_usec
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier | None:
        """The notifier systemd asked for (Type=notify sets NOTIFY_SOCKET, WatchdogSec= sets WATCHDOG_USEC)."""
        address = environ.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        watchdog = environ.get("WATCHDOG_USEC", "")
        # WATCHDOG_PID names the process the watchdog is for: a child that inherited the variables must not answer.
        meant_for_us = environ.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid())
        return cls(address, int(watchdog) if watchdog.isdigit() and meant_for_us else None)

    @property
    def heartbeat_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return None if not self._watchdog_usec else self._watchdog_usec / 2e6

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def ready(self, text: str) -> None:
        self._send("READY=1", f"STATUS={text}")

    def heartbeat(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self, text: str) -> None:
        self._send("STOPPING=1", f"STATUS={text}")

    def stopped(self, failure: str | None) -> None:
        if failure is not None:
            self._send(f"STATUS={failure}")
        self._socket.close()

    def _send(self, *fields: str) -> None:
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            # The bridge works without the service manager hearing from it; say so once, not at every ping.
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)
            self._failed = True
