"""Faults on demand and the request log of the EWS emulator.

A fault rule answers the next `count` matching requests (by operation and / or mailbox) with a SOAP fault in
Exchange's shape instead of serving them: ErrorServerBusy with `BackOffMilliseconds` in its MessageXml (what
Exchange's throttling sends, sample §M), or any other EWS code; or with garbage (200 and a body that is not
SOAP, as a misconfigured proxy in front of Exchange answers). The log records every request with its
operation, mailbox, account, HTTP status and EWS response codes, for tests that check a client's manners.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from emulators.ews_xml import SoapFault

SERVER_BUSY_TEXT = "The server cannot service this request right now. Try again later."


@dataclass
class FaultRule:
    code: str
    message: str
    remaining: int
    operation: str | None = None
    mailbox: str | None = None
    back_off_ms: int | None = None
    # Answer 200 with a body that is not SOAP at all (a proxy's error page, a truncated answer).
    garbage: bool = False

    def matches(self, operation: str, mailbox: str | None) -> bool:
        if self.remaining <= 0:
            return False
        if self.operation is not None and self.operation != operation:
            return False
        return self.mailbox is None or (mailbox is not None and self.mailbox == mailbox.lower())

    def to_fault(self) -> SoapFault:
        values = {"BackOffMilliseconds": str(self.back_off_ms)} if self.back_off_ms is not None else None
        return SoapFault(self.code, self.message, values=values)


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def take(self, operation: str, mailbox: str | None) -> FaultRule | None:
        """The next matching rule (using up one of its count), or None."""
        for rule in self.rules:
            if rule.matches(operation, mailbox):
                rule.remaining -= 1
                self.rules = [kept for kept in self.rules if kept.remaining > 0]
                return rule
        return None

    def clear(self) -> None:
        self.rules.clear()


@dataclass
class LoggedRequest:
    operation: str
    mailbox: str | None
    account: str | None
    status: int
    codes: list[str]
    started: float
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "mailbox": self.mailbox,
            "account": self.account,
            "status": self.status,
            "codes": list(self.codes),
            "started": self.started,
            "durationMs": round(self.duration_ms, 3),
        }


@dataclass
class Stats:
    log: list[LoggedRequest] = field(default_factory=list)

    def record(
        self,
        operation: str,
        *,
        mailbox: str | None,
        account: str | None,
        status: int,
        codes: list[str],
        started: float,
        started_monotonic: float,
    ) -> None:
        duration = (time.monotonic() - started_monotonic) * 1000
        self.log.append(LoggedRequest(operation, mailbox, account, status, codes, started, duration))

    def to_json(self, *, log_limit: int | None = None) -> dict[str, Any]:
        operations = Counter(entry.operation for entry in self.log)
        codes = Counter(code for entry in self.log for code in entry.codes)
        entries = self.log if log_limit is None else self.log[-log_limit:] if log_limit else []
        return {
            "requests": len(self.log),
            "operations": dict(operations),
            "codes": dict(codes),
            "log": [entry.to_json() for entry in entries],
        }

    def clear(self) -> None:
        self.log.clear()
