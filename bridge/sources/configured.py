"""The sources a configuration names, built and ready to use."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from bridge.config import Config, GraphSourceConfig
from bridge.sources.base import IGNORE_REQUESTS, CalendarSource
from bridge.sources.ews import ews_source
from bridge.sources.graph import graph_source


def build_sources(config: Config, on_request: Callable[[str, str], None] | None = None) -> dict[str, CalendarSource]:
    """Each configured source; `on_request(source, status)` hears of every HTTP request they send."""
    sources: dict[str, CalendarSource] = {}
    for name, source in config.sources.items():
        observe = IGNORE_REQUESTS if on_request is None else partial(on_request, name)
        if isinstance(source, GraphSourceConfig):
            sources[name] = graph_source(source, on_request=observe)
        else:
            sources[name] = ews_source(source, on_request=observe)
    return sources
