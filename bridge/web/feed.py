"""`GET /api/v1/changes?after=<cursor>&limit=<n>`: the change feed, for workforce systems that pull."""

from __future__ import annotations

from aiohttp import web

from bridge.store import Database
from bridge.store.outbox import changes_after
from bridge.web.bodies import Invalid, invalid_request

MAX_LIMIT = 1000
# Cursors are outbox ids, 64-bit on both backends; a larger number names no change and cannot be bound.
MAX_CURSOR = 2**63 - 1


class ChangeFeed:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def changes(self, request: web.Request) -> web.StreamResponse:
        invalid: Invalid = []
        after = _whole(request, "after", 0, 0, MAX_CURSOR, invalid)
        limit = _whole(request, "limit", 100, 1, MAX_LIMIT, invalid)
        if invalid:
            return invalid_request(invalid)
        changes, cursor = await self._db.run(lambda session: changes_after(session, after, limit))
        return web.json_response({"changes": changes, "next_after": cursor})


def _whole(request: web.Request, name: str, default: int, low: int, high: int, invalid: Invalid) -> int:
    text = request.query.get(name)
    # ASCII digits only: int() would also take "٣", "1_000" and " 7 ".
    if text is None or (text.isascii() and text.isdigit() and len(text) <= 19 and low <= int(text) <= high):
        return default if text is None else int(text)
    invalid.append({"name": name, "reason": f"a whole number from {low} to {high}"})
    return default
