"""The REST API's request and response bodies, declared once.

Requests are decoded through these declarations (`bodies.decode`), and the OpenAPI document's component schemas
are generated from them (`openapi.py`), so what the routes accept and what the document says cannot differ. The
schemathesis run (tests/web/test_schema_fuzz.py) sends generated requests, valid and invalid, and checks every
answer against the generated response schemas.

Request structs forbid unknown fields (`additionalProperties: false`); response structs describe what the
routes write, and a field that may be left out is `UnsetType`. What a type cannot say (a known template, a time
zone, an end after the start) the routes check after decoding.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

from bridge.domain import FreeBusy, Pattern, Weekday
from bridge.roster import MAX_ADDRESS, MAX_WORKFORCE_ID

MAX_SUBJECT = 255
MAX_TEXT = 32 * 1024
MAX_REASON = 500

# -- shared field types ----------------------------------------------------------------------------------------

Instant = Annotated[datetime, Meta(examples=["2026-11-24T09:00:00Z"])]
Count = Annotated[int, Meta(ge=0)]
Address = Annotated[str, Meta(extra_json_schema={"format": "email"})]
# What a write accepts: an instant with an offset, or the person's wall-clock time or date (docs/api.md).
WrittenTime = Annotated[
    str,
    Meta(
        description="an ISO 8601 date-time with an offset (an instant), or without one or a date: local time in "
        "time_zone, else in the mailbox's zone",
        examples=["2026-11-24T09:00:00Z", "2026-11-24T09:00:00", "2026-11-24"],
    ),
]
TimeZone = Annotated[
    str,
    Meta(
        max_length=64,
        description="IANA zone (Europe/Berlin) or Windows zone id (W. Europe Standard Time); default: the mailbox's",
        examples=["Europe/Berlin"],
    ),
]
ZoneShown = Annotated[str | None, Meta(description="the person's IANA zone; null until the bridge read it")]
Subject = Annotated[str, Meta(max_length=MAX_SUBJECT)]
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
ShownFreeBusy = Literal["tentative", "busy", "oof", "workingElsewhere"]


# -- errors ----------------------------------------------------------------------------------------------------


class Reason(Struct, kw_only=True):
    """A named thing and what is wrong with it (or why it was left as it is)."""

    name: str
    reason: str


class Problem(Struct, kw_only=True):
    """RFC 9457 problem details"""

    type: str
    title: str
    status: int
    detail: str | UnsetType = UNSET
    invalid_params: list[Reason] | UnsetType = UNSET


# -- reading: appointments, the feed, the timeline -------------------------------------------------------------


class Appointment(Struct, kw_only=True):
    """An appointment as the workforce system sees it."""

    id: Annotated[str, Meta(description="the Exchange item id of the instance")]
    template: str
    free_busy: ShownFreeBusy
    start: Instant
    end: Instant
    all_day: bool
    start_date: Annotated[date, Meta(description="all-day only: the first day, in the person's zone")] | UnsetType = (
        UNSET
    )
    end_date: Annotated[date, Meta(description="all-day only: the day after the last, in the person's zone")] | (
        UnsetType
    ) = UNSET
    subject: Annotated[str, Meta(description="absent when the appointment is private")] | UnsetType = UNSET


class HeldAppointment(Appointment, kw_only=True):
    """A mapped appointment the bridge holds, with where it came from and its version."""

    origin: Literal["exchange", "bridge"]
    version: Annotated[str, Meta(description="Exchange's change key")]


class Change(Struct, kw_only=True):
    """One entry of the change feed."""

    id: Annotated[str, Meta(extra_json_schema={"format": "uuid"}, description="stable: de-duplicate on it")]
    type: Literal["appointment.created", "appointment.updated", "appointment.deleted"]
    sequence: Annotated[int, Meta(ge=1, description="per mailbox, without gaps")]
    occurred_at: Instant
    mailbox: str
    workforce_id: str | None
    time_zone: ZoneShown | UnsetType = UNSET
    appointment: Appointment


class ChangesPage(Struct, kw_only=True):
    """Changes after the cursor, and the cursor to ask with next."""

    changes: list[Change]
    next_after: int


class Segment(Struct, kw_only=True):
    """A stretch of the effective presence: one template, no overlaps."""

    start: Instant
    end: Instant
    template: str
    free_busy: ShownFreeBusy
    appointment_id: str


class MailboxSpan(Struct, kw_only=True):
    """A mailbox and the span asked about."""

    mailbox: str
    workforce_id: str | None
    time_zone: ZoneShown
    from_: Instant = field(name="from")
    to: Instant


class AppointmentList(MailboxSpan, kw_only=True):
    """The mapped appointments the bridge holds for a mailbox, by start."""

    appointments: list[HeldAppointment]


class Timeline(MailboxSpan, kw_only=True):
    """The effective presence of a mailbox: non-overlapping segments by start."""

    segments: list[Segment]


# -- writing: the workforce system's commands ------------------------------------------------------------------


class Recurrence(Struct, kw_only=True, forbid_unknown_fields=True):
    """How an appointment repeats, up to a last day."""

    pattern: Pattern
    interval: Annotated[int, Meta(ge=1, le=99)] = 1
    days_of_week: Annotated[list[Weekday], Meta(extra_json_schema={"uniqueItems": True})] | UnsetType = UNSET
    until: Annotated[date, Meta(description="at most today + the mapping's days_ahead")]


class NewAppointment(Struct, kw_only=True, forbid_unknown_fields=True):
    """An appointment to create: the template decides its free/busy state. null: the default."""

    template: Annotated[str, Meta(description="a template the mapping defines")]
    start: WrittenTime
    end: WrittenTime
    time_zone: TimeZone | UnsetType | None = UNSET
    all_day: Annotated[bool, Meta(description="default: the template's all_day")] | UnsetType | None = UNSET
    subject: Annotated[Subject, Meta(description="default: the template's subject or name")] | UnsetType | None = UNSET
    body: Text | UnsetType | None = UNSET
    recurrence: Recurrence | UnsetType | None = UNSET


class AppointmentChange(Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields of an appointment to change; at least one. null: left as it is."""

    template: str | UnsetType | None = UNSET
    start: WrittenTime | UnsetType | None = UNSET
    end: WrittenTime | UnsetType | None = UNSET
    time_zone: TimeZone | UnsetType | None = UNSET
    all_day: bool | UnsetType | None = UNSET
    subject: Subject | UnsetType | None = UNSET
    body: Text | UnsetType | None = UNSET


