"""The sources a configuration names, built and ready to use."""

from __future__ import annotations

import logging

from bridge.config import Config, GraphSourceConfig
from bridge.sources.base import CalendarSource
from bridge.sources.graph import graph_source

log = logging.getLogger(__name__)


def build_sources(config: Config) -> dict[str, CalendarSource]:
    sources: dict[str, CalendarSource] = {}
    for name, source in config.sources.items():
        if isinstance(source, GraphSourceConfig):
            sources[name] = graph_source(source)
        else:
            log.warning("source %s: EWS is not supported by this version; its mailboxes are not synced", name)
    return sources
