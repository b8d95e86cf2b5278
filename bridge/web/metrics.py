"""`GET /metrics`: the service's counters (bridge/metrics.py), the Graph hooks' notification counts, and gauges
read from the database at scrape time (bridge/store/summary.py), in Prometheus' text format.

The database gauges are read once per scrape on the database thread, then rendered from that snapshot: the
event loop never waits on a query, and every instance sharing a database reports the same figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.metrics import PREFIX, Metrics
from bridge.store import Database, MailboxStatus, SourceStatus
from bridge.store.summary import SUBSCRIPTION_STATES, Summary, summarise
from bridge.web.auth import Handler
from bridge.web.graph_hooks import GraphHooks


class MetricsRoute:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        hooks: GraphHooks,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._hooks = hooks
        self._clock = clock

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        summary = await self._db.run(lambda session: summarise(session, now))
        scrape = CollectorRegistry()
        scrape.register(_StoreGauges(summary))
        scrape.register(_Notifications(self._hooks))
        body = generate_latest(self._metrics.registry) + generate_latest(scrape)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def counted(metrics: Metrics, command: str, handler: Handler) -> Handler:
    """A relay route whose answers are counted by command and status."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        metrics.command(command, response.status)
        return response

    return handle


class _Notifications(Collector):
    """Graph's change notifications as the receiver judged them (GraphHooks counts; this only reports)."""

    def __init__(self, hooks: GraphHooks) -> None:
        self._hooks = hooks

    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily(f"{PREFIX}_notifications_accepted", "Graph notification items accepted")
        accepted.add_metric([], self._hooks.accepted)
        refused = CounterMetricFamily(
            f"{PREFIX}_notifications_refused", "Graph notification items refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(self._hooks.refused.items()):
            refused.add_metric([reason], count)
        echoes = CounterMetricFamily(
            f"{PREFIX}_notification_echoes",
            "Notified mailboxes not read: each item named was the bridge's own write, held at that change key",
        )
        echoes.add_metric([], self._hooks.echoes)
        yield accepted
        yield refused
        yield echoes


class _StoreGauges(Collector):
    def __init__(self, summary: Summary) -> None:
        self._summary = summary

    def collect(self) -> Iterator[Metric]:
        summary, now = self._summary, self._summary.at
        status = GaugeMetricFamily(
            f"{PREFIX}_source_status", "1 for the state each source is in now", labels=["source", "status"]
        )
        since = GaugeMetricFamily(
            f"{PREFIX}_source_status_seconds", "How long each source has been in its state", labels=["source"]
        )
        for source in summary.sources:
            for state in SourceStatus:
                status.add_metric([source.name, state.value], 1.0 if source.status == state.value else 0.0)
            since.add_metric([source.name], max((now - source.since).total_seconds(), 0.0))
        yield status
        yield since
        mailboxes = GaugeMetricFamily(f"{PREFIX}_mailboxes", "Mailboxes by status", labels=["source", "status"])
        for source in summary.sources:
            for kind in MailboxStatus:
                mailboxes.add_metric([source.name, kind.value], summary.mailboxes.get((source.name, kind.value), 0))
        yield mailboxes
        subscriptions = GaugeMetricFamily(
            f"{PREFIX}_subscriptions", "Graph change-notification subscriptions by state", labels=["source", "state"]
        )
        expiry = GaugeMetricFamily(
            f"{PREFIX}_subscription_expiry_seconds",
            "Seconds until the source's soonest subscription expires (negative: expired)",
            labels=["source"],
        )
        for source in summary.sources:
            if source.kind != "graph":
                continue
            for held in SUBSCRIPTION_STATES:
                subscriptions.add_metric([source.name, held], summary.subscriptions.get((source.name, held), 0))
            soonest = summary.soonest_expiry.get(source.name)
            if soonest is not None:
                expiry.add_metric([source.name], (soonest - now).total_seconds())
        yield subscriptions
        yield expiry
        backlog = summary.backlog
        yield GaugeMetricFamily(f"{PREFIX}_outbox_depth", "Changes not yet delivered", value=backlog.undelivered)
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_age_seconds",
            "Age of the oldest undelivered change (0 when none)",
            value=backlog.oldest_age_s(now),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_failing", "Undelivered changes whose last attempt failed", value=backlog.failing
        )