# A change names at least one field, which a struct's fields cannot say.
SomeChange = Annotated[AppointmentChange, Meta(extra_json_schema={"minProperties": 1})]


class WrittenAppointment(Struct, kw_only=True):
    """An appointment as Exchange holds it after a write."""

    id: Annotated[str, Meta(description="the bridge id (a create) or the id the request named")]
    exchange_id: str
    version: Annotated[str, Meta(description="send it as If-Match to change or delete the appointment")]
    template: str | None
    free_busy: FreeBusy
    start: Instant
    end: Instant
    all_day: bool
    subject: str
    recurrence: Recurrence | UnsetType = UNSET
    replaced: Annotated[str | None, Meta(description="state: the previous state appointment")] | UnsetType = UNSET


class Conflict412(Problem, kw_only=True):
    """RFC 9457 problem details of a version that no longer holds, with the appointment as it is now"""

    current: WrittenAppointment | UnsetType | None = UNSET


class State(Struct, kw_only=True, forbid_unknown_fields=True):
    """The current state to set: an appointment from now."""

    template: str
    until: (
        Annotated[WrittenTime, Meta(description="default (or null): the template's state_until, in the person's days")]
        | UnsetType
        | None
    ) = UNSET
    time_zone: TimeZone | UnsetType | None = UNSET


class Mail(Struct, kw_only=True, forbid_unknown_fields=True):
    """Mail to send from the configured sender."""

    to: Annotated[list[Address], Meta(min_length=1)]
    cc: list[Address] | UnsetType = UNSET
    bcc: list[Address] | UnsetType = UNSET
    subject: Subject
    body: str
    content_type: Literal["text", "html"] = "text"


class MailSent(Struct, kw_only=True):
    """Mail handed to Exchange."""

    id: str
    sender: str


