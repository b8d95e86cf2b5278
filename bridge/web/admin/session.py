"""Signing in to the admin page, its session cookie and the CSRF check every form gets (docs/admin.md).

An administrator signs in with an API token that has the `admin` scope. The session lives in the database
(bridge/store/admin_sessions.py), so every instance sharing it knows the session and signing out ends it
everywhere; the cookie carries only a random secret. The cookie is HttpOnly, SameSite=Strict, limited to
/admin/, Secure when the page is reached over TLS (the listener's own, or a proxy's: `public_url` is https), and
has no expiry of its own: the server ends a session idle for `admin_page.session_idle_timeout`.

Every POST under /admin/ is checked here, once, before any page sees it: a signed-in session and a form field
`csrf_token` equal to the session's (an HMAC of the cookie's secret, so it is never stored). The sign-in form,
which has no session yet, is checked the same way against a cookie of its own (double submit). A page module
therefore needs nothing of its own for either; templates put the field in a form with `{{ csrf_field }}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from bridge.config import Config
from bridge.logs import AUDIT
from bridge.store import Database
from bridge.store.admin_sessions import close_session, open_session, resume_session, set_notice
from bridge.web.admin.layout import CSRF_FIELD, SIGNED_IN, SignedIn, hidden_csrf_field, render
from bridge.web.auth import Handler
from bridge.web.bodies import BODY_TIMEOUT

log = logging.getLogger(__name__)
audit = logging.getLogger(AUDIT)

COOKIE = "presence_bridge_admin"
SIGN_IN_COOKIE = "presence_bridge_sign_in"
COOKIE_PATH = "/admin/"
# Routes that answer without a session: the sign-in form and the style sheet it uses.
PUBLIC_ROUTES = frozenset({"sign_in", "static"})
_REASONS = {
    "expired": "Your session ended (idle too long, or signed out elsewhere). Sign in again.",
    "signed-out": "You are signed out.",
}


_SECRET = web.RequestKey("session_secret", str)


async def tell(request: web.Request, text: str, db: Database) -> None:
    """Show `text` once on the next page this administrator sees (after a form's redirect)."""
    secret = request[_SECRET]
    await db.run(lambda session: set_notice(session, secret, text))


def csrf_token_for(secret: str) -> str:
    return hmac.new(secret.encode(), b"admin page form", hashlib.sha256).hexdigest()


def is_secure(request: web.Request, config: Config) -> bool:
    """TLS between the browser and the bridge: on the listener, or at a proxy in front (public_url says so)."""
    return request.secure or (config.public_url or "").startswith("https://")


class AdminSessions:
    """The admin app's middleware and the sign-in / sign-out routes."""

    def __init__(self, config: Config, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._config = config
        self._db = db
        self._clock = clock
        self._idle = config.admin_page.session_idle_timeout

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/sign-in", self.sign_in_form, name="sign_in"),
            web.post("/sign-in", self.sign_in, name="sign_in_post"),
            web.post("/sign-out", self.sign_out, name="sign_out"),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        name = request.match_info.route.name
        if name in PUBLIC_ROUTES or name == "sign_in_post":
            return await handler(request)
        secret = request.cookies.get(COOKIE, "")
        now, idle = self._clock(), self._idle
        found = (
            await self._db.run(
                lambda session: resume_session(session, secret, now, idle, take_notice=request.method == "GET")
            )
            if secret
            else None
        )
        if found is None or not self._is_admin_token(found.token_name):
            return self._to_sign_in(request, "expired" if secret else None)
        who = SignedIn(found.token_name, csrf_token_for(secret), found.notice)
        request[SIGNED_IN] = who
        request[_SECRET] = secret
        if request.method != "POST":
            return await handler(request)
        refused = await self._csrf_refusal(request, who.csrf_token)
        answer = refused or await handler(request)
        audit.info("%s %s by token %r (admin page): %d", request.method, request.path, who.name, answer.status)
        return answer

    async def sign_in_form(self, request: web.Request) -> web.StreamResponse:
        message = _REASONS.get(request.query.get("reason", ""))
        return self._sign_in_page(request, message, request.query.get("next", ""), status=200)

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        expected = request.cookies.get(SIGN_IN_COOKIE, "")
        refused = await self._csrf_refusal(request, expected)
        if refused is not None:
            return refused
        form = await request.post()
        presented, wanted = str(form.get("token", "")).strip(), str(form.get("next", ""))
        token = self._config.api_token(presented) if presented else None
        if token is None:
            log.warning("admin page: a sign-in with an unknown token was refused")
            return self._sign_in_page(request, "That is not a token of this bridge.", wanted, status=401, error=True)
        if "admin" not in token.scopes:
            audit.warning("admin page: sign-in with token %r refused: it has no admin scope", token.name)
            message = f"The token {token.name!r} has no admin scope; sign in with an admin token."
            return self._sign_in_page(request, message, wanted, status=403, error=True)
        secret, now, idle = secrets.token_urlsafe(32), self._clock(), self._idle
        await self._db.run(lambda session: open_session(session, secret, token.name, now, idle))
        audit.info("admin page: signed in with token %r", token.name)
        answer = see_other(_next_page(wanted))
        self._set_cookie(request, answer, COOKIE, secret)
        answer.del_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)
        return answer

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        secret = request[_SECRET]
        await self._db.run(lambda session: close_session(session, secret))
        answer = see_other(f"{COOKIE_PATH}sign-in?reason=signed-out")
        answer.del_cookie(COOKIE, path=COOKIE_PATH)
        return answer

    def _is_admin_token(self, name: str) -> bool:
        # A token taken out of the configuration (or its admin scope) ends its sessions at the next restart.
        return any(token.name == name and "admin" in token.scopes for token in self._config.api_tokens)

    async def _csrf_refusal(self, request: web.Request, expected: str) -> web.Response | None:
        try:
            async with asyncio.timeout(request.config_dict[BODY_TIMEOUT]):
                form = await request.post()
        except TimeoutError:
            return _refusal(request, 408, "The form took too long to arrive. Try again.")
        given = form.get(CSRF_FIELD)
        if not expected or not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
            log.warning("admin page: %s %s refused: its form had no valid CSRF token", request.method, request.path)
            return _refusal(
                request,
                403,
                "This form did not come from this page, or it is out of date. Go back, reload the page and try again.",
            )
        return None

    def _to_sign_in(self, request: web.Request, reason: str | None) -> web.Response:
        query = {"next": request.path_qs if request.method == "GET" else request.path}
        answer = see_other(f"{COOKIE_PATH}sign-in?{urlencode(query | ({'reason': reason} if reason else {}))}")
        if reason:
            answer.del_cookie(COOKIE, path=COOKIE_PATH)
        return answer

    def _sign_in_page(
        self, request: web.Request, message: str | None, wanted: str, *, status: int, error: bool = False
    ) -> web.Response:
        token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)
        page = {
            "message": message,
            "error": error,
            "next": _next_page(wanted),
            "sign_in_field": hidden_csrf_field(token),
            "idle": f"{max(1, round(self._idle.total_seconds() / 60))} minutes",
        }
        answer = render(request, "sign_in.html", page, status=status)
        self._set_cookie(request, answer, SIGN_IN_COOKIE, token)
        return answer

    def _set_cookie(self, request: web.Request, answer: web.Response, name: str, value: str) -> None:
        # No Max-Age: the cookie ends with the browser; the server ends the session before that when idle.
        secure = is_secure(request, self._config)
        answer.set_cookie(name, value, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=secure)


def see_other(location: str) -> web.Response:
    """The answer to a form: go to `location` with a GET (Post/Redirect/Get)."""
    return web.Response(status=303, headers={"Location": location})


def _next_page(wanted: str) -> str:
    """Where to go after signing in: a page of the admin app only, never another site (no open redirect)."""
    if wanted.startswith(COOKIE_PATH) and "\\" not in wanted and not wanted.startswith(COOKIE_PATH + "/"):
        return wanted
    return COOKIE_PATH


def _refusal(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "refused.html", {"message": message}, status=status)
