"""Serving an emulator on loopback, and running one on its own until the operator stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Coroutine
from typing import Any

from aiohttp import web


async def until_signalled() -> None:
    """Return on SIGINT or SIGTERM (on Windows Ctrl-C arrives as KeyboardInterrupt instead)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(
    app: web.Application, host: str, port: int, context: ssl.SSLContext | None
) -> tuple[web.AppRunner, str]:
    """Serve `app` on `host:port` (0: a free port); the runner to clean up, and the base URL it is reached at.

    A short shutdown wait: a request an emulator holds up on purpose (latency, a slow answer, a stream) must not
    hold up stopping it.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    scheme = "https" if context is not None else "http"
    return runner, f"{scheme}://[{shown}]:{bound}" if ":" in shown else f"{scheme}://{shown}:{bound}"


def run_standalone(name: str, serve_until_stopped: Coroutine[Any, Any, None], log_level: str) -> int:
    """`python -m emulators.<name>`: run until signalled; a port that cannot be had is a one-line error."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr)
    try:
        asyncio.run(serve_until_stopped)
    except (OSError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    return 0
