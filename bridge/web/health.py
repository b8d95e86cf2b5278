"""`GET /healthz` (the process answers) and `GET /readyz` (the state now: can the bridge do its work, and what is
degraded).

`/readyz` answers 503 only when the bridge cannot work at all (the database is unreachable, or no source
works), else 200, saying what is degraded. It is open to anyone (load balancers, monitors), so it shows states,
times and counts only: never a URL, a host, an account or what a driver or Exchange said (those are for
administrators, in `presence-bridge status`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.domain import iso_utc
from bridge.outages import Outages
from bridge.progress import progress_json
from bridge.store import Database
from bridge.store.summary import Summary, summarise

log = logging.getLogger(__name__)


class Health:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._clock = clock
        self._outages = Outages(log)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        try:
            summary = await self._db.run(lambda session: summarise(session, now))
        except Exception as exc:  # whatever keeps the database away, the answer is "cannot work"
            self._outages.failed("database", f"readiness: the database is unreachable: {type(exc).__name__}: {exc}")
            return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
        self._outages.recovered("database", "readiness: the database answers again")
        body = readiness(summary)
        return web.json_response(body, status=200 if summary.working else 503)


def readiness(summary: Summary) -> dict[str, Any]:
    """What anyone may see of the bridge's state: states, times and counts."""
    status = "unavailable" if not summary.working else "degraded" if summary.degraded else "ready"
    backlog = summary.backlog
    return {
        "status": status,
        "database": "ok",
        "sources": {
            source.name: {
                "kind": source.kind,
                "state": source.status,
                "since": None if source.changed_at is None else iso_utc(source.changed_at),
            }
            for source in summary.sources
        },
        "mailboxes": summary.mailboxes_by_status(),
        "backlog": {
            "changes": backlog.undelivered,
            "oldest_age_s": None if backlog.oldest is None else round(backlog.oldest_age_s(summary.at), 1),
        },
        "sync_progress": progress_json(summary.progress),
    }
