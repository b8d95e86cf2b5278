"""Exchange on-premises through EWS: the `CalendarSource` for mailboxes on an Exchange 2013-2019 server.

exchangelib builds and sends every request (sessions, NTLM / Basic, impersonation headers, SOAP envelopes, EWS
error codes raised as exceptions); reads stop at the XML elements it has already parsed and `ews_wire` decodes
them, never into exchangelib's item models (the same split as the Graph source, DESIGN §3.1). exchangelib is
synchronous: every call runs on this source's own bounded thread pool, never on the event loop.

How the window is read, what a delta token is, how creates stay idempotent, how TLS is set per source and what
each EWS error becomes: docs/ews-source.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    Account,
    Build,
    Configuration,
    HTMLBody,
    Message,
    Version,
)
from exchangelib.errors import ErrorExceededFindCountLimit, ErrorInvalidSyncStateData
from exchangelib.ewsdatetime import UTC as EWS_UTC
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.fields import FieldPath
from exchangelib.items import ALWAYS_OVERWRITE, MOVE_TO_DELETED_ITEMS, NEVER_OVERWRITE, SEND_TO_NONE
from exchangelib.properties import CalendarView, ItemId, RecurringMasterItemId
from exchangelib.recurrence import DailyPattern, WeeklyPattern
from exchangelib.recurrence import Recurrence as EwsRecurrence

from bridge.config import EwsSourceConfig
from bridge.domain import (
    Appointment,
    AppointmentDraft,
    AppointmentPatch,
    ConnectionReport,
    DeltaResult,
    MailMessage,
    Pattern,
    Recurrence,
    Window,
    WriteResult,
)
from bridge.sources import ews_wire as wire
from bridge.sources.base import IGNORE_REQUESTS, Conflict, ItemNotFound, RequestObserver, SourceError, Unavailable
from bridge.sources.ews_adapter import (
    BridgeCalendarItem,
    SourceCredentials,
    find_elements,
    forget_protocol,
    get_elements,
    mount_on_sessions,
    sync_page,
)
from bridge.sources.ews_errors import connection_problem, translate
from bridge.sources.unreachable import why_unreachable
from bridge.zones import UTC_ZONE, local_date

log = logging.getLogger(__name__)

T = TypeVar("T")

# A fixed server build, so exchangelib probes nothing (it would otherwise try API versions one by one on the first
# request). Exchange 2016 CU23 (15.1.2507.6) is the default: its API version, Exchange2016, is what Exchange 2016
# and 2019 both speak, and the EWS emulator reports the same build.
BUILDS = {
    "Exchange2013": Build(15, 0, 516, 32),
    "Exchange2013_SP1": Build(15, 0, 847, 32),
    "Exchange2016": Build(15, 1, 2507, 6),
    "Exchange2019": Build(15, 2, 1118, 7),
}
DEFAULT_VERSION = "Exchange2016"

# CalendarView spans at most two years (ErrorCalendarViewRangeTooBig); a year keeps well inside it.
_MAX_SPAN = timedelta(days=365)
# Below this a chunk is not split further: that many instances starting within a minute is not a calendar.
_MIN_SPAN = timedelta(minutes=1)
_SYNC_PAGE = 512  # SyncFolderItems' MaxChangesReturned ceiling
_FIND_PAGE = 200
_VIEW_FIELDS = (
    "subject",
    "start",
    "end",
    "legacy_free_busy_status",
    "sensitivity",
    "is_all_day",
    "my_response_type",
    "is_cancelled",
    "type",
    "uid",
    "last_modified_time",
    "bridge_ref",
    "bridge_transaction",
)
_WEEKDAYS = {
    "monday": "Monday",
    "tuesday": "Tuesday",
    "wednesday": "Wednesday",
    "thursday": "Thursday",
    "friday": "Friday",
    "saturday": "Saturday",
    "sunday": "Sunday",
}


def _observed_adapter(verify: str | bool, observe: RequestObserver) -> type[requests.adapters.HTTPAdapter]:
    class ObservedAdapter(requests.adapters.HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            if verify is not True:
                # requests takes `verify` per request; exchangelib never passes one, so the adapter decides.
                kwargs["verify"] = verify
            try:
                response = super().send(request, *args, **kwargs)
            except requests.ConnectionError:
                observe("unreachable")
                raise
            if not _handshake(request, response):
                observe(str(response.status_code))
            return response

    return ObservedAdapter


def _handshake(request: requests.PreparedRequest, response: requests.Response) -> bool:
    """A 401 that is a step of signing in, not a refusal: the answer to a request sent without credentials (NTLM
    starts so), or an NTLM / Negotiate challenge carrying the server's token."""
    if response.status_code != 401:
        return False
    scheme, _, token = response.headers.get("WWW-Authenticate", "").partition(" ")
    return "Authorization" not in request.headers or (scheme in ("NTLM", "Negotiate") and bool(token.strip()))


