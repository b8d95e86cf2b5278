"""Delivery of change and lifecycle notifications, and the validation handshake, as Graph does them.

Notifications never hold up the request that caused them: they are queued per notificationUrl, collected for a
short moment (`batch_delay`), and POSTed as `{"value": [...]}` with up to `max_batch` items. A subscriber that
fails (no 2xx, a connection error, no answer within `timeout` — Graph wants one within 3 s) gets the same batch
again after each of `retry_delays`; after the last one the batch is given up and counted as failed. The fault
switches in `Faults` drop or duplicate single notifications and shuffle a batch's order, as Graph's at-most-
once-in-order promise (there is none) allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from emulators.graph_faults import Faults, Stats

log = logging.getLogger(__name__)

VALIDATION_TIMEOUT_S = 10.0
_NOT_OK = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
)
_MISMATCH = "Subscription validation request failed. Response must exactly match validationToken query parameter."
_NOT_PLAIN = "Subscription validation request failed. Response must be of content type text/plain."


class Notifier:
    def __init__(
        self,
        faults: Faults,
        stats: Stats,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        batch_delay: float = 0.05,
        max_batch: int = 100,
        retry_delays: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
        timeout: float = 3.0,
    ) -> None:
        self._faults = faults
        self._stats = stats
        self._ssl = ssl_context
        self.batch_delay = batch_delay
        self.max_batch = max_batch
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self._queues: dict[str, list[dict[str, Any]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def enqueue(self, url: str, item: dict[str, Any], *, faults: bool = True) -> None:
        """Queue one notification for `url`; it goes out with the next batch, in the background."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            log.warning("no event loop running: notification for %s not sent", url)
            return
        if faults and self._faults.take_drop():
            self._stats.note("dropped")
            return
        copies = 1
        if faults and self._faults.take_duplicate():
            self._stats.note("duplicated")
            copies = 2
        queue = self._queues.setdefault(url, [])
        for _ in range(copies):
            queue.append(item)
            self._stats.note("queued")
        if url not in self._tasks:
            self._tasks[url] = asyncio.create_task(self._deliver(url), name=f"graph-notify {url}")

    async def validate(self, url: str) -> str | None:
        """POST `url?validationToken=...` and check the echo; None when it passed, else Graph's error message."""
        self._stats.note("validations")
        # Graph's tokens are prose with spaces and colons: a subscriber that does not URL-decode fails here too.
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        separator = "&" if "?" in url else "?"
        target = URL(f"{url}{separator}validationToken={quote(token, safe='')}", encoded=True)
        try:
            async with self._client().post(
                target,
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=VALIDATION_TIMEOUT_S),
            ) as response:
                text = await response.text()
                if response.status != 200:
                    return _NOT_OK
                if response.content_type != "text/plain":
                    return _NOT_PLAIN
                return None if text == token else _MISMATCH
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            log.info("validation of %s failed: %s", url, exc)
            return _NOT_OK

    async def drain(self, within: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or given up; False if `within` seconds ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._tasks.values()), timeout=remaining)
        return True

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64))
        return self._session

    async def _deliver(self, url: str) -> None:
        try:
            while self._queues.get(url):
                await asyncio.sleep(self.batch_delay)
                queue = self._queues[url]
                batch, self._queues[url] = queue[: self.max_batch], queue[self.max_batch :]
                if self._faults.shuffle_notifications:
                    random.shuffle(batch)
                await self._post(url, batch)
        finally:
            # No await between the loop's last check and here, so nothing can have been queued meanwhile.
            self._tasks.pop(url, None)
            if not self._queues.get(url):
                self._queues.pop(url, None)

    async def _post(self, url: str, batch: list[dict[str, Any]]) -> None:
        for attempt, delay in enumerate((0.0, *self.retry_delays)):
            if delay:
                self._stats.note("retried")
                await asyncio.sleep(delay)
            self._stats.note("posts")
            try:
                async with self._client().post(
                    url, json={"value": batch}, timeout=aiohttp.ClientTimeout(total=self.timeout)
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self._stats.note("delivered", len(batch))
                        return
                    log.info("notification POST to %s answered %s (attempt %d)", url, response.status, attempt + 1)
            except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
                log.info("notification POST to %s failed: %s (attempt %d)", url, exc, attempt + 1)
        self._stats.note("failed", len(batch))
