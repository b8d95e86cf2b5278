"""Query parameters the OpenAPI document does not give an operation are refused, as unknown body fields are.

A typo (`?limt=10`) would otherwise be ignored without a word; checking against the document itself keeps what
the routes accept and what the document says from drifting apart.
"""

from __future__ import annotations

from aiohttp import web

from bridge.web.auth import Handler
from bridge.web.bodies import invalid_request
from bridge.web.openapi import query_parameters

_MAX_NAME = 100  # an unknown name is quoted back: cut, like anything a caller chose


@web.middleware
async def refuse_unknown_query(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    known = None if resource is None else query_parameters(resource.canonical, request.method)
    unknown = sorted(request.query.keys() - known) if known is not None else []
    if unknown:
        reason = f"unknown query parameter; expected one of {sorted(known or ())}"
        return invalid_request([{"name": name[:_MAX_NAME], "reason": reason} for name in unknown])
    return await handler(request)
