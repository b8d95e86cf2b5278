"""The bridge's one aiohttp application: Graph hooks, health, and the REST API under /api/v1/."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bridge.config import Config
from bridge.store import Database
from bridge.templates import TemplateMapping
from bridge.web.appointments import AppointmentQueries
from bridge.web.auth import require
from bridge.web.feed import ChangeFeed
from bridge.web.graph_hooks import MAX_BODY, GraphHooks
from bridge.web.health import Health
from bridge.web.openapi import document


def create_app(
    config: Config, db: Database, hooks: GraphHooks, mapping: Callable[[], TemplateMapping]
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    health = Health(db)
    feed = ChangeFeed(db)
    queries = AppointmentQueries(db, mapping)
    app.add_routes(
        [
            *hooks.routes(),
            web.get("/api/v1/openapi.json", _openapi),
            web.get("/healthz", health.healthz),
            web.get("/readyz", health.readyz),
            web.get("/api/v1/changes", require(config, "workforce", feed.changes)),
            web.get("/api/v1/mailboxes/{mailbox}/appointments", require(config, "workforce", queries.appointments)),
            web.get("/api/v1/mailboxes/{mailbox}/timeline", require(config, "workforce", queries.timeline)),
        ]
    )
    return app


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(document())
