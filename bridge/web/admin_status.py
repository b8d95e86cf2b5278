"""`GET /api/v1/admin/status`: what `presence-bridge status` shows, as JSON, for an admin token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from bridge.status import DETAILS, status_json
from bridge.store import Database
from bridge.store.summary import summarise


class AdminStatus:
    def __init__(self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._clock = clock

    async def status(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        summary = await self._db.run(lambda session: summarise(session, now, details=DETAILS))
        return web.json_response(status_json(summary))
