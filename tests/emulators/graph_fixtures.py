"""Pytest fixtures for the Graph emulator, usable from any test package.

`tests/emulators/conftest.py` re-exports them for the emulator's own tests; elsewhere, enable them with
`pytest_plugins = ["tests.emulators.graph_fixtures"]` in the top-level `tests/conftest.py`, or `-p
tests.emulators.graph_fixtures` on the command line.

- `graph_emulator`: a started `GraphEmulator` on 127.0.0.1 with an ephemeral port over TLS (fast notification
  batching and retries), stopped afterwards.
- `graph_state`: its in-process model (`GraphState`); `graph_base_url` (https://127.0.0.1:PORT);
  `graph_ca_file` (the CA PEM clients verify with).
- `tenant_app`: an `AppRegistration` (tenant_id, client_id, client_secret) registered in it.
- `adele`, `bob`: `DirectoryUser`s with mailboxes (Adele's GUID is the fixtures' 8ee44408-...).
- `http_session`: an aiohttp session trusting the emulator's CA.
- `graph`: a `GraphHttp` client (aiohttp, already holding a token for `tenant_app`, Adele present).
- `receiver`: a `Receiver` on http://127.0.0.1:PORT answering validation and recording notifications.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser, GraphState
from tests.emulators.graph_helpers import ADELE_ID, CLIENT_ID, TENANT_ID, GraphHttp, Receiver, fetch_token


@pytest.fixture
async def graph_emulator(tmp_path: Path) -> AsyncIterator[GraphEmulator]:
    emulator = GraphEmulator(
        ca_file=tmp_path / "graph-ca.pem",
        notification_batch_delay=0.03,
        notification_retry_delays=(0.05, 0.1),
        notification_timeout=2.0,
    )
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
def graph_state(graph_emulator: GraphEmulator) -> GraphState:
    return graph_emulator.state


@pytest.fixture
def graph_base_url(graph_emulator: GraphEmulator) -> str:
    return graph_emulator.base_url


@pytest.fixture
def graph_ca_file(graph_emulator: GraphEmulator) -> Path:
    return graph_emulator.ca_file


@pytest.fixture
def tenant_app(graph_emulator: GraphEmulator) -> AppRegistration:
    return graph_emulator.add_app(TENANT_ID, CLIENT_ID, "s3cret-value")


@pytest.fixture
def adele(graph_emulator: GraphEmulator, tenant_app: AppRegistration) -> DirectoryUser:
    return graph_emulator.add_user("AdeleV@contoso.com", "Adele Vance", user_id=ADELE_ID)


@pytest.fixture
def bob(graph_emulator: GraphEmulator, tenant_app: AppRegistration) -> DirectoryUser:
    return graph_emulator.add_user("bob@contoso.com", "Bob Kelly")


@pytest.fixture
async def http_session(graph_ca_file: Path) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(graph_ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=50)) as session:
        yield session


@pytest.fixture
async def graph(
    http_session: aiohttp.ClientSession, graph_base_url: str, tenant_app: AppRegistration, adele: DirectoryUser
) -> GraphHttp:
    return GraphHttp(http_session, graph_base_url, await fetch_token(http_session, graph_base_url, tenant_app))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/graph", hooks.handle)
    app.router.add_post("/hooks/graph/lifecycle", hooks.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hooks.url = f"http://127.0.0.1:{port}/hooks/graph"
    hooks.lifecycle_url = f"http://127.0.0.1:{port}/hooks/graph/lifecycle"
    try:
        yield hooks
    finally:
        await runner.cleanup()
