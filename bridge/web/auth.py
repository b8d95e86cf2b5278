"""Bearer tokens from the configuration, each with scopes: `workforce` for the workforce system's routes,
`admin` for administration, `metrics` for a Prometheus scraper. Tokens are compared in constant time and never
logged; what an admin token changes is logged with the token's name (the audit trail, docs/running.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bridge.config import Config
from bridge.logs import AUDIT
from bridge.web.problems import problem

audit = logging.getLogger(AUDIT)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require(config: Config, scope: str, handler: Handler) -> Handler:
    """`handler` behind a bearer token that carries `scope`: 401 without a valid token, 403 with the wrong scope."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        token = config.api_token(presented.strip()) if scheme.lower() == "bearer" and presented else None
        if token is None:
            response = problem(401, "Unauthorized", "send Authorization: Bearer <token> with a configured token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="presence-bridge"'
            return response
        if scope not in token.scopes:
            return problem(403, "Forbidden", f"this route needs a token with the {scope!r} scope")
        answer = await handler(request)
        if scope == "admin" and request.method not in ("GET", "HEAD"):
            audit.info("%s %s by token %r: %d", request.method, request.path, token.name, answer.status)
        return answer

    return guarded


def require_once_issued(config: Config, scope: str, handler: Handler) -> Handler:
    """`handler` open to anyone on the listener until a token with `scope` is configured, then behind one."""
    if any(scope in token.scopes for token in config.api_tokens):
        return require(config, scope, handler)
    return handler
