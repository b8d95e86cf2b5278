"""The Explain page: pick a mailbox and one of its mirrored appointments; see why the workforce system sees it as
it does and what it was sent for it.

The page only shows what bridge/explain.py reports, and that reports the decision the mapping itself makes
(`TemplateMapping.decide`), so an explanation cannot drift from what the bridge does.
"""

from __future__ import annotations

from aiohttp import web
from sqlmodel import Session

from bridge.explain import Explanation, Listed, explain, mailbox_addresses, mirrored
from bridge.web.admin.context import AdminContext
from bridge.web.admin.layout import render

MAX_QUERY = 2048  # an item id is a few hundred characters at most (a Graph immutable id is about 150)


class ExplainPage:
    def __init__(self, context: AdminContext) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/explain", self.explain, name="explain")]

    async def explain(self, request: web.Request) -> web.StreamResponse:
        address = request.query.get("mailbox", "").strip()[:MAX_QUERY]
        item_id = request.query.get("item", "")[:MAX_QUERY]
        mapping, now = self._context.mapping(), self._context.clock()

        def read(session: Session) -> tuple[list[str], list[Listed] | None, Explanation | None]:
            addresses = mailbox_addresses(session)
            listed = mirrored(session, address, mapping, now) if address else None
            found = explain(session, address, item_id, mapping, now) if address and item_id else None
            return addresses, listed, found

        addresses, listed, found = await self._context.db.run(read)
        problem = None
        if address and listed is None:
            problem = f"The bridge knows no mailbox {address}."
        elif item_id and found is None:
            problem = (
                "The bridge mirrors no such appointment in this mailbox. Cancelled and declined meetings, and "
                "appointments outside the window, are not mirrored; a new one appears after the mailbox's next sync."
            )
        page = {
            "addresses": addresses,
            "address": address,
            "item_id": item_id,
            "listed": listed or [],
            "found": found,
            "problem": problem,
        }
        return render(request, "explain.html", page, status=404 if problem else 200)
