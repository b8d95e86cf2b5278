"""The loopback certificate authority: clients that trust its CA file reach an HTTPS server, others do not."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from emulators.tls import LoopbackCA, loopback_tls


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def https_url(tmp_path: Path) -> AsyncIterator[str]:
    context, _ = loopback_tls(tmp_path / "ca.pem")
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def test_client_trusting_the_ca_file_reaches_the_server(https_url: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))) as client:
        answer = await client.get(https_url)

    assert answer.text == "hello"


async def test_localhost_is_covered_by_the_certificate(https_url: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))) as client:
        answer = await client.get(https_url.replace("127.0.0.1", "localhost"))

    assert answer.status_code == 200


async def test_client_with_system_trust_refuses_the_server(https_url: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(https_url)


def test_ca_writes_a_server_certificate_and_key_for_other_servers(tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "ca.pem")

    ca.write_server_cert(tmp_path / "cert.pem", tmp_path / "key.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    assert ca.ca_file.read_bytes() == ca.ca_pem
