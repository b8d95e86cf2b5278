"""What the Graph emulator does wrong on purpose, what it limits, and what it counts.

`Faults` holds the failures a test or the demo asks for (the next N requests answer 429 or 503, notifications
are dropped, duplicated or shuffled, delta answers empty pages, subscription creation hits a quota) and the
limits Graph always applies (4 concurrent requests per app and mailbox, 10,000 requests per 10 minutes).
`Stats` records what clients did, so a test can check a client's manners: the peak concurrency per mailbox, the
Prefer headers it sent, a log of requests.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulators.graph_common import GraphError, format_instant, now

ROUTE_KINDS = (
    "token",
    "user",
    "events",
    "event",
    "instances",
    "calendarView",
    "transitiveMembers",
    "delta",
    "sendMail",
    "mailboxSettings",
    "subscriptions",
    "subscription",
    "batch",
)
_FAILURES = {
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("generalException", "An internal server error occurred. The operation failed."),
    503: ("ServiceNotAvailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The gateway did not receive a response from the backend in time."),
}


@dataclass
class FaultRule:
    """The next `remaining` matching requests fail with `status` (and Retry-After `retry_after` seconds).

    With `share` < 1 only that share of the matching requests fails (picked at random); with `until` (a
    `time.monotonic()` instant) the rule ends then, whatever is left of its count.
    """

    status: int
    remaining: int
    user_id: str | None = None
    route: str | None = None
    retry_after: int | None = 1
    share: float = 1.0
    until: float | None = None

    def live(self, moment: float) -> bool:
        return self.remaining > 0 and (self.until is None or moment < self.until)

    def matches(self, route: str, user_id: str | None) -> bool:
        if self.route is None and route == "token":
            return False  # token faults are asked for by name: a generic rule is about Graph, not Entra
        return (self.route is None or self.route == route) and (self.user_id is None or self.user_id == user_id)

    def error(self) -> GraphError:
        code, message = _FAILURES.get(self.status, ("UnknownError", "The request failed."))
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return GraphError(self.status, code, message, headers=headers)


@dataclass
class Faults:
    latency_ms: float = 0.0
    concurrency_limit: int = 4
    concurrency_retry_after: int = 1
    rate_limit: tuple[int, float] | None = (10_000, 600.0)
    # Graph's global limit, per app across all tenants (throttling-limits, "global limits").
    app_rate_limit: tuple[int, float] | None = (130_000, 10.0)
    rules: list[FaultRule] = field(default_factory=list)
    drop_notifications: int = 0
    # A share of notifications dropped at random (beside the count above).
    drop_share: float = 0.0
    duplicate_notifications: int = 0
    shuffle_notifications: bool = False
    subscription_quota: int = 0
    empty_delta_pages: dict[str | None, int] = field(default_factory=dict)
    # user id → (delta pages still to serve, status, pages between expiries, expiries left): then the user's sync
    # states expire, mid-round if need be.
    delta_expiry: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    # Answers of a mailbox (or anyone's: None) that are 200 but not the documented shape.
    malformed_answers: dict[str | None, int] = field(default_factory=dict)
    # The most directory objects one page holds, whatever `$top` asks: Graph's server-side paging may return
    # fewer than asked, and a client must follow `@odata.nextLink` until there is none.
    directory_page: int | None = None

    def add_rule(self, rule: FaultRule) -> None:
        if rule.route is not None and rule.route not in ROUTE_KINDS:
            raise ValueError(f"unknown route kind {rule.route!r}; one of {', '.join(ROUTE_KINDS)}")
        if rule.status not in _FAILURES:
            raise ValueError(f"a fault answers one of {sorted(_FAILURES)}, not {rule.status}")
        self.rules.append(rule)

    def take(self, route: str, user_id: str | None) -> GraphError | None:
        """The error the next matching rule asks for (using up one of its count), or None."""
        moment = time.monotonic()
        self.rules = [rule for rule in self.rules if rule.live(moment)]
        for rule in self.rules:
            if rule.matches(route, user_id) and (rule.share >= 1.0 or random.random() < rule.share):
                rule.remaining -= 1
                return rule.error()
        return None

    def take_empty_delta_page(self, user_id: str) -> bool:
        return _take_for(self.empty_delta_pages, user_id)

    def take_malformed(self, user_id: str) -> bool:
        return _take_for(self.malformed_answers, user_id)

    def take_delta_expiry(self, user_id: str) -> int | None:
        """After one more delta page of `user_id`: the status its sync states now expire with, if they do."""
        pending = self.delta_expiry.get(user_id)
        if pending is None:
            return None
        pages, status, every, times = pending
        if pages > 1:
            self.delta_expiry[user_id] = (pages - 1, status, every, times)
            return None
        if times > 1:
            self.delta_expiry[user_id] = (every, status, every, times - 1)
        else:
            del self.delta_expiry[user_id]
        return status

    def take_quota(self) -> bool:
        if self.subscription_quota > 0:
            self.subscription_quota -= 1
            return True
        return False

    def take_drop(self) -> bool:
        if self.drop_notifications > 0:
            self.drop_notifications -= 1
            return True
        return self.drop_share > 0 and random.random() < self.drop_share

    def take_duplicate(self) -> bool:
        if self.duplicate_notifications > 0:
            self.duplicate_notifications -= 1
            return True
        return False

    def clear(self) -> None:
        self.rules.clear()
        self.drop_notifications = self.duplicate_notifications = self.subscription_quota = 0
        self.drop_share = 0.0
        self.shuffle_notifications = False
        self.empty_delta_pages.clear()
        self.delta_expiry.clear()
        self.malformed_answers.clear()
        self.latency_ms = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "latencyMs": self.latency_ms,
            "concurrencyLimit": self.concurrency_limit,
            "directoryPage": self.directory_page,
            "rateLimit": None
            if self.rate_limit is None
            else {"requests": self.rate_limit[0], "seconds": self.rate_limit[1]},
            "appRateLimit": None
            if self.app_rate_limit is None
            else {"requests": self.app_rate_limit[0], "seconds": self.app_rate_limit[1]},
            "rules": [
                {
                    "status": rule.status,
                    "remaining": rule.remaining,
                    "user": rule.user_id,
                    "route": rule.route,
                    "retryAfter": rule.retry_after,
                    "share": rule.share,
                }
                for rule in self.rules
            ],
            "dropNotifications": self.drop_notifications,
            "dropShare": self.drop_share,
            "duplicateNotifications": self.duplicate_notifications,
            "shuffleNotifications": self.shuffle_notifications,
            "subscriptionQuota": self.subscription_quota,
            "emptyDeltaPages": {key or "*": count for key, count in self.empty_delta_pages.items()},
            "deltaExpiry": {
                user: {"afterPages": pages, "status": status, "times": times}
                for user, (pages, status, _, times) in self.delta_expiry.items()
            },
            "malformedAnswers": {key or "*": count for key, count in self.malformed_answers.items()},
        }


class MailboxLimits:
    """Graph's per app-and-mailbox limits (concurrent requests, requests per sliding window) and its global limit
    per app (requests per sliding window, whatever the mailbox or tenant)."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._recent: dict[tuple[str, str], deque[float]] = {}

    def enter(self, key: tuple[str, str]) -> int:
        """Count one more request in flight; the count including it (a rejected one is `leave`d at once)."""
        self._in_flight[key] += 1
        return self._in_flight[key]

    def leave(self, key: tuple[str, str]) -> None:
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]

    def concurrency_error(self) -> GraphError:
        return GraphError(
            429,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
            headers={"Retry-After": str(self._faults.concurrency_retry_after)},
        )

    def check_rate(self, key: tuple[str, str]) -> None:
        self._check(key, self._faults.rate_limit, "Application is over its MailboxRequestRate limit.")

    def check_app_rate(self, client_id: str) -> None:
        self._check((client_id, "*"), self._faults.app_rate_limit, "Application is over its global request limit.")

    def _check(self, key: tuple[str, str], limit: tuple[int, float] | None, message: str) -> None:
        if limit is None:
            return
        count, window = limit
        moment = time.monotonic()
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= moment - window:
            recent.popleft()
        if len(recent) >= count:
            wait = max(1, math.ceil(recent[0] + window - moment))
            raise GraphError(
                429,
                "ApplicationThrottled",
                message,
                headers={"Retry-After": str(wait)},
            )
        recent.append(moment)

    def in_flight(self) -> dict[tuple[str, str], int]:
        return dict(self._in_flight)

    def clear(self) -> None:
        self._recent.clear()


