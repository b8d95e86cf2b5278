"""`GET /api/v1/changes?after=<cursor>&limit=<n>`: the change feed, for workforce systems that pull."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlmodel import Session

from bridge.store import Database
from bridge.store.outbox import changes_after
from bridge.store.retention import latest_cursor, pruned_through
from bridge.web.bodies import Invalid, invalid_request
from bridge.web.problems import problem
from bridge.yamlfile import format_duration

MAX_LIMIT = 1000
# Cursors are outbox ids, 64-bit on both backends; a larger number names no change and cannot be bound.
MAX_CURSOR = 2**63 - 1


class ChangeFeed:
    def __init__(self, db: Database, retention: timedelta) -> None:
        self._db = db
        self._retention = retention

    async def changes(self, request: web.Request) -> web.StreamResponse:
        invalid: Invalid = []
        after = _whole(request, "after", 0, 0, MAX_CURSOR, invalid)
        limit = _whole(request, "limit", 100, 1, MAX_LIMIT, invalid)
        if invalid:
            return invalid_request(invalid)
        read = await self._db.run(lambda session: _read(session, after, limit))
        if isinstance(read, _Gone):
            # Changes after this cursor were pruned: going on would skip them silently, so the reader is told to
            # start again from the current state (docs/api.md).
            return problem(
                410,
                "Gone",
                f"changes after cursor {after} were removed: they are kept {format_duration(self._retention)} after "
                "delivery. Read each mailbox's current state (GET /api/v1/mailboxes/{mailbox}/appointments), then "
                "read this feed from `resume_after`",
                pruned_through=read.pruned_through,
                resume_after=read.resume_after,
            )
        changes, cursor = read
        return web.json_response({"changes": changes, "next_after": cursor})


@dataclass(frozen=True, slots=True)
class _Gone:
    pruned_through: int
    resume_after: int


def _read(session: Session, after: int, limit: int) -> tuple[list[dict[str, Any]], int] | _Gone:
    horizon = pruned_through(session)
    if after < horizon:
        # The newest cursor now: whatever changes after it is in the feed; what came before is in the state read.
        return _Gone(horizon, latest_cursor(session))
    return changes_after(session, after, limit)


def _whole(request: web.Request, name: str, default: int, low: int, high: int, invalid: Invalid) -> int:
    text = request.query.get(name)
    # ASCII digits only: int() would also take "٣", "1_000" and " 7 ".
    if text is None or (text.isascii() and text.isdigit() and len(text) <= 19 and low <= int(text) <= high):
        return default if text is None else int(text)
    invalid.append({"name": name, "reason": f"a whole number from {low} to {high}"})
    return default