class PurgedItem(Struct, kw_only=True):
    """An appointment the bridge made, found by its extended property."""

    exchange_id: str
    bridge_id: str | None
    kind: Literal["singleInstance", "seriesMaster", "occurrence", "exception"]
    subject: str
    start: Instant
    end: Instant
    free_busy: str | UnsetType | None = UNSET


class Purge(Struct, kw_only=True):
    """What was (or would be) deleted."""

    dry_run: bool
    items: list[PurgedItem]
    deleted: Count


class Command(Struct, kw_only=True):
    """A command's status and answer."""

    id: str
    kind: Literal["create", "update", "delete", "state", "mail", "purge"]
    mailbox: str | None
    status: Literal["sending", "done", "failed"]
    http_status: int | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: Instant
    finished_at: Instant | None


# -- administration --------------------------------------------------------------------------------------------


class AdminMailbox(Struct, kw_only=True):
    """A mailbox the bridge knows, as `mailboxes list` shows it."""

    address: str
    workforce_id: str | None
    source: str
    status: Literal["active", "disabled", "paused"]
    reason: Annotated[str | None, Meta(description="why it is disabled or paused")]
    last_synced_at: Instant | None
    dirty: Annotated[bool, Meta(description="a sync is pending")]
    time_zone: ZoneShown | UnsetType = UNSET


class MailboxList(Struct, kw_only=True):
    """Every mailbox the bridge knows, by address."""

    mailboxes: list[AdminMailbox]


class MailboxRemoved(Struct, kw_only=True):
    """The mailbox, now disabled, and the deletions emitted."""

    mailbox: AdminMailbox
    deleted_changes: Count


class NewMailbox(Struct, kw_only=True, forbid_unknown_fields=True):
    """A mailbox to mirror."""

    address: Annotated[Address, Meta(max_length=MAX_ADDRESS)]
    workforce_id: Annotated[str, Meta(min_length=1, max_length=MAX_WORKFORCE_ID)]
    source: (
        Annotated[
            str, Meta(min_length=1, max_length=64, description="a configured source; default: the only one, if one")
        ]
        | UnsetType
    ) = UNSET


class RosterEntry(Struct, kw_only=True, forbid_unknown_fields=True):
    """One row of a roster."""

    address: str | UnsetType = UNSET
    workforce_id: str | UnsetType = UNSET
    source: Annotated[str, Meta(description="a configured source; default: the only one")] | UnsetType = UNSET


class Roster(Struct, kw_only=True, forbid_unknown_fields=True):
    """A roster to enrol, all or nothing."""

    mailboxes: Annotated[list[RosterEntry], Meta(min_length=1)]
    dry_run: Annotated[bool, Meta(description="check and report what would change; change nothing")] = False
    check_exchange: Annotated[
        bool, Meta(description="first ask Exchange for every mailbox to start syncing; refuse those it refuses")
    ] = False


class RosterOutcome(Struct, kw_only=True):
    """What a roster changed (or, with dry_run, would change)."""

    dry_run: bool
    added: list[str]
    reenabled: list[str]
    updated: Annotated[list[str], Meta(description="workforce id or source")]
    unchanged: Count


class GroupSync(Struct, kw_only=True, forbid_unknown_fields=True):
    """How to follow a source's group now."""

    dry_run: Annotated[bool, Meta(description="read the group and report what would change; change nothing")] = False


class GroupOutcome(Struct, kw_only=True):
    """What following a group changed (or, with dry_run, would change)."""

    dry_run: bool
    added: list[str]
    reenabled: Annotated[list[str], Meta(description="members the group had removed")]
    updated: Annotated[list[str], Meta(description="workforce id, or now the group's")]
    unchanged: Count
    removed: Annotated[list[str], Meta(description="no longer members")]
    skipped: Annotated[
        list[Reason], Meta(description="members left as they are, each with the reason (name: member ADDRESS)")
    ]


class Disable(Struct, kw_only=True, forbid_unknown_fields=True):
    """Why a mailbox stops syncing."""

    reason: Annotated[str, Meta(min_length=1, max_length=MAX_REASON)] | UnsetType = UNSET


class MailboxPreview(Struct, kw_only=True):
    """What a held mapping change would do to one mailbox."""

    address: str
    shown: Annotated[int, Meta(ge=0, description="appointments shown now")]
    created: Count
    updated: Count
    withdrawn: Count
    examples: Annotated[
        dict[str, list[str]],
        Meta(description="up to three lines per kind of change (created, updated, withdrawn)"),
    ]


