"""The admin page over HTTP: the bridge's app on loopback with an admin and a workforce token."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Config, load_config
from bridge.marks import DirtyMarks
from bridge.relay import Relay
from bridge.store import Database
from bridge.web.app import create_app
from bridge.web.graph_hooks import GraphHooks
from tests.web import ADMIN_TOKEN, MAPPING, WORKFORCE_TOKEN, Client


@pytest.fixture
def admin_config(tmp_path: Path) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
            public_url: http://127.0.0.1:8080
            sources:
              online:
                kind: graph
                tenant_id: 11111111-2222-3333-4444-555555555555
                client_id: 66666666-7777-8888-9999-000000000000
                client_secret: not-used-here
            mailboxes: []
            api_tokens:
              - {{name: workforce, token: {WORKFORCE_TOKEN}, scopes: [workforce]}}
              - {{name: admin, token: {ADMIN_TOKEN}, scopes: [admin]}}
        """)
    )
    return load_config(path)


@pytest.fixture
async def admin_client(admin_config: Config, db: Database) -> AsyncIterator[Client]:
    relay = Relay(db, {}, lambda: MAPPING, admin_config.mail, owner="test")
    app = create_app(admin_config, db, GraphHooks(db, DirtyMarks(db)), lambda: MAPPING, relay)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client