def ews_source(config: EwsSourceConfig, *, on_request: RequestObserver = IGNORE_REQUESTS) -> EwsSource:
    verify: str | bool = str(config.ca_file) if config.ca_file else config.verify_tls
    return EwsSource(
        config.name,
        service_endpoint=config.service_endpoint,
        username=config.username,
        password=config.password,
        auth_type=config.auth_type,
        version=config.version,
        impersonation=config.impersonation,
        verify=verify,
        pool_size=config.max_concurrency,
        on_request=on_request,
    )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What the last read of a mailbox's window saw, kept to turn the next read into a delta (docs/ews-source.md)."""

    state: str
    window: Window
    keys: dict[str, str]


class EwsSource:
    """Mailboxes of one Exchange organisation, reached through one service account.

    `pool_size` threads run exchangelib calls, and the account's connection pool has as many connections
    (exchangelib defaults to one per account: more threads would queue on it). Every call but a stream's runs on
    them, so no more than `pool_size` requests of the service account are under way at once: the bound that keeps
    the source within the throttling policy's EWSMaxConcurrency (`sources.NAME.max_concurrency`).
    """

    def __init__(
        self,
        name: str,
        *,
        service_endpoint: str,
        username: str,
        password: str,
        auth_type: str = "ntlm",
        version: str | None = None,
        impersonation: bool = True,
        verify: str | bool = True,
        pool_size: int = 8,
        timeout_s: float = 30.0,
        snapshot_cache_size: int = 2048,
        master_cache_size: int = 16384,
        on_request: RequestObserver = IGNORE_REQUESTS,
    ) -> None:
        self.name = name
        self._on_request = on_request
        self._endpoint = service_endpoint
        self._username = username
        self._verify = verify
        self._timeout_s = timeout_s
        self.impersonation = impersonation
        self._access = IMPERSONATION if impersonation else DELEGATE
        self._config = Configuration(
            service_endpoint=service_endpoint,
            credentials=SourceCredentials(username, password),
            auth_type=NTLM if auth_type == "ntlm" else BASIC,
            version=Version(build=BUILDS[version or DEFAULT_VERSION]),
            max_connections=pool_size,
        )
        self._pool_size = pool_size
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix=f"ews-{name}")
        self._accounts: dict[str, Any] = {}
        self._accounts_lock = threading.Lock()
        self._protocols: list[Any] = []
        self._delta_locks: dict[str, asyncio.Lock] = {}
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._snapshot_cache_size = snapshot_cache_size
        self._masters: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._master_cache_size = master_cache_size
        self._cache_lock = threading.Lock()
        self._spans: dict[str, timedelta] = {}
        self._view_fields = [FieldPath(field=BridgeCalendarItem.get_field_by_fieldname(name)) for name in _VIEW_FIELDS]
        self._uid_field = [FieldPath(field=BridgeCalendarItem.get_field_by_fieldname("uid"))]

    # -- reading -------------------------------------------------------------------------------------------

    async def read_delta(self, mailbox: str, window: Window, token: str | None) -> DeltaResult:
        lock = self._delta_locks.setdefault(mailbox.lower(), asyncio.Lock())
        async with lock:
            return await self.call(f"delta of {mailbox}", lambda: self._read_delta(mailbox, window, token))

    async def read_item(self, mailbox: str, item_id: str) -> Appointment | None:
        try:
            return await self.call(f"reading item {item_id} of {mailbox}", lambda: self._read_item(mailbox, item_id))
        except ItemNotFound:
            return None

    def _read_delta(self, mailbox: str, window: Window, token: str | None) -> DeltaResult:
        account = self.account(mailbox)
        key = mailbox.lower()
        if token is not None:
            try:
                state, changes = self._sync(account, token)
            except ErrorInvalidSyncStateData:
                log.info("sync state of %s is no longer valid; starting a new round", mailbox)
            else:
                with self._cache_lock:
                    known = self._snapshots.get(key)
                if known is not None and (known.state != token or known.window != window):
                    known = None
                if not changes:
                    # Nothing was written since the token: whatever the caller holds for that token is still true.
                    if known is not None:
                        self._remember(key, _Snapshot(state, window, known.keys))
                    return DeltaResult((), (), state, False)
                appointments = self._window(account, mailbox, window)
                self._remember(key, _Snapshot(state, window, {a.item_id: a.change_key for a in appointments}))
                if known is None:
                    return DeltaResult(tuple(appointments), (), state, True)
                current = {a.item_id for a in appointments}
                upserts = tuple(a for a in appointments if known.keys.get(a.item_id) != a.change_key)
                removed = tuple(item_id for item_id in known.keys if item_id not in current)
                return DeltaResult(upserts, removed, state, False)
        # The sync state is taken before the view: a change between the two is in the view and reported again by
        # the next sync (a harmless re-read), where the other order would lose it.
        state, _ = self._sync(account, None)
        appointments = self._window(account, mailbox, window)
        self._remember(key, _Snapshot(state, window, {a.item_id: a.change_key for a in appointments}))
        return DeltaResult(tuple(appointments), (), state, True)

    def _read_item(self, mailbox: str, item_id: str) -> Appointment:
        account = self.account(mailbox)
        [item] = self._get_items(account, [ItemId(id=item_id)], self._view_fields)
        return self._appointments(account, mailbox, [item])[0]

    def _sync(self, account: Any, state: str | None) -> tuple[str, int]:
        """The folder's sync state after `state` (None: from nothing), and how many changes lay between."""
        changes = 0
        while True:
            new_state, count, last = sync_page(account, state, _SYNC_PAGE)
            changes += count
            # exchangelib's own loop stops on an unchanged state too: a server may repeat it with more to come.
            if last or new_state == state:
                return new_state, changes
            state = new_state

    def _window(self, account: Any, mailbox: str, window: Window) -> list[Appointment]:
        """Every instance overlapping the window, read in chunks that stay under the server's find-count limit.

        CalendarView does not page: past EWSFindCountLimit (1,000 by default) items it fails outright. A chunk that
        fails is halved; the span that worked is remembered per mailbox and grown again after a clean read.
        """
        span = self._spans.get(mailbox.lower(), _MAX_SPAN)
        pending = list(_chunks(window.start, window.end, span))
        pending.reverse()
        found: dict[str, wire.WireItem] = {}
        split = False
        while pending:
            low, high = pending.pop()
            try:
                items = self._view(account, low, high)
            except ErrorExceededFindCountLimit as exc:
                if high - low <= _MIN_SPAN:
                    message = f"{mailbox}: more instances than the server's find-count limit within one minute"
                    raise SourceError(message, code="ErrorExceededFindCountLimit") from exc
                middle = low + (high - low) / 2
                pending += [(middle, high), (low, middle)]
                span = min(span, middle - low)
                split = True
                continue
            for item in items:
                # An instance crossing a chunk boundary is in both chunks.
                found.setdefault(item.item_id, item)
        self._spans[mailbox.lower()] = span if split else min(span * 2, _MAX_SPAN)
        return self._appointments(account, mailbox, [item for item in found.values() if not item.withdrawn])

    def _view(self, account: Any, low: datetime, high: datetime) -> list[wire.WireItem]:
        calendar_view = CalendarView(start=_ews_time(low), end=_ews_time(high))
        return wire.decode_items(_raising(find_elements(account, self._view_fields, calendar_view)))

    def _get_items(self, account: Any, ids: list[Any], fields: list[Any]) -> list[wire.WireItem]:
        return wire.decode_items(_raising(get_elements(account, ids, fields)))

    def _appointments(self, account: Any, mailbox: str, items: list[wire.WireItem]) -> list[Appointment]:
        masters = self._series_masters(account, mailbox, [item for item in items if item.in_series])
        appointments = []
        for item in items:
            if not item.in_series:
                appointments.append(wire.to_appointment(item))
            elif (master := masters.get(item.uid or item.item_id)) is not None:
                appointments.append(wire.to_appointment(item, master))
        return appointments

    def _series_masters(self, account: Any, mailbox: str, instances: list[wire.WireItem]) -> dict[str, str]:
        """Series UID → the master's ItemId, which CalendarView does not give: one batched GetItem for new series.

        A master's ItemId never changes, so the cache needs no invalidation, only a bound.
        """
        found: dict[str, str] = {}
        asking: dict[str, str] = {}
        with self._cache_lock:
            for item in instances:
                series = item.uid or item.item_id
                master = self._masters.get((mailbox.lower(), series))
                if master is not None:
                    found[series] = master
                elif series not in asking:
                    asking[series] = item.item_id
        if not asking:
            return found
        ids = [RecurringMasterItemId(id=occurrence) for occurrence in asking.values()]
        elements = get_elements(account, ids, None)
        with self._cache_lock:
            for series, element in zip(asking, elements, strict=True):
                if isinstance(element, Exception):
                    continue  # the series went away meanwhile: its instances are left out of this read
                master_id = wire.decode_item(element).item_id
                found[series] = master_id
                self._masters[(mailbox.lower(), series)] = master_id
            while len(self._masters) > self._master_cache_size:
                self._masters.popitem(last=False)
        return found

    def _remember(self, key: str, snapshot: _Snapshot) -> None:
        with self._cache_lock:
            self._snapshots[key] = snapshot
            self._snapshots.move_to_end(key)
            while len(self._snapshots) > self._snapshot_cache_size:
                self._snapshots.popitem(last=False)

    # -- writing -------------------------------------------------------------------------------------------

    async def create(self, mailbox: str, draft: AppointmentDraft, transaction_id: str) -> WriteResult:
        return await self.call(f"creating an item in {mailbox}", lambda: self._create(mailbox, draft, transaction_id))

    def _create(self, mailbox: str, draft: AppointmentDraft, transaction_id: str) -> WriteResult:
        account = self.account(mailbox)
        existing = self._created_before(account, mailbox, draft, transaction_id)
        if existing is not None:
            return existing
        item = BridgeCalendarItem(
            account=account,
            folder=account.calendar,
            subject=draft.subject,
            body=draft.body or None,
            start=_ews_time(draft.start, draft.time_zone),
            end=_ews_time(draft.end, draft.time_zone),
            is_all_day=draft.all_day,
            legacy_free_busy_status=wire.LEGACY_FREE_BUSY[draft.free_busy],
            categories=list(draft.categories) or None,
            reminder_is_set=False,
            bridge_ref=draft.bridge_ref,
            bridge_transaction=transaction_id,
            recurrence=_recurrence(draft.recurrence, draft.start, draft.time_zone) if draft.recurrence else None,
        )
        item.save(send_meeting_invitations=SEND_TO_NONE)
        return WriteResult(str(item.id), str(item.changekey))

    def _created_before(
        self, account: Any, mailbox: str, draft: AppointmentDraft, transaction_id: str
    ) -> WriteResult | None:
        """The item an earlier attempt of this create made, found by its transaction property near its start.

        EWS has no transactionId. A retried create carries the same draft, so its first instance lies in
        [start, end), or for a weekly series within the week from start: one small CalendarView finds it.
        """
        end = draft.end
        if draft.recurrence is not None and draft.recurrence.pattern is Pattern.WEEKLY:
            end = max(end, draft.start + timedelta(days=7 * draft.recurrence.interval))
        for item in self._view(account, draft.start, end):
            if item.transaction_id == transaction_id:
                if not item.in_series:
                    return WriteResult(item.item_id, item.change_key)
                master = self._series_masters(account, mailbox, [item]).get(item.uid or item.item_id)
                if master is not None:
                    # An occurrence carries its series' change key.
                    return WriteResult(master, item.change_key)
        return None

    async def update(self, mailbox: str, item_id: str, patch: AppointmentPatch, change_key: str | None) -> WriteResult:
        what = f"updating item {item_id} of {mailbox}"
        return await self.call(what, lambda: self._update(mailbox, item_id, patch, change_key))

    def _update(self, mailbox: str, item_id: str, patch: AppointmentPatch, change_key: str | None) -> WriteResult:
        account = self.account(mailbox)
        item = BridgeCalendarItem(account=account, folder=account.calendar, id=item_id, changekey=change_key)
        fields: list[str] = []
        for name, value in (
            ("subject", patch.subject),
            ("body", patch.body),
            ("start", _ews_time(patch.start, patch.time_zone) if patch.start else None),
            ("end", _ews_time(patch.end, patch.time_zone) if patch.end else None),
            ("is_all_day", patch.all_day),
            ("legacy_free_busy_status", wire.LEGACY_FREE_BUSY[patch.free_busy] if patch.free_busy else None),
            ("categories", list(patch.categories) if patch.categories is not None else None),
        ):
            if value is not None:
                setattr(item, name, value)
                fields.append(name)
        if not fields:
            current = self._read_item(mailbox, item_id)
            return WriteResult(current.item_id, current.change_key)
        # NeverOverwrite with the caller's change key refuses a stale write (ErrorIrresolvableConflict); without
        # one the write is unconditional.
        # bulk_update, unlike CalendarItem.save, sends an ItemId without a ChangeKey when there is none.
        results = account.bulk_update(
            items=[(item, fields)],
            conflict_resolution=NEVER_OVERWRITE if change_key else ALWAYS_OVERWRITE,
            send_meeting_invitations_or_cancellations=SEND_TO_NONE,
            suppress_read_receipts=True,
        )
        [(new_id, new_key)] = list(_raising(results))
        return WriteResult(str(new_id), str(new_key))

    async def delete(self, mailbox: str, item_id: str, change_key: str | None = None) -> None:
        try:
            await self.call(f"deleting item {item_id} of {mailbox}", lambda: self._delete(mailbox, item_id, change_key))
        except ItemNotFound:
            log.debug("item %s of %s was already gone", item_id, mailbox)

    def _delete(self, mailbox: str, item_id: str, change_key: str | None) -> None:
        account = self.account(mailbox)
        if change_key is not None:
            # DeleteItem ignores the ChangeKey: compare it first (a write landing in between is not caught).
            [current] = self._get_items(account, [ItemId(id=item_id)], [])
            if current.change_key != change_key:
                raise Conflict(f"deleting item {item_id} of {mailbox}: it changed since change key {change_key}")
        results = account.bulk_delete(
            ids=[ItemId(id=item_id)],
            delete_type=MOVE_TO_DELETED_ITEMS,
            send_meeting_cancellations=SEND_TO_NONE,
            suppress_read_receipts=True,
        )
        list(_raising(results))

    async def read_time_zones(self, mailboxes: Sequence[str]) -> Mapping[str, str | SourceError | None]:
        # EWS has no documented operation that answers a mailbox's own zone (OWA keeps it in the OWA.UserOptions
        # configuration object, an undocumented dictionary); the source's `time_zone` setting applies.
        return dict.fromkeys(mailboxes, None)

    async def find_bridge_items(self, mailbox: str) -> tuple[Appointment, ...]:
        return await self.call(f"listing the items of {mailbox}", lambda: self._find_bridge_items(mailbox))

    def _find_bridge_items(self, mailbox: str) -> tuple[Appointment, ...]:
        # Without a CalendarView FindItem lists stored items (singles and series masters, never occurrences) at any
        # date, paged by exchangelib; the marker is read from each, as EWS restrictions on it would need an index.
        elements = find_elements(self.account(mailbox), self._view_fields, None, page_size=_FIND_PAGE)
        items = wire.decode_items(_raising(elements))
        return tuple(wire.to_appointment(item) for item in items if item.bridge_ref and not item.in_series)

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        await self.call(f"sending mail as {sender}", lambda: self._send_mail(sender, message))

    def _send_mail(self, sender: str, message: MailMessage) -> None:
        account = self.account(sender)
        mail = Message(
            account=account,
            folder=account.sent,
            subject=message.subject,
            body=HTMLBody(message.body) if message.html else message.body,
            to_recipients=list(message.to) or None,
            cc_recipients=list(message.cc) or None,
            bcc_recipients=list(message.bcc) or None,
        )
        mail.send_and_save()

    # -- health --------------------------------------------------------------------------------------------

    async def test_connection(self, mailboxes: tuple[str, ...], *, sender: str | None = None) -> ConnectionReport:
        passed: list[str] = []
        problems: list[str] = []
        now = datetime.now(UTC)
        opened: set[str] = set()
        for mailbox in dict.fromkeys((*mailboxes, *filter(None, [sender]))):
            try:
                await self.call(f"reading the calendar of {mailbox}", functools.partial(self._probe, mailbox, now))
            except Unavailable as exc:
                if exc.code == "TLS":
                    problems.append(f"TLS verification of {self._endpoint} failed (set ca_file to the server's CA?)")
                    break
                setting = f"sources.{self.name}.service_endpoint"
                unreachable = (why_unreachable(exc, self._endpoint, setting),)
                return ConnectionReport(self.name, tuple(passed), tuple(problems), unreachable, frozenset(opened))
            except SourceError as exc:
                problem, fatal = connection_problem(
                    exc, mailbox, source=self.name, endpoint=self._endpoint, username=self._username
                )
                problems.append(problem)
                if fatal:
                    break
            else:
                passed.append(f"{mailbox}: calendar readable" + (" (mail sender)" if mailbox == sender else ""))
                opened.add(mailbox)
        return ConnectionReport(self.name, tuple(passed), tuple(problems), opened=frozenset(opened))

    def _probe(self, mailbox: str, now: datetime) -> None:
        # A one-minute CalendarView: authentication, impersonation and the mailbox in one cheap request.
        self._view(self.account(mailbox), now, now + timedelta(minutes=1))

    def reserve_stream_connections(self, streams: int) -> None:
        """Make room in the connection pool for `streams` GetStreamingEvents connections besides the workers'.

        A streaming call holds one of exchangelib's pooled connections for its whole life (up to 30 minutes): with
        the pool sized for the workers alone, every stream would take a worker's connection away, and with as many
        streams as connections every other call would wait in `Protocol.get_session`.
        """
        size = self._pool_size + max(streams, 0)
        self._config.max_connections = size  # for protocols made later
        for protocol in self._protocols:
            protocol.max_connections = size

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for protocol in self._protocols:
            protocol.close()
        forget_protocol(self._config)

    # -- plumbing ------------------------------------------------------------------------------------------

    async def call(self, what: str, work: Callable[[], T]) -> T:
        """Run `work` (exchangelib calls) on this source's thread pool; its errors come back as `SourceError`s.

        Public for the source's change detection (ews_watch.py), whose subscribe, unsubscribe and GetEvents calls
        share the pool and the error translation with every other request.
        """
        loop = asyncio.get_running_loop()
        # The thread runs in the caller's context: its log lines stay about the caller's source and mailbox.
        context = contextvars.copy_context()
        try:
            return await loop.run_in_executor(self._executor, context.run, work)
        except SourceError:
            raise
        except Exception as exc:
            raise translate(exc, what, endpoint=(self._endpoint, f"sources.{self.name}.service_endpoint")) from exc

    def account(self, mailbox: str) -> Any:
        """One exchangelib Account per mailbox, kept: it caches the calendar folder (two GetFolder calls).

        Public for the change detection (ews_watch.py): its subscriptions and streams use the same accounts, so
        they share the source's sessions, timeout and TLS settings.
        """
        key = mailbox.lower()
        with self._accounts_lock:
            account = self._accounts.get(key)
            if account is None:
                account = Account(
                    mailbox,
                    config=self._config,
                    autodiscover=False,
                    access_type=self._access,
                    default_timezone=EWS_UTC,
                )
                self._prepare(account.protocol)
                self._accounts[key] = account
            return account

    def _prepare(self, protocol: Any) -> None:
        """Set this source's timeout and TLS trust on its protocol object only (docs/ews-source.md, TLS)."""
        if mount_on_sessions(protocol, _observed_adapter(self._verify, self._on_request), self._timeout_s):
            self._protocols.append(protocol)


