"""The bridge's logging: text or JSON lines, the source and mailbox a line is about, per-source levels, and no
secret at any level (docs/running.md "Logs").

Where a line is about a source or a mailbox, `about(...)` says so for everything logged inside it, the bridge's
own lines and its libraries' alike (a context variable, copied into the threads the EWS source runs on); the
handler's filter applies the level configured for that source. Redaction happens earlier, as each record is
made (the record factory, installed when this module is imported), so that no handler sees a secret, whoever
added it (the Windows service's file and event log, a test's capture): the values of the configured secrets,
and any Authorization header or bearer / basic credential, whichever library wrote it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_source", default=None)
_MAILBOX: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_mailbox", default=None)

# Libraries that, at DEBUG, write whole requests and answers: headers (Authorization: Basic / NTLM / Bearer),
# SOAP envelopes with calendar items and mail bodies. Their DEBUG says nothing about the bridge; INFO at most.
TRAFFIC_LOGGERS = ("exchangelib", "urllib3", "requests_ntlm", "spnego", "httpcore", "hpack", "msal", "kiota_http")
# The HTTP clients log every request at INFO (and azure-core its headers): at the service's default level that
# is a line per Graph call, which cost as much as the call's own processing under load (bench/relay.py).
CHATTY_LOGGERS = ("httpx",)
# azure-identity logs a refused token request as a WARNING with Entra's whole JSON answer, ahead of the bridge's
# own one-line account of it; Alembic announces its plugins and each migration step at INFO on every start. Their
# detail is for DEBUG.
DEBUG_ONLY_LOGGERS = ("azure", "alembic")
_CREDENTIALS = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|ntlm|negotiate|digest)\s+)?"
    r"|\b(?:bearer|basic|ntlm|negotiate)\s+)[A-Za-z0-9+/=._~-]{4,}"
)
REDACTED = "[redacted]"
# Who changed what (CLI and admin API): written at INFO whatever the level, so the trail is never switched off.
AUDIT = "bridge.audit"
_TEXT = "%(asctime)s %(levelname)s %(name)s%(about)s: %(message)s"


@contextmanager
def about(*, source: str | None = None, mailbox: str | None = None) -> Iterator[None]:
    """Lines logged inside are about this source and / or mailbox."""
    source_token = _SOURCE.set(source) if source else None
    mailbox_token = _MAILBOX.set(mailbox) if mailbox else None
    try:
        yield
    finally:
        if mailbox_token is not None:
            _MAILBOX.reset(mailbox_token)
        if source_token is not None:
            _SOURCE.reset(source_token)


_secrets: tuple[str, ...] = ()
_make_record = logging.getLogRecordFactory()


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return _CREDENTIALS.sub(lambda match: match[1] + REDACTED, text)


def _redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _make_record(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: left for the handler to report, as logging does
        return record
    record.msg, record.args = redact(message), None
    if record.exc_info:
        # Rendered (and redacted) now: formatters use this text instead of rendering the raw exception again.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


logging.setLogRecordFactory(_redacted_record)


def redact_secrets(secrets: Iterable[str]) -> None:
    """The secret values never to write, in any log line or traceback, through any handler."""
    global _secrets
    _secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


_instance = ""


def name_instance(name: str) -> None:
    """The instance (bridge/instances.py) each JSON line names: several may log to one place."""
    global _instance
    _instance = name


class _Guard(logging.Filter):
    """Stamps each record with its source and mailbox, and holds it to its source's level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.source_levels: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        source = getattr(record, "source", None) or _SOURCE.get()
        mailbox = getattr(record, "mailbox", None) or _MAILBOX.get()
        threshold = logging.INFO if record.name == AUDIT else self.source_levels.get(source or "", self.level)
        if record.levelno < threshold:
            return False
        about = "".join(f" [{part}]" for part in (source, mailbox) if part)
        record.__dict__.update(source=source, mailbox=mailbox, about=about)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and source / mailbox where known."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if _instance:
            line["instance"] = _instance
        for key in ("source", "mailbox"):
            if getattr(record, key, None):
                line[key] = getattr(record, key)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is written (as logging's own last-resort handler does), so
    a replaced stderr (a test's capture, a daemon's redirect) never leaves it writing to a closed stream."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_guard: _Guard | None = None
_handler: logging.Handler | None = None


def configure(level: int, *, json_lines: bool = False, stream: Any = None) -> logging.Handler:
    """Log to `stream` (stderr) at `level`, as text or JSON lines, each line about its source at that source's level.

    Replaces the handler an earlier call installed (and only that one); returns the new one.
    """
    global _guard, _handler
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(_TEXT))
    _guard = _Guard(level)
    handler.addFilter(_guard)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger(AUDIT).setLevel(logging.INFO)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    for name in TRAFFIC_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    for name in DEBUG_ONLY_LOGGERS:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.CRITICAL)
    return handler


def apply(source_levels: Mapping[str, str], secrets: Iterable[str]) -> None:
    """The configuration's part: each source's own level, and the secret values never to write."""
    redact_secrets(secrets)
    if _guard is None:
        return
    _guard.source_levels = {name: logging.getLevelNamesMapping()[level] for name, level in source_levels.items()}
    lowest = min([_guard.level, *_guard.source_levels.values()])
    # The root lets through what any source wants; the guard holds each line to its own source's level.
    logging.getLogger().setLevel(lowest)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(lowest, logging.WARNING))
    for name in TRAFFIC_LOGGERS:
        logging.getLogger(name).setLevel(max(lowest, logging.INFO))
