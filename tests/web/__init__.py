"""Tests of the bridge's HTTP app; what the test modules share."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.templates import default_mapping_path, load_mapping

MAPPING = load_mapping(default_mapping_path())
WORKFORCE_TOKEN = "wf-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"

Client = TestClient[web.Request, web.Application]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