def _raising(results: Iterable[Any]) -> Iterator[Any]:
    # exchangelib yields per-item EWS errors as exception objects among the results.
    for result in results:
        if isinstance(result, Exception):
            raise result
        yield result


def _chunks(start: datetime, end: datetime, span: timedelta) -> Iterator[tuple[datetime, datetime]]:
    low = start
    while low < end:
        high = min(low + span, end)
        yield low, high
        low = high


def _ews_time(value: datetime, zone: str = "UTC") -> Any:
    """An instant as exchangelib writes it: in `zone`, which it sends as the item's StartTimeZone / EndTimeZone
    (Exchange keeps the zone with the item: a series repeats at the same wall-clock time there, and an all-day
    item's midnights are that zone's)."""
    tz = EWS_UTC if zone == UTC_ZONE else EWSTimeZone(zone)
    return EWSDateTime.from_datetime(value.astimezone(UTC)).astimezone(tz)


def _recurrence(recurrence: Recurrence, start: datetime, zone: str) -> Any:
    pattern: Any
    if recurrence.pattern is Pattern.DAILY:
        pattern = DailyPattern(interval=recurrence.interval)
    else:
        days = recurrence.days_of_week or ()
        weekdays = [_WEEKDAYS[day.value] for day in days] or [local_date(start, zone).strftime("%A")]
        pattern = WeeklyPattern(interval=recurrence.interval, weekdays=weekdays, first_day_of_week="Monday")
    first = local_date(start, zone)
    return EwsRecurrence(
        pattern=pattern,
        start=EWSDate(first.year, first.month, first.day),
        end=EWSDate(recurrence.until.year, recurrence.until.month, recurrence.until.day),
    )
