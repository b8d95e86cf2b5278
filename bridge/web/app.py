"""The bridge's one aiohttp application: Graph hooks, health, the REST API under /api/v1/, the admin page under
/admin/."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from aiohttp import web

from bridge.config import Config
from bridge.group_roster import GroupFollower
from bridge.mapping_change import MappingChanges
from bridge.metrics import Metrics
from bridge.relay import Relay
from bridge.sources.base import CalendarSource
from bridge.store import Database
from bridge.templates import LiveMapping, TemplateMapping
from bridge.web.admin import admin_app
from bridge.web.admin.context import AdminContext
from bridge.web.admin_api import AdminRoutes, OnMappingChange
from bridge.web.admin_status import AdminStatus
from bridge.web.appointments import AppointmentQueries
from bridge.web.auth import require, require_once_issued
from bridge.web.bodies import BODY_TIMEOUT
from bridge.web.commands import CommandRoutes
from bridge.web.feed import ChangeFeed
from bridge.web.graph_hooks import MAX_BODY, GraphHooks
from bridge.web.health import Health
from bridge.web.metrics import MetricsRoute, counted
from bridge.web.openapi import document
from bridge.web.query import refuse_unknown_query


def create_app(
    config: Config,
    db: Database,
    hooks: GraphHooks,
    mapping: Callable[[], TemplateMapping],
    relay: Relay,
    *,
    live: LiveMapping | None = None,
    on_mapping_change: OnMappingChange | None = None,
    mapping_changes: MappingChanges | None = None,
    sources: Mapping[str, CalendarSource] | None = None,
    metrics: Metrics | None = None,
    groups: GroupFollower | None = None,
) -> web.Application:
    """The app; `live` is the mapping file the admin routes edit (without it they only show the mapping), and
    `mapping_changes` what the admin page's Mapping page applies an edit with (without it the page is read-only);
    `sources` are what a roster import asks whether Exchange knows its mailboxes, `groups` what follows each
    source's Entra ID group."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[refuse_unknown_query])
    app.on_response_prepare.append(_nosniff)
    app[BODY_TIMEOUT] = config.listen.body_timeout.total_seconds()
    metrics = metrics or Metrics()
    scrape = MetricsRoute(db, metrics, hooks)
    health = Health(db)
    feed = ChangeFeed(db, config.workforce.retention)
    queries = AppointmentQueries(db, mapping)
    administration = AdminRoutes(
        db, config, mapping, live=live, on_mapping_change=on_mapping_change, sources=sources or {}, groups=groups
    )
    mailbox_admin = "/api/v1/admin/mailboxes/{mailbox}"
    commands = CommandRoutes(db, relay, mapping)
    relayed = partial(counted, metrics)
    appointment = "/api/v1/mailboxes/{mailbox}/appointments/{id}"
    app.add_routes(
        [
            *hooks.routes(),
            web.get("/api/v1/openapi.json", _openapi),
            web.get("/healthz", health.healthz),
            web.get("/readyz", health.readyz),
            web.get("/metrics", require_once_issued(config, "metrics", scrape.metrics)),
            web.get("/api/v1/changes", require(config, "workforce", feed.changes)),
            web.get("/api/v1/mailboxes/{mailbox}/appointments", require(config, "workforce", queries.appointments)),
            web.get("/api/v1/mailboxes/{mailbox}/timeline", require(config, "workforce", queries.timeline)),
            web.post(
                "/api/v1/mailboxes/{mailbox}/appointments",
                require(config, "workforce", relayed("create", commands.create)),
            ),
            web.patch(appointment, require(config, "workforce", relayed("update", commands.update))),
            web.delete(appointment, require(config, "workforce", relayed("delete", commands.delete))),
            web.put(
                "/api/v1/mailboxes/{mailbox}/state", require(config, "workforce", relayed("state", commands.state))
            ),
            web.delete(
                "/api/v1/mailboxes/{mailbox}/bridge-items",
                require(config, "workforce", relayed("purge", commands.purge)),
            ),
            web.post("/api/v1/mail", require(config, "workforce", relayed("mail", commands.mail))),
            web.get("/api/v1/commands/{id}", require(config, "workforce", commands.command)),
            web.get("/api/v1/admin/mailboxes", require(config, "admin", administration.mailboxes)),
            web.post("/api/v1/admin/mailboxes", require(config, "admin", administration.add)),
            web.post("/api/v1/admin/mailboxes/import", require(config, "admin", administration.import_roster)),
            web.post("/api/v1/admin/sources/{source}/group/sync", require(config, "admin", administration.sync_group)),
            web.post(f"{mailbox_admin}/enable", require(config, "admin", administration.enable)),
            web.post(f"{mailbox_admin}/disable", require(config, "admin", administration.disable)),
            web.post(f"{mailbox_admin}/resync", require(config, "admin", administration.resync)),
            web.delete(mailbox_admin, require(config, "admin", administration.remove)),
            web.get("/api/v1/admin/status", require(config, "admin", AdminStatus(db).status)),
            web.get("/api/v1/admin/templates", require(config, "admin", administration.templates)),
            web.put("/api/v1/admin/templates", require(config, "admin", administration.replace_templates)),
            web.post("/api/v1/admin/templates/apply", require(config, "admin", administration.apply_templates)),
            web.get("/admin", _to_admin_page),
        ]
    )
    page = AdminContext(
        config,
        db,
        administration,
        relay,
        mapping,
        live=live,
        on_mapping_change=on_mapping_change,
        mapping_changes=mapping_changes,
    )
    app.add_subapp("/admin/", admin_app(page))
    return app


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(document())


async def _to_admin_page(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/admin/")


async def _nosniff(request: web.Request, response: web.StreamResponse) -> None:
    # The validation echo returns caller-chosen text: no browser may guess it to be HTML or script.
    response.headers["X-Content-Type-Options"] = "nosniff"
