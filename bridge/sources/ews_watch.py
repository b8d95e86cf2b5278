"""Change detection for EWS mailboxes: streaming subscriptions on their calendar folders (pull as a fallback).

`EwsWatcher` is the EWS source's `ChangeDetection` (watching.py): a `MailboxWatch`, which the service runs with the
engine's callbacks.

The mailboxes are split into groups of at most `per_connection` (Exchange takes at most 200 subscription ids per
GetStreamingEvents). Each group runs the same cycle until the watcher stops:

1. ask `mailboxes()` again: keep the group's members that are still watched, fill free places with mailboxes no
   group holds. A new mailbox is taken at once (`refresh()`, which the service calls when the set of mailboxes
   changed, or the regroup every minute): a listening group with room goes round again now instead of at its
   next reconnect, and a new group opens only when no group has room. Going round costs the group's catch-up
   (step 2: one SyncFolderItems per member, no view when nothing changed), which is why only as many groups as
   the new mailboxes need are made to;
2. subscribe each member's calendar folder afresh. Streaming subscriptions cannot resume from a watermark, so
   whatever changed while nothing listened is only found by reading: right after subscribing, `on_changed(all
   members)` is the catch-up, and the engine's sync then reads each mailbox from its stored SyncFolderItems
   state. Subscribing first and catching up second leaves no gap (a change in between is reported twice);
3. open one GetStreamingEvents for the group's subscription ids on a thread of its own, not the source's pool: it
   blocks for up to 30 minutes. Each batch of notifications becomes `on_changed(the mailboxes named)` on the
   event loop;
4. when the server closes the connection (`Closed` after `connection_minutes`), unsubscribe and go round again;
   when it fails (cut, network, ErrorServerBusy, 401), back off `backoff_first` doubling to `backoff_max`, with
   jitter, then go round again; refused credentials wait at least `auth_backoff_first` (5 minutes) doubling to an
   hour, the pace the sync engine probes them at, so that the service account is never locked out
   (docs/running.md). An outage is logged once and its end once (bridge/outages.py) for the whole source, however
   many groups fail.

Grouping across mailboxes: a subscription belongs to the account that made it, and with impersonation that is
the service account for every mailbox, so one GetStreamingEvents may carry the ids of many mailboxes (Exchange:
"all subscriptions in a group must be created by the same account"; the emulator checks the same owner,
ews_subscriptions.get). The request itself impersonates one member, the group's anchor (its first member that
subscribed). Exchange 2013+ routes a subscription to its mailbox's server; for a group to be served by one
connection, the subscriptions are made with the anchor's `X-BackEndOverrideCookie` (MS docs, "Maintain affinity
between a group of subscriptions and the appropriate mailbox server"): the anchor subscribes first, and its
cookie is set on the other members' accounts before they subscribe. exchangelib still sends each member's own
address as X-AnchorMailbox; that real Exchange routes by the cookie alone is an assumption not checked here.

A mailbox Exchange refuses (MailboxNotFound: no such mailbox, may not impersonate, no access) is left out of the
group and logged once; the sync engine disables it when it reads it. It keeps its place in the group and is tried
again at the next reconnect.

Threads and connections: subscribe, unsubscribe and GetEvents are ordinary calls on the source's bounded pool
(`EwsSource.call`, which also translates errors). A stream holds one of exchangelib's pooled connections for its
whole life, so the watcher asks the source to make room for one connection per group
(`EwsSource.reserve_stream_connections`); otherwise the streams would starve the workers of connections.

Stopping: exchangelib has no way to cancel `get_streaming_events`, and the shortest ConnectionTimeout is a
minute. The loop thread instead shuts the stream's socket for reading (urllib3's `HTTPResponse.shutdown`, made
for exactly this): the blocked read sees the end of the stream at once and the thread ends.

Pull mode: the same cycle with pull subscriptions and one GetEvents per member every `pull_interval` seconds, for
when streaming is not possible (a load balancer cutting long responses).

Exchange's limit on streaming connections (HangingConnectionLimit, 3 by default on-premises) is per throttling
budget, and a request that impersonates a mailbox is charged to that mailbox's budget ("Maintain affinity between
a group of subscriptions and the Mailbox server": "impersonate the first user in each subscription ID group").
With impersonation every group's connection impersonates its own anchor, so each budget holds one connection and
the groups are not limited as a whole. With delegate access every connection is charged to the service account:
groups beyond `max_streams` poll instead of being refused. A stream Exchange refuses all the same
(ErrorExceededConnectionCount: another application used up the anchor's budget) makes its group poll until its
next reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from exchangelib.properties import StatusEvent

from bridge.backoff import backoff
from bridge.outages import Outages
from bridge.sources.base import AuthFailed, MailboxNotFound, SourceError, Throttled, Unavailable
from bridge.sources.ews import EwsSource
from bridge.sources.ews_adapter import ConnectionsExceeded, StreamingEvents
from bridge.sources.ews_errors import translate
from bridge.sources.watching import ChangeWiring
from bridge.waiting import first_of

log = logging.getLogger(__name__)

# Calendar items only: NewMailEvent and FreeBusyChangedEvent say nothing SyncFolderItems would not.
_EVENT_TYPES = ("CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent")
_MAX_PER_CONNECTION = 200  # Exchange's limit of subscription ids per GetStreamingEvents
_STOP_GRACE = 2.0  # how long a stopping stream or unsubscribe may take before it is left behind
_UNSUBSCRIBE_WITHIN = 5.0
_REGROUP_EVERY = 60.0  # how often the watcher looks for mailboxes no group holds
_IDLE = 60.0  # how long to wait when a group's members were all refused
_CONNECTIONS_EXCEEDED = "ErrorExceededConnectionCount"


@dataclass(eq=False)
class _Group:
    number: int
    streaming: bool
    members: list[str] = field(default_factory=list)
    polls_until: float = 0.0  # a refused stream: the group polls until then (loop time)
    # Set while its stream (or poll) runs; `reconnect` asks it to end that early and go round again.
    listening: bool = False
    reconnect: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _Subscription:
    address: str
    account: Any
    subscription_id: str
    watermark: str | None  # pull subscriptions only


class _Stream:
    """One GetStreamingEvents connection, read on a thread of its own; what it hears is posted to the loop."""

    def __init__(
        self,
        anchor: Any,
        mailboxes: dict[str, str],
        minutes: int,
        *,
        name: str,
        on_changed: Callable[[set[str]], None],
        on_open: Callable[[], None],
    ) -> None:
        self._anchor = anchor
        self._mailboxes = mailboxes  # subscription id → address
        self._minutes = minutes
        self._on_changed = on_changed
        self._on_open = on_open
        self._loop = asyncio.get_running_loop()
        self._service: StreamingEvents | None = None
        self._stopping = threading.Event()
        self._opened = False
        self.ended = asyncio.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._listen, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def interrupt(self) -> None:
        self._stopping.set()
        if self._service is not None:
            self._service.interrupt()

    def _listen(self) -> None:
        try:
            self._service = StreamingEvents(account=self._anchor, on_frame=self._frame)
            if self._stopping.is_set():
                return
            for notification in self._service.call(
                subscription_ids=list(self._mailboxes), connection_timeout=self._minutes
            ):
                if any(not isinstance(event, StatusEvent) for event in notification.events):
                    address = self._mailboxes.get(str(notification.subscription_id).strip())
                    if address is not None:
                        self._post(self._on_changed, {address})
        except Exception as exc:
            if not self._stopping.is_set():
                self.error = exc
        finally:
            self._post(self.ended.set)

    def _frame(self) -> None:
        if not self._opened:
            self._opened = True
            self._post(self._on_open)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)


class EwsWatcher:
    """Tells the engine which EWS mailboxes changed, through streaming (or pull) subscriptions."""

    def __init__(
        self,
        source: EwsSource,
        *,
        connection_minutes: int = 30,
        per_connection: int = 200,
        backoff_first: float = 1.0,
        backoff_max: float = 300.0,
        auth_backoff_first: float = 300.0,
        auth_backoff_max: float = 3600.0,
        mode: Literal["streaming", "pull"] = "streaming",
        pull_interval: float = 30.0,
        max_streams: int = 3,
    ) -> None:
        if not 1 <= connection_minutes <= 30:
            raise ValueError("connection_minutes must be 1 to 30 (GetStreamingEvents' ConnectionTimeout)")
        if not 1 <= per_connection <= _MAX_PER_CONNECTION:
            raise ValueError(f"per_connection must be 1 to {_MAX_PER_CONNECTION}")
        self._source = source
        self._minutes = connection_minutes
        self._per_connection = per_connection
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        # A refused password is tried again this late, then later: an Active Directory lockout policy counts tries.
        self._auth_backoff = (timedelta(seconds=auth_backoff_first), timedelta(seconds=auth_backoff_max))
        self._mode = mode
        self._pull_interval = pull_interval
        self._max_streams = max_streams
        self._outages = Outages(log)
        self._failing: set[int] = set()
        self._outage_kind = ""
        self._outage_message = ""
        self._groups: list[_Group] = []
        self._owner: dict[str, _Group] = {}
        self._regroup = asyncio.Event()
        self._retry = asyncio.Event()
        self._stop = asyncio.Event()
        self._mailboxes: Callable[[], Awaitable[Collection[str]]] | None = None
        self._on_changed: Callable[[Collection[str]], Awaitable[None]] | None = None
        self._on_lost: Callable[[Collection[str]], Awaitable[None]] | None = None

    async def run(
        self,
        mailboxes: Callable[[], Awaitable[Collection[str]]],
        on_changed: Callable[[Collection[str]], Awaitable[None]],
        stop: asyncio.Event,
        *,
        on_lost: Callable[[Collection[str]], Awaitable[None]] | None = None,
    ) -> None:
        """Watch the mailboxes `mailboxes()` returns (asked again at every reconnect) until `stop` is set.

        `on_lost(mailboxes)` hears of mailboxes no longer watched because the server stopped answering: reading
        them is what tells the engine the source is down (and, once it reads them again, that it is back).
        """
        self._mailboxes, self._on_changed, self._on_lost = mailboxes, on_changed, on_lost
        self._groups, self._owner, self._failing = [], {}, set()
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        numbers = itertools.count(1)
        try:
            while not stop.is_set():
                self._regroup.clear()
                wanted = await self._new_groups()
                for _ in range(wanted):
                    group = _Group(next(numbers), streaming=self._may_stream())
                    self._groups.append(group)
                    task = asyncio.create_task(self._watch(group), name=f"ews-watch-{self._source.name}-{group.number}")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                self._reserve()
                await first_of(stop, self._regroup, within=_REGROUP_EVERY)
        finally:
            self._stop.set()  # the groups' own event, so that a cancelled run stops them too
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._source.reserve_stream_connections(0)

    def attach(self, wiring: ChangeWiring) -> None:
        wiring.watch(self)

    def refresh(self) -> None:
        """The set of mailboxes to watch changed: place the new ones now, not at the next reconnect."""
        self._regroup.set()

    # -- groups ----------------------------------------------------------------------------------------------

    async def _new_groups(self) -> int:
        """How many groups to open for the mailboxes no group holds and the existing groups have no room for.

        Groups that are not listening take mailboxes on their next round anyway; listening groups with room are
        asked to go round again, as many as the unheld mailboxes need.
        """
        current = await self._current()
        if current is None:
            return 0
        unheld = sum(1 for key in current if key not in self._owner)
        room = sum(self._per_connection - len(group.members) for group in self._groups if not group.listening)
        listening = sorted((group for group in self._groups if group.listening), key=lambda group: len(group.members))
        for group in listening:
            free = self._per_connection - len(group.members)
            if unheld > room and free > 0:
                group.reconnect.set()
                room += free
        return math.ceil((unheld - room) / self._per_connection) if unheld > room else 0

    async def _current(self) -> dict[str, str] | None:
        assert self._mailboxes is not None
        try:
            found = await self._mailboxes()
        except Exception:
            log.exception("EWS source %s: could not list the mailboxes to watch", self._source.name)
            return None
        return {address.lower(): address for address in found}

    async def _claim(self, group: _Group) -> None:
        """Drop the group's members no longer watched and fill its free places with mailboxes no group holds."""
        current = await self._current()
        if current is None:
            return  # keep the members as they are; the subscribe will tell whether Exchange is there
        kept = []
        for address in group.members:
            if address.lower() in current:
                kept.append(current[address.lower()])
            else:
                self._owner.pop(address.lower(), None)
        for key, address in current.items():
            if len(kept) >= self._per_connection:
                break
            if key not in self._owner:
                self._owner[key] = group
                kept.append(address)
        group.members = kept

    def retry_now(self) -> None:
        """The source answers again (the sync engine just read it): connections backing off reopen at once."""
        self._retry.set()

    def _release(self, group: _Group) -> None:
        for address in group.members:
            if self._owner.get(address.lower()) is group:
                del self._owner[address.lower()]
        group.members = []
        if group in self._groups:
            self._groups.remove(group)
        self._failing.discard(group.number)
        self._regroup.set()

    def _may_stream(self) -> bool:
        """Whether a new group streams: with impersonation its connection has a budget of its own (see above)."""
        if self._mode != "streaming":
            return False
        return self._source.impersonation or sum(1 for g in self._groups if g.streaming) < self._max_streams

    def _reserve(self) -> None:
        self._source.reserve_stream_connections(sum(1 for group in self._groups if group.streaming))

    async def _watch(self, group: _Group) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                await self._claim(group)
                if not group.members:
                    return
                subscriptions: list[_Subscription] = []
                pause = 0.0
                streaming = group.streaming and loop.time() >= group.polls_until
                try:
                    await self._subscribe(group, subscriptions, streaming=streaming)
                    if not subscriptions:
                        pause = _IDLE  # every member refused: the engine disables them, `mailboxes()` drops them
                        continue
                    await self._notify([s.address for s in subscriptions])  # the catch-up
                    if streaming:
                        await self._listen(group, subscriptions)
                    else:
                        await self._poll(group, subscriptions)
                    failures = 0
                except Exception as exc:
                    error = _source_error(exc, f"watching {len(group.members)} mailboxes")
                    if streaming and error.code == _CONNECTIONS_EXCEEDED:
                        group.polls_until = loop.time() + self._minutes * 60
                        self._refused(group, error)
                        continue
                    failures += 1
                    log.debug("EWS source %s: group %d failed", self._source.name, group.number, exc_info=True)
                    self._failed(group, error)
                    pause = self._backoff(failures, error)
                    if failures == 1 and isinstance(error, Unavailable) and self._on_lost is not None:
                        await self._notify(group.members, self._on_lost)
                finally:
                    await self._unsubscribe(subscriptions)
                    if pause:
                        self._retry.clear()
                        await first_of(self._stop, self._retry, within=pause)
        finally:
            self._release(group)

    def _backoff(self, failures: int, exc: SourceError) -> float:
        delay = min(self._backoff_max, self._backoff_first * 2.0 ** min(failures - 1, 30))
        # Jitter, so that the groups of a source (and the bridges of a fleet) do not come back all at once.
        delay *= random.uniform(0.5, 1.0)
        if isinstance(exc, Throttled):
            delay = max(delay, exc.retry_after)
        if isinstance(exc, AuthFailed):
            delay = max(delay, backoff(failures, *self._auth_backoff).total_seconds())
        return delay

    def _failed(self, group: _Group, exc: SourceError) -> None:
        self._failing.add(group.number)
        kind = exc.code or type(exc).__name__
        # The first error's text names a group's mailbox: kept while the kind of failure stays the same, so that
        # many failing groups make one log line, not one each.
        if kind != self._outage_kind or not self._outages.failing(self._outage_key):
            self._outage_kind = kind
            self._outage_message = (
                f"EWS source {self._source.name}: change notifications fail ({kind}); retrying with back-off, the "
                f"periodic reconcile reads the mailboxes meanwhile. First error: {exc}"
            )
        self._outages.failed(self._outage_key, self._outage_message)

    def _working(self, group: _Group) -> None:
        self._failing.discard(group.number)
        if not self._failing:
            self._outages.recovered(
                self._outage_key, f"EWS source {self._source.name}: change notifications work again"
            )

    @property
    def _outage_key(self) -> str:
        return f"ews-watch:{self._source.name}"

    def _refused(self, group: _Group, exc: SourceError) -> None:
        self._outages.failed(
            f"{self._outage_key}:streams",
            f"EWS source {self._source.name}: Exchange refused a streaming connection for {len(group.members)} "
            f"mailboxes (the HangingConnectionLimit of the impersonated anchor or the service account is used up); "
            f"they are polled every {self._pull_interval:g} s until the group reconnects. {exc}",
        )

    def _stream_opened(self, group: _Group) -> None:
        self._working(group)
        self._outages.recovered(
            f"{self._outage_key}:streams", f"EWS source {self._source.name}: streaming connections are accepted again"
        )

    async def _notify(
        self, addresses: Iterable[str], to: Callable[[Collection[str]], Awaitable[None]] | None = None
    ) -> None:
        tell = to or self._on_changed
        assert tell is not None
        batch = sorted(set(addresses))
        if not batch:
            return
        try:
            await tell(batch)
        except Exception:
            # The engine failing to take a mark must not end the watch: the periodic reconcile is the safety net.
            log.exception("EWS source %s: marking %d changed mailboxes failed", self._source.name, len(batch))

    # -- subscriptions ---------------------------------------------------------------------------------------

    async def _subscribe(self, group: _Group, made: list[_Subscription], *, streaming: bool) -> None:
        """Subscribe the members into `made` (filled as it goes, so a failure still unsubscribes the rest)."""
        members = list(group.members)
        while members and not made:  # the first member that subscribes anchors the group
            anchor = await self._subscribe_one(members.pop(0), cookie=None, streaming=streaming)
            if anchor is not None:
                made.append(anchor)
        if not made:
            return
        cookie = made[0].account.affinity_cookie
        results = await asyncio.gather(
            *(self._subscribe_one(address, cookie=cookie, streaming=streaming) for address in members),
            return_exceptions=True,
        )
        made.extend(result for result in results if isinstance(result, _Subscription))
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _subscribe_one(self, address: str, *, cookie: str | None, streaming: bool) -> _Subscription | None:
        key = f"ews-watch:{self._source.name}:{address.lower()}"
        try:
            subscription = await self._source.call(
                f"subscribing to the calendar of {address}",
                lambda: self._make_subscription(address, cookie, streaming=streaming),
            )
        except MailboxNotFound as exc:
            self._outages.failed(key, f"EWS mailbox {address} is left out of change notifications: {exc}")
            return None
        self._outages.recovered(key, f"EWS mailbox {address} has change notifications again")
        return subscription

    def _make_subscription(self, address: str, cookie: str | None, *, streaming: bool) -> _Subscription:
        account = self._source.account(address)
        if cookie:
            # Route the subscription to the anchor's mailbox server, where the group's connection is served.
            account.affinity_cookie = cookie
        calendar = account.calendar
        if streaming:
            return _Subscription(address, account, str(calendar.subscribe_to_streaming(event_types=_EVENT_TYPES)), None)
        # A pull subscription dies when no GetEvents comes within its timeout (minutes): leave room for slow rounds.
        timeout = min(1440, max(10, math.ceil(3 * self._pull_interval / 60)))
        subscription_id, watermark = calendar.subscribe_to_pull(event_types=_EVENT_TYPES, timeout=timeout)
        return _Subscription(address, account, str(subscription_id), str(watermark))

    async def _unsubscribe(self, subscriptions: list[_Subscription]) -> None:
        """Best effort: Exchange drops a streaming subscription 30 minutes after its last connection anyway."""
        if not subscriptions:
            return

        async def one(subscription: _Subscription) -> None:
            with contextlib.suppress(SourceError):
                await self._source.call(
                    f"unsubscribing {subscription.address}",
                    lambda: subscription.account.calendar.unsubscribe(subscription.subscription_id),
                )

        within = _STOP_GRACE if self._stop.is_set() else _UNSUBSCRIBE_WITHIN
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(s) for s in subscriptions)), within)

    # -- listening -------------------------------------------------------------------------------------------

    async def _listen(self, group: _Group, subscriptions: list[_Subscription]) -> None:
        """One GetStreamingEvents connection for the group, until it closes, fails or the watcher stops."""
        pending: set[str] = set()
        heard = asyncio.Event()

        def changed(addresses: set[str]) -> None:
            pending.update(addresses)
            heard.set()

        stream = _Stream(
            subscriptions[0].account,
            {s.subscription_id: s.address for s in subscriptions},
            self._minutes,
            name=f"ews-stream-{self._source.name}-{group.number}",
            on_changed=changed,
            on_open=lambda: self._stream_opened(group),
        )
        stream.start()
        forwarding = asyncio.create_task(self._forward(pending, heard, stream.ended))
        group.reconnect.clear()
        group.listening = True
        try:
            while not (stream.ended.is_set() or self._stop.is_set() or group.reconnect.is_set()):
                await first_of(self._stop, stream.ended, group.reconnect, within=_REGROUP_EVERY)
        finally:
            group.listening = False
            await self._end(stream)
            await forwarding
        if stream.error is not None:
            raise _source_error(stream.error, f"streaming notifications of {len(subscriptions)} mailboxes")

    async def _end(self, stream: _Stream) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STOP_GRACE
        # The thread may still be sending the request when first interrupted: repeat until it is reading.
        while not stream.ended.is_set() and loop.time() < deadline:
            stream.interrupt()
            await first_of(stream.ended, within=0.05)
        if stream.ended.is_set():
            stream.thread.join(timeout=0.1)  # posting `ended` is the thread's last act: the join takes a moment
        if stream.thread.is_alive():
            log.warning("EWS source %s: stream thread %s did not end; left behind", self._source.name, stream.thread)
            stream.ended.set()

    async def _forward(self, pending: set[str], heard: asyncio.Event, ended: asyncio.Event) -> None:
        """Hand what the stream heard to `on_changed`, batching whatever arrives while a call is running."""
        while True:
            await first_of(heard, ended, within=_REGROUP_EVERY)
            heard.clear()
            if pending:
                batch = set(pending)
                pending.clear()
                await self._notify(batch)
            elif ended.is_set():
                return

    async def _poll(self, group: _Group, subscriptions: list[_Subscription]) -> None:
        """GetEvents for every member each `pull_interval`, for `connection_minutes`, then resubscribe."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._minutes * 60
        watermarks = {s.subscription_id: s.watermark or "" for s in subscriptions}
        group.reconnect.clear()
        group.listening = True
        try:
            while not self._stop.is_set() and loop.time() < until:
                wait = min(self._pull_interval, max(until - loop.time(), 0.0))
                await first_of(self._stop, group.reconnect, within=wait)
                if self._stop.is_set() or group.reconnect.is_set():
                    return
                results = await asyncio.gather(*(self._pull(s, watermarks) for s in subscriptions))
                self._working(group)
                await self._notify(address for address in results if address is not None)
        finally:
            group.listening = False

    async def _pull(self, subscription: _Subscription, watermarks: dict[str, str]) -> str | None:
        """The subscription's address if it has events since its watermark (which moves on)."""

        def events() -> tuple[bool, str]:
            mark = watermarks[subscription.subscription_id]
            changed = False
            for notification in subscription.account.calendar.get_events(subscription.subscription_id, mark):
                for event in notification.events:
                    mark = str(event.watermark or mark)
                    changed = changed or not isinstance(event, StatusEvent)
            return changed, mark

        changed, watermarks[subscription.subscription_id] = await self._source.call(
            f"pulling events of {subscription.address}", events
        )
        return subscription.address if changed else None


def _source_error(exc: Exception, what: str) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, ConnectionsExceeded):
        return SourceError(f"{what}: {_CONNECTIONS_EXCEEDED}: {exc}", code=_CONNECTIONS_EXCEEDED)
    try:
        return translate(exc, what)
    except Exception:
        # Whatever else ended the stream (a parse error, a protocol error) is still a connection to reopen.
        return Unavailable(f"{what}: {type(exc).__name__}: {exc}", code=type(exc).__name__)
