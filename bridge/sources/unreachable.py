"""A connection that failed, said the way an administrator looks for it: which host, what happened, which setting.

The client libraries wrap the socket's error several layers deep (exchangelib's `ErrorTimeoutExpired: Reraised
from ConnectionError(HTTPConnectionPool(...): Max retries exceeded ... [Errno 111] Connection refused)`, httpx's
`ConnectError`, azure-core's `ServiceRequestError`); the operating system's own error at the bottom of the chain
is what names the fix.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"https": 443, "http": 80}


def why_unreachable(exc: BaseException, url: str, setting: str) -> str:
    """`connection refused by HOST:PORT (SETTING)` and its kin, for a request to `url` that failed with `exc`."""
    parts = urlsplit(url)
    host = parts.hostname or url
    where = f"{host}:{parts.port or _DEFAULT_PORTS.get(parts.scheme, '')}".rstrip(":")
    for cause in _chain(exc):
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {where} ({setting})"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name {host} ({setting})"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {where} is not trusted: {cause.verify_message} ({setting}; ca_file?)"
        if isinstance(cause, TimeoutError):
            return f"no answer from {where} in time ({setting})"
        if isinstance(cause, ConnectionResetError):
            return f"{where} closed the connection ({setting})"
    return f"cannot reach {where}: {exc} ({setting})"


def network_failure(exc: BaseException) -> bool:
    """Whether an operating system's network error (refused, reset, timed out, unresolved) lies under `exc`."""
    return any(isinstance(cause, OSError) for cause in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