class HeldMappingChange(Struct, kw_only=True):
    """A change of the mapping file that would withdraw too much, waiting for confirmation."""

    digest: Annotated[str, Meta(description="SHA-256 (hex) of the held file")]
    since: Instant
    approved: Annotated[bool, Meta(description="confirmed; it is being applied")]
    created: Count
    updated: Count
    withdrawn: Count
    mailboxes: list[MailboxPreview]


class TemplateMappingFile(Struct, kw_only=True):
    """The template mapping file and what is in force."""

    path: str
    editable: Annotated[bool, Meta(description="false: the shipped default, or a file it may not write")]
    yaml: Annotated[str, Meta(description="the file's text now")]
    templates: list[str]
    days_ahead: int
    ignore_prefix: str
    held: Annotated[
        HeldMappingChange | None,
        Meta(description="a change of the file that would withdraw too much, waiting for confirmation"),
    ]


class ApplyMapping(Struct, kw_only=True, forbid_unknown_fields=True):
    """The held change to confirm."""

    digest: (
        Annotated[str, Meta(min_length=1, max_length=64, description="confirm only if this change is held")] | UnsetType
    ) = UNSET


# -- the status, as `presence-bridge status` shows it ----------------------------------------------------------


class SourceState(Struct, kw_only=True):
    name: str
    kind: Literal["graph", "ews"]
    status: Literal["ok", "auth_failed", "unreachable"]
    reason: str | None
    since: Instant


class MailboxCounts(Struct, kw_only=True):
    active: Count
    disabled: Count
    paused: Count


class AttentionMailbox(Struct, kw_only=True):
    address: str
    source: str
    status: Literal["active", "disabled", "paused"]
    reason: str | None
    since: Instant


class MailboxesState(Struct, kw_only=True):
    by_source: Annotated[
        dict[str, MailboxCounts], Meta(description="per source, the number of mailboxes in each status")
    ]
    attention: Annotated[
        list[AttentionMailbox],
        Meta(description="disabled or paused mailboxes, and active ones with a note, latest first"),
    ]
    time_zones: Annotated[
        dict[str, dict[str, int]],
        Meta(description="per source, the number of mailboxes in each zone ('not read yet': the default)"),
    ]


class SubscriptionDue(Struct, kw_only=True):
    mailbox: str
    source: str
    expires_at: Instant
    reauthorize_requested: bool


class Backlog(Struct, kw_only=True):
    undelivered: Count
    oldest: Instant | None
    oldest_age_s: Annotated[float, Meta(ge=0)]
    failing: Annotated[int, Meta(ge=0, description="undelivered after a failed attempt")]


class DeliveryError(Struct, kw_only=True):
    mailbox: str
    attempts: Count
    error: str
    next_attempt_at: Instant


class SyncProgress(Struct, kw_only=True):
    done: Count
    total: Count
    pending: Count
    since: Instant
    rate_per_s: Annotated[float, Meta(ge=0, description="over the last minute")]
    eta_s: Count | None


class HeldMappingState(Struct, kw_only=True):
    since: Instant
    withdrawn: Count
    approved: Annotated[bool, Meta(description="confirmed; the bridge is applying it")]


class AdminStatus(Struct, kw_only=True):
    """What `presence-bridge status` shows; lists hold at most 10 entries, most pressing first"""

    at: Instant
    sources: Annotated[list[SourceState], Meta(description="every configured source and its state")]
    mailboxes: MailboxesState
    subscriptions: Annotated[list[SubscriptionDue], Meta(description="Graph subscriptions expiring soonest")]
    backlog: Backlog
    delivery_errors: Annotated[
        list[DeliveryError],
        Meta(
            description="undelivered changes whose last attempt failed, latest failure first, with the receiver's "
            "answer"
        ),
    ]
    sync_progress: Annotated[
        SyncProgress | None,
        Meta(
            description="mailboxes waiting for a sync (a first sync, a window roll) and how fast they go, or null "
            "when none waits"
        ),
    ]
    mapping_change_held: Annotated[
        HeldMappingState | None,
        Meta(description="a template mapping change held for confirmation (docs/templates.md), or null"),
    ]
