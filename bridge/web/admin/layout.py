"""What every admin page shares: who is signed in, the navigation of base.html and the form's CSRF field.

Pages render with `render(request, "page.html", {...})`, which adds these to the page's own values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

CSRF_FIELD = "csrf_token"
# The navigation of base.html: (path under /admin/, label).
NAV = (("", "Overview"), ("mailboxes", "Mailboxes"), ("mapping", "Mapping"), ("explain", "Explain"))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The administrator behind a request: the name of the admin token they signed in with."""

    name: str
    csrf_token: str
    notice: str | None  # what the previous form did, shown once on this page


SIGNED_IN = web.RequestKey("signed_in", SignedIn)


def signed_in(request: web.Request) -> SignedIn:
    """The signed-in administrator; every route but the public ones has one (the session middleware saw to it)."""
    return request[SIGNED_IN]


def hidden_csrf_field(token: str) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


def render(request: web.Request, template: str, page: dict[str, Any], *, status: int = 200) -> web.Response:
    """`template` (which extends base.html) with `page`'s values and base.html's."""
    who = request.get(SIGNED_IN)
    here = request.path.removeprefix("/admin/").split("/")[0]
    shared = {
        "nav": [(f"/admin/{path}", label, path == here) for path, label in NAV],
        "signed_in": who,
        "csrf_field": hidden_csrf_field(who.csrf_token) if who is not None else "",
    }
    return aiohttp_jinja2.render_template(template, request, {**shared, **page}, status=status)
