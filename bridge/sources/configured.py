"""The sources a configuration names, built and ready to use."""

from __future__ import annotations

from bridge.config import Config, GraphSourceConfig
from bridge.sources.base import CalendarSource
from bridge.sources.ews import ews_source
from bridge.sources.graph import graph_source


def build_sources(config: Config) -> dict[str, CalendarSource]:
    sources: dict[str, CalendarSource] = {}
    for name, source in config.sources.items():
        if isinstance(source, GraphSourceConfig):
            sources[name] = graph_source(source)
        else:
            sources[name] = ews_source(source)
    return sources
