"""The Mailboxes page: find mailboxes, see how each syncs, and act on them as `presence-bridge mailboxes` does.

Every action goes through what the admin REST API runs (bridge/web/admin_api.py's `AdminRoutes`, the roster
import, the relay's purge), so the page, the API and the command line cannot disagree. A form's outcome is
shown once on the page it returns to (Post/Redirect/Get), except where the page itself is the answer: a roster
with problems (shown beside the text, which is kept), a roster preview and a purge's dry run.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bridge import admin, roster
from bridge.admin import MailboxSearch
from bridge.roster import MAX_ADDRESS, RosterRefused
from bridge.store.models import MailboxStatus
from bridge.web.admin.context import AdminContext
from bridge.web.admin.layout import render
from bridge.web.admin.session import see_other, tell
from bridge.web.answers import answer

PAGE_SIZE = 50
MAX_REASON = 500
LIST = "/admin/mailboxes"


class MailboxesPage:
    def __init__(self, context: AdminContext) -> None:
        self._context = context
        self._api = context.administration

    def routes(self) -> list[web.RouteDef]:
        one = "/mailboxes/{mailbox}"
        return [
            web.get("/mailboxes", self.mailboxes, name="mailboxes"),
            web.post("/mailboxes/add", self.add, name="mailboxes_add"),
            web.post(f"{one}/enable", self.enable, name="mailbox_enable"),
            web.post(f"{one}/disable", self.disable, name="mailbox_disable"),
            web.post(f"{one}/resync", self.resync, name="mailbox_resync"),
            web.get(f"{one}/remove", self.remove_form, name="mailbox_remove_form"),
            web.post(f"{one}/remove", self.remove, name="mailbox_remove"),
            web.get(f"{one}/purge", self.purge_dry_run, name="mailbox_purge_form"),
            web.post(f"{one}/purge", self.purge, name="mailbox_purge"),
        ]

    async def mailboxes(self, request: web.Request) -> web.StreamResponse:
        return await self._render(request, {})

    async def add(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        text = str(form.get("lines", ""))
        check, preview = form.get("check_exchange") == "on", form.get("action") == "preview"
        added = {"lines": text, "check_exchange": check}
        rows = roster.read_csv(text)
        if not rows:
            return await self._render(request, {**added, "problems": ["Paste at least one line."]}, status=400)
        try:
            planned = await self._api.enrol(rows, dry_run=preview, check=check)
        except RosterRefused as exc:
            return await self._render(request, {**added, "problems": [exc.summary, *exc.problems]}, status=400)
        described = roster.describe(planned, dry_run=preview)
        if preview:
            return await self._render(request, {**added, "preview": described})
        await tell(request, "\n".join(described), self._context.db)
        return see_other(LIST)

    async def enable(self, request: web.Request) -> web.StreamResponse:
        view = await self._api.enable_mailbox(request.match_info["mailbox"])
        return await self._done(request, view is not None, "enabled: it syncs again")

    async def disable(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        reason = str(form.get("reason", "")).strip()[:MAX_REASON] or "disabled by an administrator"
        view = await self._api.disable_mailbox(request.match_info["mailbox"], reason)
        return await self._done(request, view is not None, "disabled: it no longer syncs")

    async def resync(self, request: web.Request) -> web.StreamResponse:
        view = await self._api.resync_mailbox(request.match_info["mailbox"])
        return await self._done(request, view is not None, "will read its whole window again")

    async def remove_form(self, request: web.Request) -> web.StreamResponse:
        address = request.match_info["mailbox"]
        page = {"address": address, "back": _back(request.query.get("back", ""))}
        return render(request, "mailbox_remove.html", page)

    async def remove(self, request: web.Request) -> web.StreamResponse:
        done = await self._api.remove_mailbox(request.match_info["mailbox"])
        deleted = 0 if done is None else done[0]
        return await self._done(
            request, done is not None, f"removed: the workforce system is told {deleted} appointment(s) are gone"
        )

    async def purge_dry_run(self, request: web.Request) -> web.StreamResponse:
        address = request.match_info["mailbox"]
        outcome = answer(await self._context.relay.purge(address, dry_run=True, key=None))
        body = outcome.body or {}
        page: dict[str, Any] = {"address": address, "back": _back(request.query.get("back", ""))}
        if outcome.problem:
            page["problem"] = body.get("detail", "the bridge's items could not be found")
        else:
            # The relay answers the workforce system in its JSON; the page shows the times as every page does.
            page["items"] = [
                {**item, "start": datetime.fromisoformat(item["start"]), "end": datetime.fromisoformat(item["end"])}
                for item in body.get("items", [])
            ]
        status = outcome.status if outcome.problem else 200
        return render(request, "mailbox_purge.html", page, status=status)

    async def purge(self, request: web.Request) -> web.StreamResponse:
        address = request.match_info["mailbox"]
        outcome = answer(await self._context.relay.purge(address, dry_run=False, key=None))
        body = outcome.body or {}
        if outcome.problem:
            text = f"{address}: the bridge's items were not purged: {body.get('detail', outcome.status)}"
        else:
            text = f"{address}: {body.get('deleted', 0)} item(s) the bridge made were deleted from Exchange"
        await tell(request, text, self._context.db)
        return see_other(await _back_from(request))

    async def _done(self, request: web.Request, found: bool, what: str) -> web.StreamResponse:
        address = request.match_info["mailbox"]
        text = f"{address} {what}." if found else f"The bridge knows no mailbox {address}; nothing was changed."
        await tell(request, text, self._context.db)
        return see_other(await _back_from(request))

    async def _render(self, request: web.Request, extra: dict[str, Any], *, status: int = 200) -> web.Response:
        search, problems = _search(request, list(self._context.config.sources))
        found, total = await self._context.db.run(lambda session: admin.find_mailboxes(session, search))
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page_number = search.offset // PAGE_SIZE + 1
        filters = {"q": search.text, "status": search.status or "", "source": search.source or ""}
        page = {
            "listings": found,
            "total": total,
            "filters": filters,
            "statuses": [status.value for status in MailboxStatus],
            "sources": list(self._context.config.sources),
            # EWS streaming subscriptions live only as long as their connection: they have no expiry to show.
            "streaming": [name for name, source in self._context.config.sources.items() if source.kind == "ews"],
            "page_number": page_number,
            "pages": pages,
            "previous": _page_link(filters, page_number - 1) if page_number > 1 else None,
            "next": _page_link(filters, page_number + 1) if page_number < pages else None,
            "here": request.path_qs if request.method == "GET" else LIST,
            "lines": "",
            "check_exchange": False,
            "preview": None,
            "problems": [],
            "filter_problems": problems,
            **extra,
        }
        return render(request, "mailboxes.html", page, status=status)


def _search(request: web.Request, sources: list[str]) -> tuple[MailboxSearch, list[str]]:
    """The list's filters from the query; a filter that makes no sense is named and left out."""
    query, problems = request.query, []
    text = query.get("q", "").strip()[:MAX_ADDRESS]
    status = query.get("status") or None
    if status is not None and status not in {s.value for s in MailboxStatus}:
        problems.append(f"There is no status {status!r}; showing every status.")
        status = None
    source = query.get("source") or None
    if source is not None and source not in sources:
        problems.append(f"There is no source {source!r}; showing every source.")
        source = None
    page = query.get("page", "1")
    number = int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1
    return MailboxSearch(text, status, source, PAGE_SIZE, (number - 1) * PAGE_SIZE), problems


def _page_link(filters: dict[str, str], number: int) -> str:
    given = {key: value for key, value in filters.items() if value}
    return f"{LIST}?{urlencode({**given, 'page': number})}"


def _back(wanted: str) -> str:
    """The list to go back to after a form, as it was filtered; only ever the list itself."""
    return wanted if wanted.startswith(LIST) and "\\" not in wanted else LIST


async def _back_from(request: web.Request) -> str:
    form = await request.post()
    return _back(str(form.get("back", "")))
