"""What every admin page is built with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.config import Config
from bridge.mapping_change import MappingChanges
from bridge.relay import Relay
from bridge.store import Database
from bridge.templates import LiveMapping, TemplateMapping
from bridge.web.admin_api import AdminRoutes, OnMappingChange


@dataclass(frozen=True)
class AdminContext:
    """What a page may use: the configuration, the database, the admin API's logic and the relay."""

    config: Config
    db: Database
    administration: AdminRoutes
    relay: Relay
    mapping: Callable[[], TemplateMapping]
    live: LiveMapping | None = None
    on_mapping_change: OnMappingChange | None = None
    mapping_changes: MappingChanges | None = None  # how the Mapping page applies an edit (None: read-only)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
