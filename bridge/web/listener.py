"""The listening socket: a cap on open connections, slow clients timed out, and optional TLS whose certificate
is picked up again when its files change (docs/configuration.md, `listen:`).

aiohttp's own `TCPSite` has neither a connection cap nor a way to swap certificates, so the socket is opened
here with asyncio's public `create_server`, around the runner's public protocol factory (`runner.server`).
Timeouts: aiohttp's keep-alive timer starts when a connection opens and restarts only after an answer, so
`keepalive_timeout` also bounds how long a request's headers may take; bodies are bounded where they are read
(`bridge/web/bodies.py`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.config import ListenConfig
from bridge.outages import Outages

log = logging.getLogger(__name__)

# File descriptors kept back from the connection cap for the database, Exchange and the workforce system: with
# every descriptor taken by clients, accept() fails in a loop and nothing else can open a socket either.
_RESERVED_FILES = 128
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def runner_options(settings: ListenConfig) -> dict[str, Any]:
    """The `web.AppRunner` options that carry the listener's limits."""
    return {
        "keepalive_timeout": settings.header_timeout.total_seconds(),
        # What a stop waits for requests in flight before closing their connections.
        "shutdown_timeout": 3.0,
        # How long the unread rest of a refused body is drained so that the answer reaches the client (aiohttp's
        # default, 10 s, would give a trickling client that much more).
        "lingering_time": 2.0,
    }


class Listener:
    def __init__(self, runner: web.AppRunner, settings: ListenConfig) -> None:
        self._runner = runner
        self._settings = settings
        self._cap = _connection_cap(settings.max_connections)
        self._open = 0
        self._server: asyncio.Server | None = None
        cert, key = settings.tls_cert_file, settings.tls_key_file
        self._tls_files = (cert, key) if cert is not None and key is not None else None
        # The context the socket was opened with, and the one that serves handshakes now (a reloaded certificate's).
        self._tls: ssl.SSLContext | None = None
        self._serving: ssl.SSLContext | None = None
        self._stamp: tuple[int, int] | None = None
        self._outages = Outages(log)

    @property
    def open_connections(self) -> int:
        return self._open

    async def start(self) -> str:
        """Listen; the URL the bridge answers at."""
        if self._tls_files is not None:
            loaded = await asyncio.to_thread(_load, self._tls_files)
            assert loaded is not None  # nothing was loaded before
            self._tls, self._stamp = loaded
            self._serving = self._tls
            self._tls.sni_callback = self._present
        self._server = await asyncio.get_running_loop().create_server(
            self._connection,
            self._settings.host,
            self._settings.port,
            ssl=self._tls,
            ssl_handshake_timeout=self._settings.header_timeout.total_seconds() if self._tls else None,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    def close(self) -> None:
        """Stop accepting; the runner's cleanup closes the connections that are open."""
        if self._server is not None:
            self._server.close()

    async def watch_certificate(self, interval_s: float) -> None:
        """Load the certificate again whenever its files change, forever; returns at once without TLS.

        The files are looked at, read and parsed in a worker thread, into a context of their own: a slow disk or
        share must not stall the event loop, and the context handshakes are using is never changed under them.
        The new context takes over at the next handshake (`_present`); open connections keep their certificate.
        A half-finished renewal (a new certificate beside the old key) is refused and retried at the next poll,
        while the certificate in use stays in force.
        """
        if self._tls is None or self._tls_files is None:
            return
        while True:
            await asyncio.sleep(interval_s)
            try:
                loaded = await asyncio.to_thread(_load, self._tls_files, self._stamp)
            except (OSError, ssl.SSLError) as exc:
                self._outages.failed("tls", f"listen.tls_cert_file not reloaded, the one in use stays: {exc}")
                continue
            if loaded is not None:
                self._serving, self._stamp = loaded
                self._outages.recovered("tls", "listen.tls_cert_file loads again")
                log.info("TLS certificate %s loaded again", self._tls_files[0])

    def _present(self, connection: ssl.SSLObject, _server_name: str | None, context: ssl.SSLContext) -> None:
        """Called by OpenSSL on every ClientHello, with or without SNI: the handshake goes on with the newest
        certificate's context."""
        if self._serving is not None and self._serving is not context:
            connection.context = self._serving

    def _connection(self) -> asyncio.Protocol:
        server = self._runner.server
        if server is None or self._open >= self._cap:
            self._outages.failed("cap", f"{self._cap} connections open: further ones are turned away")
            return _Busy()
        self._open += 1
        if self._open < self._cap // 2:
            self._outages.recovered("cap", "connections accepted again")
        return _Counted(server(), self)

    def _closed(self) -> None:
        self._open -= 1


def _load(
    files: tuple[Path, Path], known: tuple[int, int] | None = None
) -> tuple[ssl.SSLContext, tuple[int, int] | None] | None:
    """A server context with the certificate and key in `files`, and their stamp; None while the files still have
    the stamp `known`. Blocking: run it in a worker thread."""
    stamp = _stamp(files)
    if known is not None and stamp == known:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*files)
    return context, stamp


def _stamp(files: tuple[Path, Path]) -> tuple[int, int] | None:
    try:
        return (files[0].stat().st_mtime_ns, files[1].stat().st_mtime_ns)
    except OSError:
        return None  # gone for a moment (replaced by rename): looked at again at the next poll


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, told apart so that the listener knows when it closes."""

    def __init__(self, inner: asyncio.Protocol, listener: Listener) -> None:
        self._inner = inner
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener._closed()
        self._inner.connection_lost(exc)


class _Busy(asyncio.Protocol):
    """Over the cap: answer 503 and close, without reading the request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()


def _connection_cap(configured: int) -> int:
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit to stay under
        return configured
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or configured <= soft - _RESERVED_FILES:
        return configured
    cap = max(1, soft - _RESERVED_FILES)
    log.warning("listen.max_connections %d lowered to %d: the open-file limit is %d", configured, cap, soft)
    return cap
