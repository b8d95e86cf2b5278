"""EWS notification subscriptions: pull (GetEvents) and streaming (GetStreamingEvents), with watermarks.

A watermark names a position in the mailbox's event history. Pull subscriptions hand out the events after
the watermark the client presents (50 per call, `MoreEvents` beyond) and a StatusEvent when nothing happened,
as Exchange does; streaming subscriptions queue events until a GetStreamingEvents connection takes them.

Lifetimes follow Exchange: a pull subscription dies when no GetEvents arrives within its Timeout (minutes), a
streaming one after 30 minutes without an open connection; a dead or unknown id answers
ErrorSubscriptionNotFound. Only the account that subscribed may use a subscription
(ErrorSubscriptionAccessDenied). Live subscriptions count against their budget's EWSMaxSubscriptions
(ews_throttling.py).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emulators.ews_model import EwsMailbox, ItemEvent
from emulators.ews_throttling import Limits, subscriptions_exceeded
from emulators.ews_xml import EwsError

EVENT_TYPES = (
    "CopiedEvent",
    "CreatedEvent",
    "DeletedEvent",
    "ModifiedEvent",
    "MovedEvent",
    "NewMailEvent",
    "FreeBusyChangedEvent",
)
STREAMING_LIFETIME = 30 * 60.0
EVENTS_PER_GET = 50
_HISTORY = 1000


def not_found() -> EwsError:
    return EwsError("ErrorSubscriptionNotFound", "The specified subscription was not found.")


@dataclass
class Subscription:
    id: str
    kind: str  # "pull" or "streaming"
    mailbox: str
    owner: str
    folders: frozenset[str] | None  # distinguished folder names; None: SubscribeToAllFolders
    event_types: frozenset[str]
    timeout: float  # seconds without use before it expires
    position: int  # the watermark position last handed out
    budget: str = ""  # the throttling budget it is charged to (ews_throttling.budget)
    last_used: float = field(default_factory=time.monotonic)
    events: list[tuple[int, ItemEvent]] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    connection: object | None = None  # the GetStreamingEvents connection holding it, if any

    def wants(self, event: ItemEvent) -> bool:
        if f"{event.kind}Event" not in self.event_types:
            return False
        if self.folders is None:
            return True
        return event.folder in self.folders or (event.old_folder is not None and event.old_folder in self.folders)

    def expired(self, at: float) -> bool:
        if self.kind == "streaming" and self.connection is not None:
            return False
        return at - self.last_used > self.timeout


def watermark(mailbox: str, position: int) -> str:
    tag = sum(mailbox.lower().encode()) & 0xFFFF
    return base64.b64encode(struct.pack(">HQ", tag, position)).decode("ascii")


def parse_watermark(mailbox: str, text: str) -> int:
    try:
        tag, position = struct.unpack(">HQ", base64.b64decode(text.strip().encode("ascii"), validate=True))
    except (ValueError, struct.error, UnicodeEncodeError):
        raise EwsError("ErrorInvalidWatermark", "The watermark is invalid.") from None
    if tag != sum(mailbox.lower().encode()) & 0xFFFF:
        raise EwsError("ErrorInvalidWatermark", "The watermark is invalid.")
    return int(position)


class Subscriptions:
    """Every live subscription, fed by the mailboxes' change listeners."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, limits: Limits | None = None) -> None:
        self._clock = clock
        self.limits = limits or Limits()
        self.by_id: dict[str, Subscription] = {}
        self._history: dict[str, deque[tuple[int, ItemEvent]]] = {}

    def watch(self, mailbox: EwsMailbox) -> None:
        mailbox.listeners.append(self._deliver)

    def _deliver(self, mailbox: EwsMailbox, event: ItemEvent) -> None:
        key = mailbox.address.lower()
        history = self._history.setdefault(key, deque(maxlen=_HISTORY))
        history.append((mailbox.seq, event))
        for subscription in self.by_id.values():
            if subscription.mailbox == key and subscription.wants(event):
                subscription.events.append((mailbox.seq, event))
                subscription.wakeup.set()

    def subscribe(
        self,
        mailbox: EwsMailbox,
        *,
        kind: str,
        owner: str,
        folders: frozenset[str] | None,
        event_types: frozenset[str],
        timeout_minutes: int = 30,
        since: str | None = None,
        budget: str = "",
    ) -> Subscription:
        key = mailbox.address.lower()
        self.purge()
        if sum(1 for live in self.by_id.values() if live.budget == budget) >= self.limits.subscriptions:
            raise subscriptions_exceeded()
        position = mailbox.seq
        replay: list[tuple[int, ItemEvent]] = []
        if since is not None:
            position = parse_watermark(key, since)
            history = list(self._history.get(key, ()))
            oldest = history[0][0] if history else mailbox.seq + 1
            if position > mailbox.seq or (position < mailbox.seq and position + 1 < oldest):
                raise EwsError("ErrorInvalidWatermark", "The watermark is invalid or has expired.")
            replay = [(seq, event) for seq, event in history if seq > position]
        lifetime = STREAMING_LIFETIME if kind == "streaming" else timeout_minutes * 60.0
        subscription = Subscription(
            id=base64.b64encode(b"\x10\x00" + secrets.token_bytes(30)).decode("ascii"),
            kind=kind,
            mailbox=key,
            owner=owner.lower(),
            folders=folders,
            event_types=event_types,
            timeout=lifetime,
            position=position,
            budget=budget,
            last_used=self._clock(),
        )
        subscription.events = [(seq, event) for seq, event in replay if subscription.wants(event)]
        self.by_id[subscription.id] = subscription
        return subscription

    def get(self, subscription_id: str, owner: str, *, kind: str | None = None) -> Subscription:
        self.purge()
        subscription = self.by_id.get(subscription_id.strip())
        if subscription is None:
            raise not_found()
        if subscription.owner != owner.lower():
            raise EwsError(
                "ErrorSubscriptionAccessDenied",
                "Access is denied. Only the subscription owner may access the subscription.",
            )
        if kind is not None and subscription.kind != kind:
            raise EwsError("ErrorInvalidSubscription", "The subscription is not valid for this operation.")
        subscription.last_used = self._clock()
        return subscription

    def touch(self, subscription: Subscription) -> None:
        subscription.last_used = self._clock()

    def remove(self, subscription_id: str) -> Subscription | None:
        subscription = self.by_id.pop(subscription_id, None)
        if subscription is not None:
            subscription.wakeup.set()
        return subscription

    def expire(self, subscription_id: str) -> None:
        """Let a subscription run out now (as if it had not been used for its whole lifetime)."""
        subscription = self.by_id.get(subscription_id)
        if subscription is None:
            raise KeyError(subscription_id)
        subscription.connection = None
        subscription.last_used = self._clock() - subscription.timeout - 1
        self.purge()

    def purge(self) -> None:
        at = self._clock()
        for subscription_id in [key for key, sub in self.by_id.items() if sub.expired(at)]:
            self.remove(subscription_id)

    def pull(self, subscription: Subscription, given: str) -> tuple[list[tuple[int, ItemEvent]], int, bool]:
        """GetEvents: the events after `given` (at most 50), the previous position, whether more remain."""
        position = parse_watermark(subscription.mailbox, given)
        if position > subscription.position or position < subscription.position - _HISTORY:
            raise EwsError("ErrorInvalidWatermark", "The watermark is invalid.")
        # Handed-out events leave the queue: exchangelib asks again with the same watermark while MoreEvents
        # is true (folders/base.py: get_events) and expects the next batch.
        pending = [(seq, event) for seq, event in subscription.events if seq > position]
        batch, subscription.events = pending[:EVENTS_PER_GET], pending[EVENTS_PER_GET:]
        return batch, position, bool(subscription.events)

    def take(self, subscription: Subscription) -> list[tuple[int, ItemEvent]]:
        """The queued events of a streaming subscription, which are then gone from it."""
        events, subscription.events = subscription.events, []
        subscription.wakeup.clear()
        if events:
            subscription.position = events[-1][0]
        return events

    def clear(self) -> None:
        for subscription_id in list(self.by_id):
            self.remove(subscription_id)
        self._history.clear()
