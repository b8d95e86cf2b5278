"""`GET /api/v1/changes?after=<cursor>&limit=<n>`: the change feed, for workforce systems that pull."""

from __future__ import annotations

from aiohttp import web

from bridge.store import Database
from bridge.store.outbox import changes_after
from bridge.web.problems import problem

MAX_LIMIT = 1000
# Cursors are outbox ids, 64-bit on both backends; a larger number names no change and cannot be bound.
MAX_CURSOR = 2**63 - 1


class ChangeFeed:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def changes(self, request: web.Request) -> web.StreamResponse:
        try:
            after = int(request.query.get("after", "0"))
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return problem(400, "Bad Request", "after and limit are whole numbers", invalid_params=["after", "limit"])
        if not 0 <= after <= MAX_CURSOR or not 1 <= limit <= MAX_LIMIT:
            return problem(400, "Bad Request", f"0 ≤ after ≤ {MAX_CURSOR} and 1 ≤ limit ≤ {MAX_LIMIT}")
        changes, cursor = await self._db.run(lambda session: changes_after(session, after, limit))
        return web.json_response({"changes": changes, "next_after": cursor})
