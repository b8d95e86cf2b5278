"""The running bridge: wiring, and the supervisor of its long-running tasks.

One process runs the webhook receiver and REST API, the subscription upkeep, the sync worker, the delivery
worker, the mapping watcher, the pruning of old changes and the sync progress log. Stopping (SIGTERM, Ctrl-C)
lets in-flight work commit or leaves it for the next start: every task's state is in the database, so nothing is
lost either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiohttp import web
from sqlmodel import Session

from bridge import __version__, logs
from bridge.admin import register
from bridge.config import Config
from bridge.delivery import DeliveryWorker
from bridge.errors import UserError
from bridge.group_roster import GroupFollower
from bridge.instances import instance_name
from bridge.logs import about
from bridge.mailbox_set import MailboxSetWatch
from bridge.mailbox_sync import DEFAULT_TIMING, MailboxSync, SyncTiming
from bridge.mailbox_zones import MailboxZones
from bridge.mapping_change import MappingChanges
from bridge.marks import DirtyMarks
from bridge.metrics import Metrics
from bridge.notices import Notifier
from bridge.progress import ProgressLog
from bridge.relay import Relay
from bridge.retention import Retention
from bridge.sources.base import CalendarSource
from bridge.sources.configured import WEBHOOK_NOTIFICATIONS, ConfiguredSource, configure_sources
from bridge.sources.watching import MailboxWatch, WebhookSubscriptions
from bridge.store import Database
from bridge.store.db import connected_instances
from bridge.store.health import source_works
from bridge.store.summary import summarise
from bridge.store.work import active_addresses, lease_holders, mailbox_ids, mark_active_dirty, release_gone
from bridge.subscriptions import SubscriptionManager, SubscriptionSettings
from bridge.supervisor import Stops, SupervisedTask, Supervisor
from bridge.templates import LiveMapping, default_mapping_path
from bridge.waiting import first_of
from bridge.web.answers import record
from bridge.web.app import create_app
from bridge.web.graph_hooks import GraphHooks
from bridge.web.listener import Listener, runner_options

log = logging.getLogger(__name__)
# How often the listener's certificate files are looked at for a renewal (certbot, an ACME client, an admin).
_CERTIFICATE_POLL_S = 5.0
_TASKS_STOP_WITHIN_S = 4.0
# How often an instance looks for instances that are gone, whose mailboxes it may then take over (PostgreSQL).
_INSTANCES_POLL_S = 2.0


class Service:
    def __init__(
        self,
        config: Config,
        *,
        sources: Mapping[str, ConfiguredSource] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timing: SyncTiming = DEFAULT_TIMING,
        owner: str | None = None,
        database: Database | None = None,
    ) -> None:
        self.config = config
        # Whichever way the service was started (command line, Windows service, a test), its secrets stay out of the
        # logs.
        logs.redact_secrets(config.secrets())
        # host:pid:random (bridge/instances.py): several instances on one host hold their leases apart.
        self.owner = owner or instance_name()
        logs.name_instance(self.owner)
        self._clock = clock
        self.db = database or Database(config.database_url)
        self.db.name_instance(self.owner)
        # A changed mapping goes in force only through `mapping_changes`, which may hold it for confirmation.
        self.mapping = LiveMapping(config.templates or default_mapping_path(), apply_on_reload=False)
        self.metrics = Metrics(self.owner)
        configured = dict(sources) if sources is not None else configure_sources(config, self.metrics.request)
        self.sources: dict[str, CalendarSource] = {name: source.calendar for name, source in configured.items()}
        # Each source's change detection: watches run as tasks of their own, webhook subscriptions are kept by one
        # upkeep for all (watching.py).
        self.watchers: dict[str, MailboxWatch] = {}
        webhooks: dict[str, WebhookSubscriptions] = {}
        for name, source in configured.items():
            source.changes.attach(_Wiring(name, self.watchers, webhooks))
        self._stop = asyncio.Event()
        self._sync_wake = asyncio.Event()
        self._subscriptions_wake = asyncio.Event()
        self.marks = DirtyMarks(self.db, on_commit=self._sync_wake.set, clock=clock)
        self.hooks = GraphHooks(
            self.db, self.marks, decode=WEBHOOK_NOTIFICATIONS, clock=clock, on_lifecycle=self._lifecycle
        )
        self.delivery = DeliveryWorker(self.db, config.workforce, owner=self.owner, metrics=self.metrics)
        self.sync = MailboxSync(
            self.db,
            self.sources,
            lambda: self.mapping.current,
            config.sync,
            self.owner,
            timing=timing,
            clock=clock,
            on_changes=self.delivery.notify,
            on_source_back=self._source_back,
            metrics=self.metrics,
        )
        # Without a webhook the pull feed is the only reader: changes then age out from when they were made.
        self.retention = Retention(
            self.db, config.workforce.retention, delivered_only=config.workforce.url is not None, clock=clock
        )
        self.progress = ProgressLog(self.db, clock=clock)
        self.mapping_changes = MappingChanges(self.db, self.mapping, config.sync, self.sync.remap, clock=clock)
        self.notifier = Notifier(self.db, config, self.sources, clock=clock) if config.notify else None
        self.relay = Relay(
            self.db,
            self.sources,
            lambda: self.mapping.current,
            config.mail,
            record=record,
            owner=self.owner,
            clock=clock,
            time_zones=config.source_time_zones,
        )
        self.zones = MailboxZones(self.db, self.sources, config.source_time_zones, clock=clock)
        self.subscriptions = (
            SubscriptionManager(
                self.db,
                webhooks,
                SubscriptionSettings(config.graph_notification_url, config.graph_lifecycle_url),
                clock=clock,
                forget=self.hooks.forget,
            )
            if webhooks and config.graph_notification_url and config.graph_lifecycle_url
            else None
        )
        # Mailboxes added or enabled by another process (the CLI) or instance are watched within seconds.
        self.mailbox_set = MailboxSetWatch(self.db, self._mailboxes_changed)
        self.groups = GroupFollower(
            self.db,
            self.sources,
            {name: source.directory for name, source in configured.items() if source.directory is not None},
            config.source_groups,
            lambda: self.mapping.current,
            on_change=self._mailboxes_changed,
        )
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self._stopped = False
        self._started: float | None = None
        self._supervisor = Supervisor(self._stop)
        self.url = ""

    async def start(self) -> None:
        await asyncio.to_thread(self.db.upgrade)
        now = self._clock()
        await self.db.run(lambda session: register(session, self.config, now))
        await self.db.run(partial(self._take_over_gone, starting=True))
        # Notifications sent while no instance listened are lost: every mailbox catches up once (one delta each).
        await self.db.run(lambda session: mark_active_dirty(session, now))
        await self.mapping_changes.start()
        self._runner = web.AppRunner(
            create_app(
                self.config,
                self.db,
                self.hooks,
                lambda: self.mapping.current,
                self.relay,
                live=self.mapping,
                on_mapping_change=self.mapping_changes.changed,
                mapping_changes=self.mapping_changes,
                sources=self.sources,
                metrics=self.metrics,
                groups=self.groups,
            ),
            access_log=None,
            **runner_options(self.config.listen),
        )
        await self._runner.setup()
        self._listener = Listener(self._runner, self.config.listen)
        listen = self.config.listen
        try:
            self.url = await self._listener.start()
        except OSError as exc:
            # A port in use or an address not on this host: the admin's fix is in the config, not in a traceback.
            # asyncio wraps the socket's error in a sentence that repeats the address; its errno says it plainly.
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise UserError(
                f"cannot listen on {listen.host}:{listen.port}: {why} (listen in {self.config.path})"
            ) from None
        listener = self._listener
        self._supervise("certificate", lambda: listener.watch_certificate(_CERTIFICATE_POLL_S), Stops.BY_CANCEL)
        self._supervise("sync", lambda: self.sync.run(self._stop, self._sync_wake))
        self._supervise("delivery", lambda: self.delivery.run(self._stop))
        self._supervise("mapping", lambda: self.mapping.watch(2.0, self.mapping_changes.changed), Stops.BY_CANCEL)
        self._supervise("relay", lambda: self.relay.run(self._stop))
        self._supervise("time zones", lambda: self.zones.run(self._stop))
        self._supervise("mailboxes", lambda: self.mailbox_set.run(self._stop))
        self._supervise("retention", lambda: self.retention.run(self._stop))
        self._supervise("progress", lambda: self.progress.run(self._stop))
        self._supervise("groups", lambda: self.groups.run(self._stop))
        if self.db.backend == "postgresql":
            self._supervise("instances", self._watch_instances)
        for name, watcher in self.watchers.items():
            self._supervise(f"watch {name}", self._watching(name, watcher))
        if self.notifier is not None:
            notifier = self.notifier
            self._supervise("notices", lambda: notifier.run(self._stop))
        if self.subscriptions is not None:
            subscriptions = self.subscriptions
            self._supervise("subscriptions", lambda: subscriptions.run(self._stop, self._subscriptions_wake))
        self._started = time.monotonic()
        summary = await self.db.run(lambda session: summarise(session, now))
        statuses = {status: count for status, count in summary.mailboxes_by_status().items() if count}
        log.info(
            "presence-bridge %s started: sources %s; mailboxes %s; listening on %s; database %s; instance %s",
            __version__,
            ", ".join(f"{name} ({source.kind})" for name, source in self.config.sources.items()),
            ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "none",
            self.url,
            self.db.backend,
            self.owner,
        )

    def _take_over_gone(self, session: Session, *, starting: bool = False) -> bool:
        """Free at once what instances that are gone (killed, crashed) held, rather than when their leases expire;
        whether there was any. On PostgreSQL an instance is gone once it has no connection open (its connections
        carry its name); SQLite serves one instance, so at the start whatever another name holds is a past one's.
        """
        holders = lease_holders(session) - {self.owner}
        if self.db.backend == "sqlite":
            gone = holders if starting else set()
        else:
            gone = holders - connected_instances(session, holders)
        if gone:
            log.info("taking over the work of instance(s) gone: %s", ", ".join(sorted(gone)))
            release_gone(session, gone, self.owner)
        return bool(gone)

    async def _watch_instances(self) -> None:
        while not self._stop.is_set():
            await first_of(self._stop, within=_INSTANCES_POLL_S)
            if not self._stop.is_set() and await self.db.run(self._take_over_gone):
                self._sync_wake.set()
                self.delivery.notify()
                await self.relay.recover()  # the commands it was sending are this instance's now

    async def stop(self) -> None:
        """Stop every task, letting running work commit; stopping twice is harmless.

        Bounded, so that SIGTERM ends the process within 10 s (systemd's and a container runtime's patience is
        finite): each task gets `_TASKS_STOP_WITHIN_S` (bridge/supervisor.py), requests in flight 3 s more.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        await self._supervisor.stop()
        if self._runner is not None:
            await self._runner.cleanup()  # requests in flight get `runner_options`' shutdown_timeout
        for source in self.sources.values():
            await source.close()
        self.db.close()
        if self._started is not None:
            log.info("presence-bridge stopped after %.0f s", time.monotonic() - self._started)

    def _watching(self, name: str, watcher: MailboxWatch) -> Callable[[], Coroutine[Any, Any, None]]:
        """The watch of one source: its active mailboxes, and their changes marked dirty like a notification's."""

        async def mailboxes() -> list[str]:
            return await self.db.run(lambda session: active_addresses(session, name))

        def answered(session: Session, addresses: Collection[str]) -> list[int]:
            # The server answered the watcher with the service account: the source works, whatever held it.
            source_works(session, name, self._clock())
            return mailbox_ids(session, addresses)

        async def changed(addresses: Collection[str]) -> None:
            await self.marks.mark(await self.db.run(lambda session: answered(session, addresses)))

        async def lost(addresses: Collection[str]) -> None:
            # Not watched any more: reading them finds out whether the source is down, and when it is back.
            await self.marks.mark(await self.db.run(lambda session: mailbox_ids(session, addresses)))

        async def watch() -> None:
            with about(source=name):
                await watcher.run(mailboxes, changed, self._stop, on_lost=lost)

        return watch

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    def _mailboxes_changed(self, source: str) -> None:
        self._subscriptions_wake.set()
        self._sync_wake.set()
        watcher = self.watchers.get(source)
        if watcher is not None:
            watcher.refresh()

    def _source_back(self, name: str) -> None:
        """A source the sync engine had held answers again: its watcher reconnects now, not after its back-off."""
        watcher = self.watchers.get(name)
        if watcher is not None:
            watcher.retry_now()

    def _lifecycle(self) -> None:
        self._subscriptions_wake.set()
        self._sync_wake.set()

    def _supervise(
        self, name: str, work: Callable[[], Coroutine[Any, Any, None]], stops: Stops = Stops.ON_EVENT
    ) -> None:
        self._supervisor.start(SupervisedTask(name, work, stops, within_s=_TASKS_STOP_WITHIN_S))


@dataclass(frozen=True, slots=True)
class _Wiring:
    """Where the service puts one source's change detection (`ChangeWiring`, watching.py)."""

    source: str
    watchers: dict[str, MailboxWatch]
    webhooks: dict[str, WebhookSubscriptions]

    def watch(self, watch: MailboxWatch) -> None:
        self.watchers[self.source] = watch

    def keep_subscriptions(self, subscriptions: WebhookSubscriptions) -> None:
        self.webhooks[self.source] = subscriptions
