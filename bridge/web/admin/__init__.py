"""The admin page at /admin/: an aiohttp sub-application of the bridge's app, server-rendered with Jinja2.

Each page is a module with a class that takes the `AdminContext` and whose `routes()` lists its routes, paths
relative to /admin/ and each with a name (templates link with `url('name')`); `PAGES` lists the classes. The
session middleware (session.py) guards every route and checks the CSRF token of every POST, so a page module
has neither to do. docs/admin.md has the conventions for adding a page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.status import moment_text, span_text
from bridge.web.admin.context import AdminContext
from bridge.web.admin.explain import ExplainPage
from bridge.web.admin.mailboxes import MailboxesPage
from bridge.web.admin.mapping import MappingPage
from bridge.web.admin.overview import OverviewPage
from bridge.web.admin.session import AdminSessions

_HERE = Path(__file__).parent
# Nothing but the page itself: no script at all, styles and images from /admin/ only, never inside a frame.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class AdminPage(Protocol):
    def routes(self) -> list[web.RouteDef]: ...


# The pages, each built with the AdminContext; a new page adds its class here.
PAGES: tuple[Callable[[AdminContext], AdminPage], ...] = (OverviewPage, MailboxesPage, MappingPage, ExplainPage)


def admin_app(context: AdminContext) -> web.Application:
    """The sub-application the bridge's app mounts at /admin/."""
    sessions = AdminSessions(context.config, context.db, context.clock)
    app = web.Application(middlewares=[sessions.middleware])
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = moment_text
    env.filters["span"] = span_text
    app.on_response_prepare.append(_security_headers)
    app.router.add_static("/static", _HERE / "static", name="static")
    app.add_routes(sessions.routes())
    for page in PAGES:
        app.add_routes(page(context).routes())
    return app


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/admin"):
        response.headers.update(_SECURITY_HEADERS)
