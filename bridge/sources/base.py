"""The one protocol every calendar backend implements, and the errors it may raise.

A deployment mixes Exchange Online (Graph) and on-prem (EWS) mailboxes; everything above this layer talks to a
`CalendarSource` and never learns which one a mailbox has. How a source's changes are noticed is a protocol of its
own (`ChangeDetection`, watching.py). Errors are the backend's answers translated into the
bridge's terms, so the engine can decide what to do (retry, resync, disable a mailbox) without SDK knowledge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from bridge.domain import (
    Appointment,
    AppointmentDraft,
    AppointmentPatch,
    ConnectionReport,
    DeltaResult,
    DirectoryMember,
    MailMessage,
    Window,
    WriteResult,
)

# Told of every HTTP request a source sends to Exchange (retries included): the answer's status code, or
# "unreachable" when no answer came. The service counts them (bridge/metrics.py).
RequestObserver = Callable[[str], None]


def _ignore(status: str) -> None:
    pass


IGNORE_REQUESTS: RequestObserver = _ignore


class SourceError(Exception):
    """Exchange refused or failed a request in a way the caller should know about."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Throttled(SourceError):
    """Exchange is still throttling after the client's own retries; try again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float, code: str = "", status: int | None = 429) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class Unavailable(SourceError):
    """Exchange or the network between is failing (5xx after retries, connection errors): retry later."""


class Unreachable(Unavailable):
    """The server did not answer at all (connection refused or reset, timeout, TLS): the whole source is down,
    not one mailbox."""


class AuthFailed(SourceError):
    """The bridge's credentials were refused: the source needs an administrator, not a retry loop."""


class MailboxNotFound(SourceError):
    """Exchange does not know the mailbox (or the bridge may not open it)."""


class ItemNotFound(SourceError):
    """The appointment (or subscription) no longer exists."""


class Conflict(SourceError):
    """The item changed since the change key the write was based on (Graph 412, EWS ErrorIrresolvableConflict)."""


class SubscriptionExists(SourceError):
    """A subscription for this resource and notification URL already exists (Graph 409)."""


class QuotaExceeded(SourceError):
    """Exchange refuses another subscription for this mailbox or app (Graph 403)."""


class CalendarSource(Protocol):
    """One Exchange backend (a Graph tenant or an EWS server) serving any number of mailboxes: what it reads, writes
    and sends."""

    name: str

    async def read_delta(self, mailbox: str, window: Window, token: str | None) -> DeltaResult:
        """Changes in `window` since `token`; from nothing when `token` is None or has expired."""
        ...

    async def read_item(self, mailbox: str, item_id: str) -> Appointment | None:
        """One instance as Exchange holds it now, or None when it is gone."""
        ...

    async def create(self, mailbox: str, draft: AppointmentDraft, transaction_id: str) -> WriteResult:
        """Create an appointment; a retry with the same `transaction_id` creates nothing twice."""
        ...

    async def update(self, mailbox: str, item_id: str, patch: AppointmentPatch, change_key: str | None) -> WriteResult:
        """Change an appointment; with `change_key`, only if nobody changed it since (else `Conflict`)."""
        ...

    async def delete(self, mailbox: str, item_id: str, change_key: str | None = None) -> None:
        """Delete an appointment without sending cancellations; deleting a missing item is not an error.

        With `change_key`, only if nobody changed it since (else `Conflict`).
        """
        ...

    async def read_time_zones(self, mailboxes: Sequence[str]) -> Mapping[str, str | SourceError | None]:
        """Each mailbox's owner's time zone as an IANA name, None when Exchange keeps none for it (the caller falls
        back on the source's default, `sources.NAME.time_zone`), or the `SourceError` its read ended with: one
        mailbox failing does not fail the others'. A failure of the whole read (`Unreachable`, `AuthFailed`...) is
        raised."""
        ...

    async def find_bridge_items(self, mailbox: str) -> tuple[Appointment, ...]:
        """Every single appointment and series master in the calendar carrying the bridge's marker, at any date."""
        ...

    async def send_mail(self, sender: str, message: MailMessage) -> None: ...

    async def test_connection(self, mailboxes: tuple[str, ...], *, sender: str | None = None) -> ConnectionReport:
        """Check credentials, permissions, reachability and that each mailbox (and the mail `sender`, when this
        source sends mail) can be opened; report what passed and every problem."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class GroupDirectory(Protocol):
    """A directory that lists a group's members (Entra ID through Graph): the roster of a source with a group."""

    name: str

    async def group_members(self, group_id: str) -> tuple[DirectoryMember, ...]:
        """Every user the group holds, directly or through nested groups, each once; `SourceError` when the group
        cannot be read (unknown, a missing permission, the directory unreachable)."""
        ...
