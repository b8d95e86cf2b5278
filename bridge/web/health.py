"""`GET /healthz` (the process answers) and `GET /readyz` (it can do its work: database reachable, sources
not refusing the bridge's credentials)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web
from sqlmodel import Session, select

from bridge.store import Database, SourceRow, SourceStatus


class Health:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        try:
            failing = await self._db.run(_failing_sources)
        except Exception as exc:  # whatever keeps the database away, the answer is "not ready"
            return web.json_response({"status": "unavailable", "database": str(exc)}, status=503)
        if failing:
            return web.json_response({"status": "degraded", "sources": failing}, status=503)
        return web.json_response({"status": "ready"})


def _failing_sources(session: Session) -> dict[str, str]:
    session.execute(sa.text("SELECT 1"))
    rows = session.exec(select(SourceRow).where(SourceRow.status != SourceStatus.OK)).all()
    return {row.name: f"{row.status.value}: {row.status_reason or ''}".rstrip(": ") for row in rows}
