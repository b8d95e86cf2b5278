"""The sources a configuration names, built and ready to use: the one module above which no backend is named.

Each source comes as its `CalendarSource` (base.py), its `ChangeDetection` (watching.py) and, when it can list a
group's members, its `GroupDirectory`; the service wires them without knowing which backend they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bridge.config import Config, GraphSourceConfig
from bridge.sources import graph_wire
from bridge.sources.base import IGNORE_REQUESTS, CalendarSource, GroupDirectory
from bridge.sources.ews import ews_source
from bridge.sources.ews_watch import EwsWatcher
from bridge.sources.graph import graph_source
from bridge.sources.watching import ChangeDetection, NotificationDecoder

# What the webhook receiver reads: Graph is the one backend that calls the bridge back, and the bodies it POSTs
# have Graph's shape whichever tenant sent them.
WEBHOOK_NOTIFICATIONS: NotificationDecoder = graph_wire.decode_notifications


@dataclass(frozen=True, slots=True)
class ConfiguredSource:
    calendar: CalendarSource
    changes: ChangeDetection
    directory: GroupDirectory | None = None  # the members of a group the source may follow (Graph)


def configure_sources(
    config: Config, on_request: Callable[[str, str], None] | None = None
) -> dict[str, ConfiguredSource]:
    """Each configured source with its change detection; `on_request(source, status)` hears of every HTTP request
    they send."""
    sources: dict[str, ConfiguredSource] = {}
    for name, settings in config.sources.items():
        observe = IGNORE_REQUESTS if on_request is None else partial(on_request, name)
        if isinstance(settings, GraphSourceConfig):
            graph = graph_source(settings, on_request=observe)
            sources[name] = ConfiguredSource(graph, graph, graph)
        else:
            ews = ews_source(settings, on_request=observe)
            sources[name] = ConfiguredSource(ews, EwsWatcher(ews, mode=settings.watch, max_streams=settings.streams))
    return sources


def build_sources(config: Config, on_request: Callable[[str, str], None] | None = None) -> dict[str, CalendarSource]:
    """Each configured source's calendar, for the commands that only read and write (`check`, group rosters)."""
    return {name: source.calendar for name, source in configure_sources(config, on_request).items()}
