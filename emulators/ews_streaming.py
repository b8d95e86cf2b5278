"""GetStreamingEvents: one long HTTP response, chunked, one SOAP envelope per chunk.

As Exchange (and KDE's fake in sample §I) does it: a first envelope straight away, then a frame whenever
notifications arrive, a keep-alive frame (`ConnectionStatus` OK, no notifications) when nothing happened for a
while, and after the ConnectionTimeout (minutes) a last frame with `ConnectionStatus` Closed. A subscription
is held by one connection at a time: a newer GetStreamingEvents for it closes the older one. `cut()` drops the
TCP connection without a Closed frame, as a load balancer or a crashed CAS would. Open connections count against
their budget's HangingConnectionLimit (ews_throttling.py); one more is answered with an
ErrorExceededConnectionCount error frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET

from aiohttp import web

from emulators.ews_model import Organisation
from emulators.ews_operations import render_event
from emulators.ews_subscriptions import Subscription, Subscriptions, watermark
from emulators.ews_throttling import connections_exceeded
from emulators.ews_xml import EwsError, envelope, error_message, m, operation_response, sub, success, t, text_of

MAX_SUBSCRIPTIONS = 200
_OP = "GetStreamingEvents"


class StreamingConnection:
    def __init__(self, subscriptions: list[Subscription], transport: asyncio.BaseTransport | None, budget: str) -> None:
        self.subscriptions = subscriptions
        self.budget = budget
        self.signal = asyncio.Event()
        self.transport = transport
        self.closing = False
        self.was_cut = False

    def cut(self) -> None:
        self.was_cut = True
        self.signal.set()
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()

    def is_cut(self) -> bool:
        return self.was_cut

    def close(self) -> None:
        self.closing = True
        self.signal.set()


class Streams:
    """The open GetStreamingEvents connections."""

    def __init__(self, org: Organisation, subscriptions: Subscriptions, *, keepalive: float, minute: float) -> None:
        self.org = org
        self.subscriptions = subscriptions
        self.keepalive = keepalive
        # How long a ConnectionTimeout "minute" lasts: 60 s as in Exchange, shorter in tests.
        self.minute = minute
        self.open: set[StreamingConnection] = set()
        self.refused = 0  # connections answered ErrorExceededConnectionCount

    def resolve(self, request: ET.Element, account: str) -> tuple[list[Subscription], int]:
        ids = [(e.text or "").strip() for e in request.findall(f"{m('SubscriptionIds')}/{t('SubscriptionId')}")]
        if not ids:
            raise EwsError("ErrorInvalidSubscription", "At least one subscription id is required.")
        if len(ids) > MAX_SUBSCRIPTIONS:
            raise EwsError(
                "ErrorInvalidArgument",
                f"A GetStreamingEvents request may name at most {MAX_SUBSCRIPTIONS} subscriptions.",
            )
        timeout = int(text_of(request, m("ConnectionTimeout"), "30") or 30)
        if not 1 <= timeout <= 30:
            raise EwsError("ErrorInvalidArgument", "ConnectionTimeout must be between 1 and 30 minutes.")
        found = []
        for subscription_id in ids:
            try:
                found.append(self.subscriptions.get(subscription_id, account, kind="streaming"))
            except EwsError as error:
                error.values = {"SubscriptionId": subscription_id}
                raise
        return found, timeout

    async def serve(self, request: web.Request, operation: ET.Element, account: str, budget: str) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/xml; charset=utf-8"})
        response.enable_chunked_encoding()
        try:
            if self.connections(budget) >= self.subscriptions.limits.hanging_connections:
                self.refused += 1
                raise connections_exceeded()
            subscriptions, timeout = self.resolve(operation, account)
        except EwsError as error:
            await response.prepare(request)
            await response.write(_error_frame(error))
            await response.write_eof()
            return response
        connection = StreamingConnection(subscriptions, request.transport, budget)
        for subscription in subscriptions:
            if isinstance(subscription.connection, StreamingConnection):
                subscription.connection.close()
            subscription.connection = connection
            subscription.wakeup = connection.signal
        self.open.add(connection)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout * self.minute
        try:
            await response.write(self._frame(connection, "OK"))
            while not connection.is_cut():
                remaining = deadline - loop.time()
                if remaining <= 0 or connection.closing or not self._held(connection):
                    await response.write(self._frame(connection, "Closed"))
                    await response.write_eof()
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(connection.signal.wait(), min(self.keepalive, remaining))
                if connection.is_cut():
                    break
                connection.signal.clear()
                await response.write(self._frame(connection, "OK"))
        except (ConnectionError, RuntimeError):
            pass  # the client went away or the connection was cut; the subscriptions wait for the next one
        finally:
            self._release(connection)
        return response

    def connections(self, budget: str) -> int:
        """Open connections charged to this budget (one a newer connection took over no longer counts)."""
        return sum(1 for connection in self.open if connection.budget == budget and not connection.closing)

    def _held(self, connection: StreamingConnection) -> bool:
        return any(
            self.subscriptions.by_id.get(sub.id) is sub and sub.connection is connection
            for sub in connection.subscriptions
        )

    def _frame(self, connection: StreamingConnection, status: str) -> bytes:
        message = success(_OP)
        batches = []
        for subscription in connection.subscriptions:
            if subscription.connection is connection and self.subscriptions.by_id.get(subscription.id) is subscription:
                events = self.subscriptions.take(subscription)
                if events:
                    batches.append((subscription, events))
        if batches:
            notifications = sub(message, m("Notifications"))
            for subscription, events in batches:
                notification = sub(notifications, m("Notification"))
                sub(notification, t("SubscriptionId"), subscription.id)
                mailbox = self.org.mailboxes[subscription.mailbox]
                for seq, event in events:
                    render_event(notification, mailbox, event, watermark(subscription.mailbox, seq))
        sub(message, m("ConnectionStatus"), status)
        return envelope(operation_response(_OP, [message]))

    def _release(self, connection: StreamingConnection) -> None:
        self.open.discard(connection)
        for subscription in connection.subscriptions:
            if subscription.connection is connection:
                subscription.connection = None
                subscription.wakeup = asyncio.Event()
                self.subscriptions.touch(subscription)

    def cut_all(self) -> int:
        connections = list(self.open)
        for connection in connections:
            connection.cut()
        return len(connections)

    def close_all(self) -> None:
        for connection in list(self.open):
            connection.close()


def _error_frame(error: EwsError) -> bytes:
    """Sample §I's error frame: the code, the failing ids in ErrorSubscriptionIds, ConnectionStatus Closed."""
    failing = error.values.pop("SubscriptionId", None)
    message = error_message(_OP, error)
    if failing is not None:
        sub(sub(message, m("ErrorSubscriptionIds")), m("SubscriptionId"), failing)
    sub(message, m("ConnectionStatus"), "Closed")
    return envelope(operation_response(_OP, [message]))
