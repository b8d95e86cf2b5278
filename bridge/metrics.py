"""What the bridge counts while it works, for Prometheus (`GET /metrics`, docs/running.md "Monitoring and alerts").

Each service owns one `Metrics` with its own registry rather than prometheus-client's global one, so tests and
several services in one process never add to each other's counts. The parts that count (sources, sync,
delivery, web) receive it, or a plain callable bound to it, and know nothing else of Prometheus. Figures that
live in the database (outbox depth, mailboxes by status, subscriptions) are read at scrape time instead
(bridge/web/metrics.py), so every instance reports the same truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

PREFIX = "presence_bridge"
# Seconds from a change in Exchange to the workforce system's 2xx: the goal is seconds, a backlog is minutes.
_LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
_SYNC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    def __init__(self, instance: str = "") -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        if instance:
            # Which instance answers the scrape: several share one database (docs/running.md "Several instances").
            Info(f"{PREFIX}_instance", "This bridge instance (host:pid:random)", registry=registry).info(
                {"instance": instance}
            )
        self.syncs = Counter(
            f"{PREFIX}_syncs", "Mailbox syncs (a delta read and its commit)", ["source"], registry=registry
        )
        self.sync_seconds = Histogram(
            f"{PREFIX}_sync_seconds", "Duration of a mailbox sync", ["source"], buckets=_SYNC_BUCKETS, registry=registry
        )
        self.requests = Counter(
            f"{PREFIX}_source_requests",
            "HTTP requests to Exchange (Graph or EWS) by answer status; 'unreachable' when none came",
            ["source", "status"],
            registry=registry,
        )
        self.throttled = Counter(
            f"{PREFIX}_throttle_holds",
            "Mailboxes held because Exchange throttled their reads",
            ["source"],
            registry=registry,
        )
        self.changes = Counter(
            f"{PREFIX}_changes_emitted",
            "Changes written to the outbox for the workforce system",
            ["type"],
            registry=registry,
        )
        self.deliveries = Counter(
            f"{PREFIX}_deliveries",
            "Changes sent to the workforce webhook: 'delivered', or the failure (HTTP status, timeout, unreachable)",
            ["status"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_change_latency_seconds",
            "From Exchange's last-modified time of an appointment to the workforce system's 2xx for its change",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.commands = Counter(
            f"{PREFIX}_relay_commands",
            "Requests to the workforce command routes, by command and the HTTP status answered (refusals included)",
            ["command", "status"],
            registry=registry,
        )

    def request(self, source: str, status: str) -> None:
        self.requests.labels(source, status).inc()

    def synced(self, source: str, seconds: float) -> None:
        self.syncs.labels(source).inc()
        self.sync_seconds.labels(source).observe(seconds)

    def throttle_hold(self, source: str) -> None:
        self.throttled.labels(source).inc()

    def emitted(self, change_types: Iterable[str]) -> None:
        for change_type in change_types:
            self.changes.labels(change_type).inc()

    def delivered(self, modified: Sequence[datetime | None], now: datetime) -> None:
        """A batch answered 2xx; `modified` holds each change's last-modified time in Exchange (None: unknown)."""
        self.deliveries.labels("delivered").inc(len(modified))
        for at in modified:
            if at is not None:
                self.latency.observe(max((now - at).total_seconds(), 0.0))

    def delivery_failed(self, status: str, count: int) -> None:
        self.deliveries.labels(status).inc(count)

    def command(self, command: str, status: int) -> None:
        self.commands.labels(command, str(status)).inc()
