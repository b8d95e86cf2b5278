"""Plain typed values shared by every layer of the bridge. No I/O, no SDK types.

Times are always timezone-aware UTC `datetime`s: sources convert on the way in, so nothing above them has to
think about Exchange's time-zone names. Where a person's local time matters (writes: recurrence, all-day days),
a value carries the IANA name of the zone beside its UTC instants.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

# What the configuration accepts as a mailbox address (config.schema.json), so every way in agrees (the REST API,
# rosters): one @, a dot after it.
MAIL_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class FreeBusy(enum.StrEnum):
    """An appointment's free/busy state, spelt as Graph spells `showAs`.

    EWS's LegacyFreeBusyStatus maps onto the same values (NoData → UNKNOWN).
    """

    FREE = "free"
    TENTATIVE = "tentative"
    BUSY = "busy"
    OOF = "oof"
    WORKING_ELSEWHERE = "workingElsewhere"
    UNKNOWN = "unknown"


class AppointmentKind(enum.StrEnum):
    """Where an instance comes from.

    Delta reads yield instances only; a series master is seen only when one is read by id (the relay reads the
    recurring appointments it created).
    """

    SINGLE = "singleInstance"
    OCCURRENCE = "occurrence"
    EXCEPTION = "exception"
    SERIES_MASTER = "seriesMaster"


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """An instant as the bridge writes it everywhere: ISO 8601 in UTC, to the second, with `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range [start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"window end {self.end.isoformat()} is not after start {self.start.isoformat()}")

    @classmethod
    def days_ahead(cls, today: date, days: int) -> Window:
        """[today 00:00 UTC, today + days 00:00 UTC): the span a mailbox is mirrored for."""
        start = datetime.combine(today, time(), tzinfo=UTC)
        return cls(start, start + timedelta(days=days))

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether [start, end) shares time with the window. A zero-length appointment has no time to share: it
        is inside when its instant is, start included and end excluded, as Graph's calendarView counts it."""
        if start == end:
            return self.start <= start < self.end
        return start < self.end and end > self.start


@dataclass(frozen=True, slots=True)
class Appointment:
    """One calendar instance as Exchange holds it: a single appointment, an occurrence or an exception.

    `item_id` identifies the instance (a Graph immutable id; an EWS ItemId, which for an occurrence Exchange derives
    from its series and original start, so it survives the occurrence becoming an exception), and
    `change_key` changes on every write to it (for an occurrence, on every write to its series).
    """

    item_id: str
    change_key: str
    start: datetime
    end: datetime
    free_busy: FreeBusy
    subject: str = ""
    all_day: bool = False
    private: bool = False
    is_organizer: bool = True
    kind: AppointmentKind = AppointmentKind.SINGLE
    series_id: str | None = None
    # Value of the bridge's extended property: set only on items the bridge itself created.
    bridge_ref: str | None = None
    transaction_id: str | None = None
    # When Exchange last changed the item, as it says (None: not said, as for a Graph occurrence stub). Only the
    # change-latency metric reads it, so it takes no part in comparing what the bridge mirrors.
    modified_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class DeltaResult:
    """What one delta read of a mailbox's window returned, up to the new delta token.

    `full_round` is true when the read started from nothing (no token, or the old one had expired): `upserts`
    is then the whole window, and anything known before that is not in it has gone. An item id is in `upserts`
    or in `removed`, never both: the source resolves an item's fate within the round.
    """

    upserts: tuple[Appointment, ...]
    removed: tuple[str, ...]
    token: str
    full_round: bool


class Pattern(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class Weekday(enum.StrEnum):
    """Days as Graph spells `daysOfWeek` (EWS's DaysOfWeek are the same names, capitalised)."""

    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A bounded repetition of an appointment the bridge writes: every `interval` days or weeks until `until`.

    Dates and weekdays are those of the draft's time zone, and the series repeats at the same wall-clock time
    there (across DST changes); the bridge writes only series that end (the workforce system knows every day it
    books), so there is no open-ended or counted form.
    """

    pattern: Pattern
    until: date
    interval: int = 1
    days_of_week: tuple[Weekday, ...] = ()


@dataclass(frozen=True, slots=True)
class AppointmentDraft:
    """An appointment the bridge writes to Exchange on the workforce system's behalf.

    `time_zone` (IANA) is the zone it is written in: Exchange keeps it with the item, a series repeats at the
    same wall-clock time there, and an all-day appointment's start and end are midnights there.
    """

    subject: str
    start: datetime
    end: datetime
    free_busy: FreeBusy
    all_day: bool = False
    body: str = ""
    categories: tuple[str, ...] = ()
    bridge_ref: str | None = None
    recurrence: Recurrence | None = None
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class AppointmentPatch:
    """The fields of an existing appointment to change; None leaves a field as it is.

    A new start or end is written in `time_zone` (IANA), as a draft's are.
    """

    subject: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    free_busy: FreeBusy | None = None
    all_day: bool | None = None
    body: str | None = None
    categories: tuple[str, ...] | None = None
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What Exchange answered to a write: the item's id and the change key the write produced."""

    item_id: str
    change_key: str


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    mailbox: str
    notification_url: str
    lifecycle_url: str
    client_state: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    mailbox: str
    expires_at: datetime
    notification_url: str = ""


@dataclass(frozen=True, slots=True)
class Notification:
    """One item of a webhook body: only a hint that the subscription's mailbox changed (or, with
    `lifecycle_event`, that the subscription needs attention); trusted once its `client_state` matches."""

    subscription_id: str
    client_state: str | None = None
    lifecycle_event: str | None = None
    # What the item names, when it names one: a change notification carries the item's id and the change key it
    # had then. Untrusted like the rest; only ever used to skip a read of what the mirror already holds.
    change_type: str | None = None
    item_id: str | None = None
    change_key: str | None = None


@dataclass(frozen=True, slots=True)
class MailMessage:
    subject: str
    body: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    html: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """The outcome of a source's connection test, each finding in a few words for an administrator.

    `problems` need an administrator (a setting, a permission, a mailbox); `unreachable` may pass on a later try
    (a refused connection, a timeout, a server error): `presence-bridge check` exits differently for the two.
    """

    source: str
    passed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()
    opened: frozenset[str] = frozenset()  # the mailboxes (as asked for) whose calendar could be read

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unreachable


# The directory attributes a group's members may take their workforce id from (sources.NAME.group.workforce_id).
MEMBER_ATTRIBUTES = ("employeeId", "mail", "userPrincipalName", "id")


@dataclass(frozen=True, slots=True)
class DirectoryMember:
    """A user the directory lists as a member of a group, directly or through nested groups; `mail` is None for a
    user without a mail address (no mailbox), `attributes` holds MEMBER_ATTRIBUTES (None where unset)."""

    object_id: str
    mail: str | None
    attributes: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """An appointment as the workforce system sees it: mapped to a template, subject masked where needed."""

    item_id: str
    template: str
    free_busy: FreeBusy
    start: datetime
    end: datetime
    all_day: bool
    subject: str | None


@dataclass(frozen=True, slots=True)
class MirrorItem:
    """One instance as the bridge last saw it, with what it was shown as (`template` None: not shown)."""

    appointment: Appointment
    template: str | None
    shown_hash: str

    @property
    def item_id(self) -> str:
        return self.appointment.item_id


class ChangeType(enum.StrEnum):
    """What the workforce system is told happened to a shown appointment."""

    CREATED = "appointment.created"
    UPDATED = "appointment.updated"
    DELETED = "appointment.deleted"


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a presence timeline with one effective template (overlaps already resolved)."""

    start: datetime
    end: datetime
    template: str
    free_busy: FreeBusy
    item_id: str


@dataclass(frozen=True, slots=True)
class RelayWrites:
    """What the relay is writing or lately wrote in one mailbox, as the sync engine needs it to tell echoes.

    `written`: item or series id → the change key the relay's write produced; `in_flight`: transaction ids of
    creates not answered yet; `refs`: transaction id → bridge id of recent creates; `busy`: item or series ids
    the relay is writing now or finished writing after the read being planned began.
    """

    written: Mapping[str, str] = field(default_factory=dict)
    in_flight: frozenset[str] = frozenset()
    refs: Mapping[str, str] = field(default_factory=dict)
    busy: frozenset[str] = frozenset()

    def busy_with(self, item_id: str, series_id: str | None) -> bool:
        return item_id in self.busy or (series_id is not None and series_id in self.busy)

    def wrote(self, appointment: Appointment) -> bool:
        """Whether this instance is exactly as a relay write left it (an occurrence shares its series' key)."""
        for key in (appointment.item_id, appointment.series_id):
            if key is not None and self.written.get(key) == appointment.change_key:
                return True
        return False

    def creating(self, appointment: Appointment) -> bool:
        return appointment.transaction_id is not None and appointment.transaction_id in self.in_flight

    def ref(self, appointment: Appointment) -> str | None:
        return None if appointment.transaction_id is None else self.refs.get(appointment.transaction_id)
