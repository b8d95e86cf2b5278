"""Bearer tokens: what an admin token changes is logged with the token's name, and the token itself never."""

from __future__ import annotations

import logging

import pytest

from bridge import logs
from tests.web import ADMIN_TOKEN, Client, bearer


async def test_an_admin_change_is_logged_with_the_tokens_name(
    app_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logs.AUDIT)
    body = {"address": "grady@contoso.com", "workforce_id": "E2002", "source": "online"}

    created = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=bearer(ADMIN_TOKEN))
    listed = await app_client.get("/api/v1/admin/mailboxes", headers=bearer(ADMIN_TOKEN))

    assert (created.status, listed.status) == (201, 200)
    audit = [r.getMessage() for r in caplog.records if r.name == logs.AUDIT]
    assert audit == ["POST /api/v1/admin/mailboxes by token 'admin': 201"]
    assert ADMIN_TOKEN not in caplog.text
