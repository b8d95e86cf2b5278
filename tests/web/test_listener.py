"""The listener under slow and numerous clients, and its TLS certificate renewed while it runs (raw sockets)."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bridge.config import ListenConfig
from bridge.web.bodies import BODY_TIMEOUT, read_limited
from bridge.web.listener import Listener, runner_options
from emulators.tls import LoopbackCA

SECOND = timedelta(seconds=1)


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await read_limited(request, 1024)
    return web.Response(body=body)


@pytest.fixture
def settings() -> ListenConfig:
    return ListenConfig(host="127.0.0.1", port=0, header_timeout=SECOND, body_timeout=SECOND, max_connections=300)


async def serve(settings: ListenConfig) -> AsyncIterator[tuple[str, Listener]]:
    app = web.Application()
    app[BODY_TIMEOUT] = settings.body_timeout.total_seconds()
    app.add_routes([web.get("/healthz", _healthz), web.post("/echo", _echo)])
    runner = web.AppRunner(app, **runner_options(settings))
    await runner.setup()
    listener = Listener(runner, settings)
    url = await listener.start()
    try:
        yield url, listener
    finally:
        listener.close()
        await runner.cleanup()


@pytest.fixture
async def listening(settings: ListenConfig) -> AsyncIterator[tuple[str, Listener]]:
    async for served in serve(settings):
        yield served


async def trickle(port: int, head: bytes, closed: list[float], started: float) -> None:
    """Send `head` a byte every 0.2 s; note when the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                async with asyncio.timeout(0.2):
                    if not await reader.read(1024):
                        break
            except TimeoutError:
                continue
            break
        else:
            await reader.read(1024)
    except ConnectionError:
        pass
    finally:
        closed.append(time.monotonic() - started)
        writer.close()


async def healthz_answers(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        return response.status


async def test_slow_header_senders_are_closed_and_healthz_keeps_answering(listening: tuple[str, Listener]) -> None:
    url, listener = listening
    port = int(url.rsplit(":", 1)[1])
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    closed: list[float] = []
    started = time.monotonic()
    slow = [asyncio.create_task(trickle(port, head, closed, started)) for _ in range(200)]
    await asyncio.sleep(0.3)

    statuses = []
    while not all(task.done() for task in slow) and time.monotonic() - started < 10:
        statuses.append(await healthz_answers(url))
        await asyncio.sleep(0.1)
    await asyncio.gather(*slow)

    assert len(closed) == 200
    assert max(closed) < 3  # the header timeout is 1 s; a trickle of 100 bytes would have taken 20 s
    assert statuses
    assert set(statuses) == {200}
    await asyncio.sleep(0.1)
    assert listener.open_connections == 0


async def test_a_slow_body_is_answered_408_within_the_body_timeout(listening: tuple[str, Listener]) -> None:
    url, _ = listening
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    started = time.monotonic()
    answer = b""
    for _ in range(100):
        writer.write(b"a")
        try:
            async with asyncio.timeout(0.2):
                answer = await reader.read(4096)
            break
        except TimeoutError:
            continue
    writer.close()

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"title": "Request Timeout"' in answer
    assert time.monotonic() - started < 3


async def test_connections_beyond_the_cap_are_turned_away_at_once(settings: ListenConfig) -> None:
    capped = ListenConfig(**{**_fields(settings), "max_connections": 5})
    async for url, listener in serve(capped):
        port = int(url.rsplit(":", 1)[1])
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert listener.open_connections == 5

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(2):
            refused = await reader.read()
        writer.close()

        for _, held_writer in held:
            held_writer.close()
        await asyncio.sleep(0.1)
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert await healthz_answers(url) == 200  # room again once the held ones are gone


def _fields(settings: ListenConfig) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__slots__}


async def _served_certificate(url: str, ca: LoopbackCA) -> bytes:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=ca.client_context())
    der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return der


async def test_tls_is_served_and_a_renewed_certificate_is_picked_up(settings: ListenConfig, tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "ca.pem")
    cert, key = tmp_path / "bridge.crt", tmp_path / "bridge.key"
    ca.write_server_cert(cert, key)
    tls = ListenConfig(**{**_fields(settings), "tls_cert_file": cert, "tls_key_file": key})
    async for url, listener in serve(tls):
        assert url.startswith("https://127.0.0.1:")
        first = await _served_certificate(url, ca)
        watching = asyncio.create_task(listener.watch_certificate(0.05))
        try:
            ca.write_server_cert(cert, key)  # the renewal: new certificate and key, same paths
            for _ in range(100):
                await asyncio.sleep(0.05)
                if (renewed := await _served_certificate(url, ca)) != first:
                    break
            cert.write_text("not a certificate")  # a renewal caught half-way: the one in use stays
            await asyncio.sleep(0.2)
            assert await _served_certificate(url, ca) == renewed
        finally:
            watching.cancel()
        assert renewed != first


async def test_a_certificate_file_that_blocks_does_not_stall_the_listener(
    settings: ListenConfig, tmp_path: Path
) -> None:
    """The certificate is read off the event loop: a file that blocks its reader (a FIFO here; a hung network
    share in life) holds up only the reload, while connections are still answered with the certificate in use."""
    ca = LoopbackCA(tmp_path / "ca.pem")
    cert, key = tmp_path / "bridge.crt", tmp_path / "bridge.key"
    ca.write_server_cert(cert, key)
    pem = cert.read_bytes()
    tls = ListenConfig(**{**_fields(settings), "tls_cert_file": cert, "tls_key_file": key})
    async for url, listener in serve(tls):
        first = await _served_certificate(url, ca)
        watching = asyncio.create_task(listener.watch_certificate(0.05))
        cert.unlink()
        os.mkfifo(cert)  # the watcher's reload now waits for a writer
        writer = threading.Timer(2.0, lambda: cert.write_bytes(pem))  # ends the wait, whatever happens here
        writer.start()
        started = time.monotonic()
        try:
            await asyncio.sleep(0.3)  # polled: the reload is under way, blocked on the file
            served = await _served_certificate(url, ca)
            waited = time.monotonic() - started
        finally:
            writer.join()
            watching.cancel()

        assert served == first
        assert waited < 1.5  # not the writer's 2 s: the loop was free


async def test_plain_http_is_not_answered_on_a_tls_listener(settings: ListenConfig, tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "ca.pem")
    ca.write_server_cert(tmp_path / "c.pem", tmp_path / "k.pem")
    tls = ListenConfig(**{**_fields(settings), "tls_cert_file": tmp_path / "c.pem", "tls_key_file": tmp_path / "k.pem"})
    async for url, _ in serve(tls):
        with pytest.raises(aiohttp.ClientError):
            await healthz_answers(url.replace("https://", "http://"))
        ssl_context = ssl.create_default_context(cafile=str(ca.ca_file))
        async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz", ssl=ssl_context) as response:
            assert response.status == 200
