"""Bearer tokens from the configuration, each with scopes: `workforce` for the workforce system's routes,
`admin` for administration. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from bridge.config import Config
from bridge.web.problems import problem

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
        return await handler(request)

    return guarded
