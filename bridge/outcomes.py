"""What a workforce command came to, in the bridge's own words: the relay returns these, `bridge/web/` answers them.

The relay knows no HTTP: it says a command was carried out (`Created`, `StateSet`, `Updated`, `Deleted`,
`Purged`, `MailAccepted`) or why not (`NotFound`, `Conflict`, `Stale`, `Invalid`, `KeyReused`, `Unavailable`,
`ExchangeFailed`). Which status code and problem document each becomes is the web layer's choice
(bridge/web/answers.py). A retried request gets the answer recorded for the first one (`Replayed`): the relay
stores that answer through the `record` function the web layer gives it and hands it back unread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.domain import Appointment


@dataclass(frozen=True, slots=True)
class AppointmentView:
    """An appointment as the workforce system knows it: under the id it used (`bridge_id`) and its template."""

    appointment: Appointment
    bridge_id: str
    template: str | None


@dataclass(frozen=True, slots=True)
class Created:
    view: AppointmentView
    recurrence: dict[str, Any] | None = None  # the recurrence as requested, when the appointment is a series


@dataclass(frozen=True, slots=True)
class StateSet:
    """The current state's appointment was written; `replaced` is the one it took the place of, if any."""

    view: AppointmentView
    replaced: str | None


@dataclass(frozen=True, slots=True)
class Updated:
    view: AppointmentView


@dataclass(frozen=True, slots=True)
class Deleted:
    pass


@dataclass(frozen=True, slots=True)
class Purged:
    """The bridge's items of a mailbox: deleted, or only listed when `dry_run`."""

    items: tuple[Appointment, ...]
    dry_run: bool


@dataclass(frozen=True, slots=True)
class MailAccepted:
    command_id: str
    sender: str


@dataclass(frozen=True, slots=True)
class NotFound:
    detail: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """The command cannot be carried out in the state things are in (`retry_after` seconds: it may pass)."""

    detail: str
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class Stale:
    """The appointment changed since the version the command named; `current` is how it is now, if it still is."""

    detail: str
    current: AppointmentView | None


@dataclass(frozen=True, slots=True)
class Invalid:
    """The command's values do not fit together; `problems` name each field (`name`) and what is wrong (`reason`)."""

    detail: str
    problems: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class KeyReused:
    """The idempotency key was used before for a different command."""

    detail: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The bridge or Exchange cannot carry out the command now; `retry_after` seconds when it is worth retrying."""

    detail: str
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class ExchangeFailed:
    """Exchange refused the command, or may or may not have carried it out (mail is never sent twice)."""

    detail: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """The answer given to a command, as the store keeps it (`error`: why it failed, None when it was carried out)."""

    status: int
    body: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Replayed:
    """A retry with the same idempotency key: the answer recorded for the first request."""

    recorded: Recorded


Done = Created | StateSet | Updated | Deleted | Purged | MailAccepted
Refused = NotFound | Conflict | Stale | Invalid | KeyReused | Unavailable | ExchangeFailed
Outcome = Done | Refused | Replayed
