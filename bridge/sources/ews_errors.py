"""exchangelib's exceptions as the bridge's `SourceError`s, and connection-test problems an administrator can act on.

The source keeps exchangelib's fail-fast retry policy (the `Configuration` default): a throttled or failing
request comes back at once as an error with the server's back-off, and the engine decides when to retry, per
mailbox, instead of a worker thread sleeping inside exchangelib for up to an hour.
"""

from __future__ import annotations

from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorInternalServerTransientError,
    ErrorInvalidIdMalformed,
    ErrorIrresolvableConflict,
    ErrorItemNotFound,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)

from bridge.sources.base import (
    AuthFailed,
    Conflict,
    ItemNotFound,
    MailboxNotFound,
    SourceError,
    Throttled,
    Unavailable,
    Unreachable,
)
from bridge.sources.unreachable import network_failure, why_unreachable

_MAILBOX = (ErrorNonExistentMailbox, ErrorImpersonateUserDenied, ErrorAccessDenied)
_ITEM = (ErrorItemNotFound, ErrorInvalidIdMalformed)
_OUTAGE = (
    ErrorTimeoutExpired,
    ErrorInternalServerTransientError,
    ErrorMailboxStoreUnavailable,
    ErrorMailboxMoveInProgress,
)
# Without a BackOffMilliseconds from the server, exchangelib's own default wait (BaseProtocol.RETRY_WAIT).
_DEFAULT_BACK_OFF = 10.0


def translate(exc: Exception, what: str, *, endpoint: tuple[str, str] | None = None) -> SourceError:
    """`exc` in the bridge's terms; `endpoint` (the URL and the setting naming it) lets a connection that could
    not be made be said plainly ("connection refused by HOST:PORT (sources.NAME.service_endpoint)")."""
    code = type(exc).__name__
    message = f"{what}: {code}: {exc}"
    if endpoint is not None and network_failure(exc):
        # exchangelib re-raises a connection error it gave up retrying as ErrorTimeoutExpired or ErrorServerBusy
        # ("Reraised from ConnectionError(...)"), or as a TransportError, with the socket's error far down.
        message = f"{what}: {why_unreachable(exc, *endpoint)}"
    if isinstance(exc, UnauthorizedError):
        return AuthFailed(message, code=code, status=401)
    if str(exc).startswith(("Reraised from", "Caused by")):
        # exchangelib raises ErrorServerBusy or ErrorTimeoutExpired for a connection error it would have retried
        # and for a closed connection: the server did not answer, whatever the code says.
        return Unreachable(message, code=code)
    if isinstance(exc, ErrorServerBusy):
        return Throttled(message, retry_after=float(exc.back_off or _DEFAULT_BACK_OFF), code=code, status=None)
    if isinstance(exc, _MAILBOX):
        return MailboxNotFound(message, code=code)
    if isinstance(exc, _ITEM):
        return ItemNotFound(message, code=code)
    if isinstance(exc, ErrorIrresolvableConflict):
        return Conflict(message, code=code)
    if isinstance(exc, _OUTAGE):
        return Unavailable(message, code=code)
    if isinstance(exc, ResponseMessageError):
        return SourceError(message, code=code)
    if isinstance(exc, TransportError):
        # exchangelib re-raises requests' SSLError as a bare TransportError with the TLS message.
        tls = "SSL" in str(exc) or "CERTIFICATE" in str(exc).upper()
        return Unreachable(message, code="TLS" if tls else code)
    if isinstance(exc, OSError):
        return Unreachable(message, code=code)
    raise exc


def connection_problem(
    exc: SourceError, mailbox: str, *, source: str, endpoint: str, username: str
) -> tuple[str, bool]:
    """What a connection test tells the administrator about a refusal, and whether the other mailboxes need not be
    tried (a connection that fails is `why_unreachable`'s)."""
    if isinstance(exc, AuthFailed):
        why = "a wrong password, or the account is locked out or expired"
        return f"the service account {username} was refused by {endpoint}: {why} (sources.{source}.password)", True
    if exc.code == "ErrorImpersonateUserDenied":
        fix = "give it the ApplicationImpersonation role, or set impersonation: false for delegate access"
        return f"{mailbox}: {username} may not impersonate this mailbox ({fix})", False
    if exc.code == "ErrorAccessDenied":
        return f"{mailbox}: {username} has no delegate access to this mailbox: {exc}", False
    if exc.code == "ErrorNonExistentMailbox":
        return f"{mailbox}: no such mailbox on {endpoint}", False
    return f"{mailbox}: {exc}", False
