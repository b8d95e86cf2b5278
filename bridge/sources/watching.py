"""Change detection: how the bridge learns which mailboxes of a source changed, beside `CalendarSource` (base.py),
which reads and writes them.

Exchange offers two ways, and each backend takes one:

- the bridge watches the mailboxes itself over connections it holds open (EWS streaming or pull subscriptions,
  `ews_watch.py`): a `MailboxWatch`, which the service runs as a task of its own with the engine's callbacks;
- Exchange calls the bridge back (Graph change notifications): `WebhookSubscriptions`, the calls that create,
  renew and remove one subscription per mailbox. The engine's subscription upkeep (`bridge/subscriptions.py`) keeps
  them in the database and the webhook receiver (`bridge/web/graph_hooks.py`) reads what Exchange POSTs with a
  `NotificationDecoder`.

A backend's `ChangeDetection` names its way by handing itself to the matching method of the `ChangeWiring` the
service passes to `attach` (double dispatch). The service thus wires every source alike, without testing types,
and a third way would be a method mypy makes every wiring implement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol

from bridge.domain import Notification, Subscription, SubscriptionRequest


class MalformedNotification(ValueError):
    """A notification body that is not the shape Exchange sends: refused whole, nothing in it marked."""


# A webhook body (bytes as POSTed) → its items; `MalformedNotification` when it is not the documented shape.
NotificationDecoder = Callable[[bytes], Sequence[Notification]]


class ChangeDetection(Protocol):
    """One source's way of telling the engine which of its mailboxes changed."""

    def attach(self, wiring: ChangeWiring) -> None:
        """Hand itself to `wiring.watch` or `wiring.keep_subscriptions`, whichever is its way."""
        ...


class ChangeWiring(Protocol):
    """What the service offers a source's change detection: one method per way of detecting changes."""

    def watch(self, watch: MailboxWatch) -> None:
        """The source watches its mailboxes itself: run it with the engine's callbacks."""
        ...

    def keep_subscriptions(self, subscriptions: WebhookSubscriptions) -> None:
        """Exchange calls the bridge back: keep one subscription per active mailbox through these calls."""
        ...


class MailboxWatch(Protocol):
    """A watch over a source's mailboxes on connections the bridge holds open (EWS streaming or pull)."""

    async def run(
        self,
        mailboxes: Callable[[], Awaitable[Collection[str]]],
        on_changed: Callable[[Collection[str]], Awaitable[None]],
        stop: asyncio.Event,
        *,
        on_lost: Callable[[Collection[str]], Awaitable[None]] | None = None,
    ) -> None:
        """Watch the addresses `mailboxes()` returns until `stop` is set, telling `on_changed` which changed (all of
        them after each reconnect: the catch-up) and `on_lost` which are no longer watched because the server
        stopped answering."""
        ...

    def refresh(self) -> None:
        """The set of mailboxes to watch changed: place the new ones now."""
        ...

    def retry_now(self) -> None:
        """The source answers again: connections backing off reopen at once."""
        ...


class WebhookSubscriptions(Protocol):
    """The calls that keep Exchange calling the bridge back for a mailbox (Graph's change notifications)."""

    async def subscribe(self, request: SubscriptionRequest) -> Subscription:
        """Create a subscription (`SubscriptionExists` when one for this resource and URL exists; `QuotaExceeded`,
        `MailboxNotFound`)."""
        ...

    async def renew(self, subscription_id: str, mailbox: str, expires_at: datetime) -> Subscription:
        """Extend a subscription; `ItemNotFound` when it is gone."""
        ...

    async def list_subscriptions(self) -> tuple[Subscription, ...]:
        """The subscriptions Exchange holds for this app (to clean up after a crash between create and store)."""
        ...

    async def unsubscribe(self, subscription_id: str) -> None:
        """Remove a subscription; one that is already gone is not an error."""
        ...
