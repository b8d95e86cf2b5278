"""The Overview page: how the bridge stands, from the same read of the database as `presence-bridge status`."""

from __future__ import annotations

from aiohttp import web

from bridge.status import DETAILS
from bridge.store.models import MailboxStatus
from bridge.store.summary import summarise
from bridge.web.admin.context import AdminContext
from bridge.web.admin.layout import render


class OverviewPage:
    def __init__(self, context: AdminContext) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.overview, name="overview")]

    async def overview(self, request: web.Request) -> web.StreamResponse:
        now = self._context.clock()
        summary = await self._context.db.run(lambda session: summarise(session, now, details=DETAILS))
        statuses = [status.value for status in MailboxStatus]
        page = {"summary": summary, "statuses": statuses, "now": now}
        return render(request, "overview.html", page)
