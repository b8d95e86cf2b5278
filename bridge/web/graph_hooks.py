"""`POST /hooks/graph` and `POST /hooks/graph/lifecycle`: Graph's change and lifecycle notifications.

A notification is only a hint that a mailbox changed (DESIGN §1): Graph sends duplicates, batches and items out
of order, so nothing in an item is trusted beyond its subscription id and clientState. Valid items mark their
mailbox dirty and the request is answered 202 once that is committed; Graph is never called from here. What a
body holds is read below the seam (`decode`, the sources' `WEBHOOK_NOTIFICATIONS`): this module sees the bridge's
`Notification`s only.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import islice

from aiohttp import web

from bridge.domain import Notification
from bridge.marks import DirtyMarks
from bridge.sources.watching import MalformedNotification, NotificationDecoder
from bridge.store import Database
from bridge.store.work import KnownSubscription, LifecycleEvent, record_lifecycle, subscriptions
from bridge.web.bodies import MAX_DEPTH, read_limited, too_deep

log = logging.getLogger(__name__)

# Graph batches notifications, but a body this large is not one of them.
MAX_BODY = 1024 * 1024
# Nor a batch this long: Graph documents no batch size, and the batches seen carry tens of items. The cap bounds
# what one forged request can make the bridge look up (docs/hardening.md).
MAX_ITEMS = 1000
# An id no subscription has is remembered as unknown this long, so a flood of forged ids costs one lookup each
# per interval, not one per request; a subscription this instance creates is forgotten at once (`forget`).
UNKNOWN_FOR_S = 30.0
_MAX_UNKNOWN = 100_000  # the memory a flood of distinct forged ids can take: a few MB
# Graph's validation tokens are short opaque strings; the echo is no mirror for anything longer.
MAX_VALIDATION_TOKEN = 1024
_LIFECYCLE_EVENTS = {event.value for event in LifecycleEvent}
# The change types whose item, if the mirror holds it at the notified change key, may be the bridge's own write;
# a deletion always marks (the mirror still holding the item is exactly what it must learn otherwise).
_MAYBE_ECHO = {"created", "updated"}


class GraphHooks:
    def __init__(
        self,
        db: Database,
        marks: DirtyMarks,
        *,
        decode: NotificationDecoder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_lifecycle: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._marks = marks
        self._decode = decode
        self._clock = clock
        self._on_lifecycle = on_lifecycle
        self._known: dict[str, KnownSubscription] = {}
        self._unknown: dict[str, float] = {}  # id → when it may be looked up again (insertion order: oldest first)
        self._monotonic = monotonic
        # Items refused, by reason: visible on /metrics; a rising count means a misconfiguration or a forger.
        self.refused: Counter[str] = Counter()
        self.accepted = 0

    @property
    def echoes(self) -> int:
        """Mailboxes left unmarked because every notification named an item the mirror holds at that key."""
        return self._marks.echoes

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/hooks/graph", self.notifications), web.post("/hooks/graph/lifecycle", self.lifecycle)]

    def forget(self, subscription_id: str) -> None:
        """Drop what is cached about a subscription (it was created, deleted or replaced)."""
        self._known.pop(subscription_id, None)
        self._unknown.pop(subscription_id, None)

    async def notifications(self, request: web.Request) -> web.StreamResponse:
        if "validationToken" in request.query:
            return _validation(request)
        items = await self._valid_items(request)
        mailboxes: set[int] = set()
        echoes: dict[int, set[tuple[str, str]]] = {}
        for item, known in items:
            if item.change_type in _MAYBE_ECHO and item.item_id and item.change_key:
                echoes.setdefault(known.mailbox_id, set()).add((item.item_id, item.change_key))
            else:
                mailboxes.add(known.mailbox_id)
        await self._marks.mark(mailboxes, echoes)
        self.accepted += len(items)
        return web.Response(status=202)

    async def lifecycle(self, request: web.Request) -> web.StreamResponse:
        if "validationToken" in request.query:
            return _validation(request)
        events = []
        for item, known in await self._valid_items(request):
            if item.lifecycle_event not in _LIFECYCLE_EVENTS:
                self.refused["unknown lifecycle event"] += 1
                continue
            events.append((item.subscription_id, known.mailbox_id, LifecycleEvent(item.lifecycle_event)))
        if events:
            now = self._clock()
            await self._db.run(lambda session: record_lifecycle(session, events, now))
            for subscription_id, _, event in events:
                log.info("lifecycle notification %s for subscription %s", event.value, subscription_id)
                if event is LifecycleEvent.SUBSCRIPTION_REMOVED:
                    self.forget(subscription_id)
            self._on_lifecycle()
        return web.Response(status=202)

    async def _valid_items(self, request: web.Request) -> list[tuple[Notification, KnownSubscription]]:
        """The body's items whose subscription the bridge holds and whose clientState matches it."""
        body = await read_limited(request, MAX_BODY)
        if body is None:
            self.refused["body too large"] += 1
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length or MAX_BODY + 1)
        if too_deep(body):
            self.refused["malformed body"] += 1
            raise web.HTTPBadRequest(text=f"the body nests deeper than {MAX_DEPTH} levels")
        try:
            items = self._decode(body)
        except MalformedNotification as exc:
            self.refused["malformed body"] += 1
            raise web.HTTPBadRequest(text=str(exc)) from None
        if len(items) > MAX_ITEMS:
            self.refused["too many items"] += 1
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_ITEMS, actual_size=len(items), text=f"more than {MAX_ITEMS} notifications in one body"
            )
        await self._look_up({item.subscription_id for item in items})
        valid = []
        for item in items:
            known = self._known.get(item.subscription_id)
            if known is None:
                self.refused["unknown subscription"] += 1
            elif not hmac.compare_digest((item.client_state or "").encode(), known.client_state.encode()):
                self.refused["wrong clientState"] += 1
            else:
                valid.append((item, known))
        return valid

    async def _look_up(self, ids: Iterable[str]) -> None:
        """Learn which of `ids` the bridge holds; ids found unknown lately are not looked up again."""
        now = self._monotonic()
        missing = {i for i in ids if i not in self._known and self._unknown.get(i, now) <= now}
        if not missing:
            return
        found = await self._db.run(lambda session: subscriptions(session, missing))
        self._known.update(found)
        for unknown in missing - found.keys():
            self._unknown.pop(unknown, None)  # re-inserted last: the dict stays ordered oldest first
            self._unknown[unknown] = now + UNKNOWN_FOR_S
        for oldest in list(islice(self._unknown, max(0, len(self._unknown) - _MAX_UNKNOWN))):
            del self._unknown[oldest]


def _validation(request: web.Request) -> web.Response:
    """Graph's validation handshake: echo the (URL-decoded) token as text/plain within 10 s."""
    token = request.query["validationToken"]
    if len(token) > MAX_VALIDATION_TOKEN:
        raise web.HTTPBadRequest(text=f"validationToken is longer than {MAX_VALIDATION_TOKEN} characters")
    return web.Response(text=token, content_type="text/plain")