def _take_for(counts: dict[str | None, int], user_id: str) -> bool:
    """Use up one of the user's count, or else one of everyone's (None)."""
    for key in (user_id, None):
        if counts.get(key, 0) > 0:
            counts[key] -= 1
            return True
    return False


class Stats:
    """Counters and a bounded request log; `to_json` is what the control API's /stats returns."""

    def __init__(self, *, log_size: int = 10_000) -> None:
        self._log_size = log_size
        self.clear()

    def clear(self) -> None:
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.by_user: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.prefer: Counter[str] = Counter()
        self.peak_concurrency: dict[str, int] = {}
        self.notifications: Counter[str] = Counter()
        self.log: deque[dict[str, Any]] = deque(maxlen=self._log_size)
        # Requests for a mailbox that arrived before the Retry-After its last 429/503 named had passed.
        self.before_retry_after = 0
        self._wait_until: dict[str, float] = {}

    def arrived(self, user: str) -> None:
        """A request for `user`'s mailbox arrived: count it if the client was told to wait longer."""
        if time.monotonic() < self._wait_until.get(user, 0.0):
            self.before_retry_after += 1

    def told_to_wait(self, user: str, seconds: float) -> None:
        self._wait_until[user] = max(self._wait_until.get(user, 0.0), time.monotonic() + seconds)

    def request(
        self,
        *,
        method: str,
        path: str,
        status: int,
        route: str | None,
        user: str | None,
        started: float,
        prefer: list[str],
        batch_item: bool = False,
    ) -> None:
        self.requests += 1
        self.by_route[route or "unknown"] += 1
        if user is not None:
            self.by_user[user] += 1
        self.by_status[str(status)] += 1
        self.prefer.update(prefer)
        self.log.append(
            {
                "method": method,
                "path": path,
                "status": status,
                "route": route,
                "user": user,
                "time": format_instant(now()),
                "ms": round((time.monotonic() - started) * 1000, 2),
                "batchItem": batch_item,
                "prefer": prefer,
            }
        )

    def concurrency(self, user: str, count: int) -> None:
        if count > self.peak_concurrency.get(user, 0):
            self.peak_concurrency[user] = count

    def note(self, what: str, count: int = 1) -> None:
        self.notifications[what] += count

    def to_json(self, *, log_limit: int | None = None) -> dict[str, Any]:
        log = list(self.log)
        if log_limit is not None:
            log = log[-log_limit:] if log_limit > 0 else []
        return {
            "requests": self.requests,
            "byRoute": dict(self.by_route),
            "byUser": dict(self.by_user),
            "byStatus": dict(self.by_status),
            "prefer": dict(self.prefer),
            "peakConcurrency": dict(self.peak_concurrency),
            "requestsBeforeRetryAfter": self.before_retry_after,
            "notifications": {
                name: self.notifications.get(name, 0)
                for name in ("queued", "posts", "delivered", "failed", "retried", "dropped", "duplicated")
            }
            | {
                "validations": self.notifications.get("validations", 0),
                "lifecycle": self.notifications.get("lifecycle", 0),
            },
            "log": log,
        }


def rule_from_json(spec: Mapping[str, Any], user_id: str | None) -> FaultRule:
    retry_after = spec.get("retryAfter", 1)
    seconds = spec.get("seconds")
    share = float(spec.get("share", 1.0))
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share is a fraction of requests in (0, 1], not {share}")
    return FaultRule(
        status=int(spec.get("status", 429 if spec.get("kind") == "throttle" else 503)),
        # A rule that lasts `seconds` fails every matching request (of its share) until then.
        remaining=int(spec.get("count", sys.maxsize if seconds is not None else 1)),
        user_id=user_id,
        route=spec.get("route"),
        retry_after=None if retry_after is None else int(retry_after),
        share=share,
        until=None if seconds is None else time.monotonic() + float(seconds),
    )
